"""One check of a Triton op against its reference: the forward output and every gradient.

The truth is the reference in float64. A row-sparse weight gradient (``sparse_linear``'s, left in
the weight's ``row_grad``) is compared as (features: equal, rows: within tolerance). The kernel's result at the test dtype must be within the
dtype's tolerance of it (``TOLERANCES``, one table for every op), or — for low precision —
within twice the worst error that PyTorch's own reference makes at that dtype (STYLE 2). On
CUDA the kernel also runs twice and must repeat itself bit for bit (the interpreter is
sequential, so there it would prove nothing).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from destiny.ops.functional import kernels
from destiny.ops.sparse import SparseBatch


@dataclass(frozen=True)
class Tolerance:
    rtol: float
    atol: float


TOLERANCES = {
    torch.float32: Tolerance(rtol=2e-5, atol=2e-6),
    torch.float16: Tolerance(rtol=2e-3, atol=1e-4),
    torch.bfloat16: Tolerance(rtol=1.6e-2, atol=1e-3),
}


def cast(value, dtype: torch.dtype | None, device: torch.device | None = None):
    """Floating tensors (and a SparseBatch's values and weights) to dtype, everything to device."""
    if isinstance(value, torch.Tensor):
        value = value.to(device) if device is not None else value
        return value.to(dtype) if dtype is not None and value.is_floating_point() else value
    if isinstance(value, SparseBatch):
        moved = value.to(device) if device is not None else value
        return dataclasses.replace(moved, values=cast(moved.values, dtype), weights=cast(moved.weights, dtype))
    return value


def assert_close(actual: torch.Tensor, truth: torch.Tensor, dtype: torch.dtype,
                 baseline: torch.Tensor | None = None, what: str = "") -> None:
    """actual (computed at dtype) is within TOLERANCES[dtype] of truth (float64), or its worst
    error is at most twice baseline's (PyTorch at dtype)."""
    assert actual.shape == truth.shape, f"{what}: shape {tuple(actual.shape)} != {tuple(truth.shape)}"
    tol = TOLERANCES[dtype]
    truth = truth.detach().double().cpu()
    err = (actual.detach().double().cpu() - truth).abs()
    if not torch.isfinite(actual).all():
        raise AssertionError(f"{what}: non-finite values in the kernel's result")
    if bool((err <= tol.atol + tol.rtol * truth.abs()).all()):
        return
    worst = float(err.max())
    if baseline is not None:
        base = float((baseline.detach().double().cpu() - truth).abs().max())
        if worst <= 2 * base:
            return
        detail = f"; PyTorch at {dtype}: {base:.3g}"
    else:
        detail = ""
    where = int(err.flatten().argmax())
    value = float(truth.flatten()[where])
    raise AssertionError(f"{what}: worst error {worst:.3g} at flat index {where} (value {value:.6g}) "
                         f"over rtol {tol.rtol:g}, atol {tol.atol:g}{detail}")


def _grad_of(t: torch.Tensor):
    """A leaf's gradient: its row-sparse one (RowSparseGrad's valid (features, rows)) if any,
    else its dense .grad (a sparse COO .grad coalesced)."""
    row_grad = getattr(t, "row_grad", None)
    if row_grad is not None:
        assert t.grad is None, "a leaf got both a dense and a row-sparse gradient"
        return row_grad.valid()
    g = t.grad
    if g is not None and g.is_sparse:
        return g.coalesce()
    return g


def _run(op: Callable, args: Sequence, diff: Sequence[int], dtype, force: bool, cotangent: torch.Tensor):
    inputs = [cast(a, dtype) for a in args]
    for i in diff:
        inputs[i] = inputs[i].detach().clone().requires_grad_()
    with kernels(force):
        out = op(*inputs)
        if diff:
            out.backward(cotangent.to(out.dtype))
    return out.detach(), [_grad_of(inputs[i]) for i in diff]


def _compare(name, actual, truth, dtype, baseline):
    if isinstance(actual, tuple):  # row-sparse: (features, rows)
        assert torch.equal(actual[0].cpu(), truth[0].cpu()), f"{name}: the row-sparse gradient's rows differ"
        assert_close(actual[1], truth[1], dtype, baseline[1], name)
    elif actual.is_sparse:
        assert torch.equal(actual.indices(), truth.indices()), f"{name}: the sparse gradient's rows differ"
        assert_close(actual.values(), truth.values(), dtype, baseline.values(), name)
    else:
        assert_close(actual, truth, dtype, baseline, name)


def _same_bits(a, b) -> bool:
    if isinstance(a, tuple):
        return all(torch.equal(x, y) for x, y in zip(a, b))
    if a.is_sparse:
        return torch.equal(a.indices(), b.indices()) and torch.equal(a.values(), b.values())
    return torch.equal(a, b)


def check_op(op: Callable, args: Sequence, *, dtype: torch.dtype, diff: Sequence[int] = (), seed: int = 0,
             name: str = "op") -> torch.Tensor:
    """Run ``op(*args)`` (a ``destiny.ops.functional`` op) with the kernels forced on at dtype,
    and on the references at dtype (the baseline) and in float64 (the truth); compare the
    outputs and the gradients of ``args[i]`` for i in diff under a random cotangent. Returns
    the kernel's output."""
    args = [cast(a, dtype) for a in args]  # the truth starts from the same (rounded) inputs
    with torch.no_grad(), kernels(False):
        shape_probe = op(*[cast(a, torch.float64) for a in args])
    gen = torch.Generator().manual_seed(seed)
    cotangent = torch.randn(shape_probe.shape, generator=gen, dtype=torch.float64).to(shape_probe.device)
    truth, truth_grads = _run(op, args, diff, torch.float64, False, cotangent)
    base, base_grads = _run(op, args, diff, dtype, False, cotangent)
    out, grads = _run(op, args, diff, dtype, True, cotangent)
    assert out.dtype == base.dtype, f"{name}: output dtype {out.dtype}, reference's {base.dtype}"
    _compare(f"{name} forward", out, truth, dtype, base)
    for i, g, t, b in zip(diff, grads, truth_grads, base_grads):
        g_dtype, b_dtype = (g[1].dtype, b[1].dtype) if isinstance(g, tuple) else (g.dtype, b.dtype)
        assert g_dtype == b_dtype, f"{name}: gradient of argument {i} is {g_dtype}, reference's {b_dtype}"
        _compare(f"{name} gradient of argument {i}", g, t, dtype, b)
    if out.device.type == "cuda":
        again, grads_again = _run(op, args, diff, dtype, True, cotangent)
        assert _same_bits(out, again), f"{name}: the forward pass is not deterministic"
        for i, g, h in zip(diff, grads, grads_again):
            assert _same_bits(g, h), f"{name}: the gradient of argument {i} is not deterministic"
    return out
