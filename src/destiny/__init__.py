"""Destiny: deep learning on large sparse data, a modern successor of Amazon DSSTNE."""

from __future__ import annotations

__version__ = "0.1.0"
