"""The sparse ops as differentiable functions, each dispatched once: a fused Triton kernel on
CUDA where one exists, the pure-torch reference (``reference.py``) otherwise.

``sparse_linear`` returns a row-sparse weight gradient (a coalesced sparse COO tensor holding
only the features present in the batch), so the input layer's gradient costs nnz·units, not
n_features·units, and optimizers can update only what changed.

Dispatch: ``use_kernels(device)`` is true for CUDA tensors when Triton imports
(``destiny.backend.use_triton``). ``with kernels(True):`` forces the kernels for every device —
CPU tensors run them under Triton's interpreter (``TRITON_INTERPRET=1``), which is how the tests
check them without a GPU — and ``with kernels(False):`` forces the references everywhere. The
choice is made in the forward pass and kept for the backward pass.
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib
from typing import Iterator

import torch

from destiny.backend import HAS_TRITON, TRITON_INTERPRET, use_triton
from destiny.errors import UsageError
from destiny.nn.losses import LossSpec
from destiny.ops import reference as ref
from destiny.ops.sparse import SparseBatch

_FORCED: contextvars.ContextVar[bool | None] = contextvars.ContextVar("destiny_kernels", default=None)


@contextlib.contextmanager
def kernels(force: bool = True) -> Iterator[None]:
    """Within the block, run the Triton kernels (force=True) or the references (force=False) on
    every device. Forcing the kernels on CPU tensors needs ``TRITON_INTERPRET=1`` set before
    Triton is first imported."""
    if force and not HAS_TRITON:
        raise UsageError("kernels(True) asked for, but Triton is not importable; "
                         "install it (pip install triton) or use kernels(False)")
    token = _FORCED.set(bool(force))
    try:
        yield
    finally:
        _FORCED.reset(token)


def use_kernels(device: torch.device) -> bool:
    """True when the fused Triton kernels run for tensors on ``device``."""
    forced = _FORCED.get()
    if forced is not None:
        if forced and device.type == "cpu" and not TRITON_INTERPRET:
            raise UsageError("kernels(True) on CPU tensors needs Triton's interpreter: set "
                             "TRITON_INTERPRET=1 in the environment before starting Python")
        return forced
    return use_triton(device)


def _kernel(name: str):
    """The kernel module ``destiny.ops.triton.<name>``, imported on first use (it imports Triton)."""
    return importlib.import_module(f"destiny.ops.triton.{name}")


class _SparseLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, weight, bias, batch: SparseBatch):
        ctx.batch = batch
        ctx.weight_shape = weight.shape
        ctx.has_bias = bias is not None
        ctx.dtype = weight.dtype
        ctx.fused = use_kernels(weight.device) and weight.stride(-1) == 1
        # In the weights' own precision even under autocast: a gather-sum is memory-bound, so
        # lower precision buys nothing, and the next layer's product casts as it needs.
        with torch.autocast(weight.device.type, enabled=False):
            if ctx.fused:
                return _kernel("sparse_linear").sparse_linear_forward(batch, weight, bias)
            return ref.sparse_linear_ref(batch, weight, bias)

    @staticmethod
    def backward(ctx, grad_out):
        grad_weight = grad_bias = None
        grad_out = grad_out.to(ctx.dtype)
        if ctx.needs_input_grad[0]:
            if ctx.fused:
                features, rows = _kernel("sparse_weight_grad").sparse_weight_grad(ctx.batch, grad_out)
            else:
                features, rows = ref.sparse_weight_grad_ref(ctx.batch, grad_out)
            grad_weight = torch.sparse_coo_tensor(features.unsqueeze(0), rows, ctx.weight_shape,
                                                  is_coalesced=True, check_invariants=False)
        if ctx.has_bias and ctx.needs_input_grad[1]:
            grad_bias = grad_out.sum(0)
        return grad_weight, grad_bias, None


def sparse_linear(batch: SparseBatch, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """x @ weight (+ bias) for a sparse batch x. weight: (n_features, units) → (batch, units).

    Backward: a row-sparse gradient for weight (only the batch's features), the batch sum of
    grad_out for bias. Deterministic: sums run in example order.
    """
    return _SparseLinear.apply(weight, bias, batch)


def output_loss(z: torch.Tensor, target: SparseBatch | torch.Tensor, spec: LossSpec, *,
                inplace: bool | None = None) -> torch.Tensor:
    """Per-example loss (batch,) of an output layer; see ``reference.output_loss_ref``.

    With sparse targets and a supported loss (``destiny.ops.triton.output_loss.supports``) on
    the kernel path, one fused kernel computes the loss and the delta ∂loss/∂z. ``inplace``:
    the delta overwrites z's memory (halving the output layer's memory and traffic). None
    (default) does so when z is an intermediate result of the autograd graph (the output
    GEMM's), never for a leaf; z then holds the delta — read nothing from it afterwards.
    """
    if isinstance(target, SparseBatch) and use_kernels(z.device):
        fused = _kernel("output_loss")
        if fused.supports(spec, z):
            if inplace is None:
                inplace = z.grad_fn is not None
            return fused.output_loss(z, target, spec, inplace=inplace)
    return ref.output_loss_ref(z, target, spec)


def dropout(x: torch.Tensor, p: float, seed: int) -> torch.Tensor:
    """Inverted dropout with the Philox uniforms of ``ops.random.uniform(seed, x.numel())``."""
    if use_kernels(x.device):
        return _kernel("dropout").dropout(x, p, seed)
    return ref.dropout_ref(x, p, seed)


def alpha_dropout(x: torch.Tensor, p: float, seed: int, saturation: float) -> torch.Tensor:
    """Alpha dropout (ELU/SELU layers) with the same uniforms as ``dropout``."""
    if use_kernels(x.device):
        return _kernel("dropout").alpha_dropout(x, p, seed, saturation)
    return ref.alpha_dropout_ref(x, p, seed, saturation)


def denoise(batch: SparseBatch, p: float, seed: int) -> SparseBatch:
    return ref.denoise_ref(batch, p, seed)
