"""Prediction: top-K recommendations at any width, filters, metrics, writers."""
