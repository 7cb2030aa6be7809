"""Shared test helpers: where the optional real datasets live, and small factories."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

# Without a GPU, run the Triton kernels on CPU tensors under Triton's interpreter, so the plain
# test command checks every kernel against its reference. Must be set before Triton is imported.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("DESTINY_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture
def shared_data() -> Path:
    """../shared/data (or $DESTINY_SHARED_DATA); tests using it skip where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real datasets not found at {SHARED_DATA} (set DESTINY_SHARED_DATA)")
    return SHARED_DATA
