"""Sparse ops: references in ``reference.py`` (the spec and the CPU path), differentiable
dispatching wrappers in ``functional.py``, Triton kernels in ``triton/`` (CUDA)."""
