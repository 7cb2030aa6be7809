"""The sparse ops as differentiable functions, each dispatched once: a fused Triton kernel on
CUDA where one exists, the pure-torch reference (``reference.py``) otherwise.

``sparse_linear``'s weight gradient is row-sparse: a ``RowSparseGrad`` (``ops.sparse``)
holding only the features present in the batch, so the input layer's gradient costs
nnz·units, not n_features·units, and optimizers update only what changed. It is not handed to
autograd: a weight that is a leaf (a Parameter) gets it as ``weight.row_grad`` (see
``accumulate_row_grad``; ``DsstneOptimizer`` reads it and ``zero_grad`` clears it) and autograd
sees no gradient for it; any other weight (a view, a product) gets it as an ordinary dense
gradient. Everything on the kernel path has static shapes and no host sync, so a training
step can be captured in a CUDA graph.

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
from destiny.config import Activation
from destiny.errors import UsageError
from destiny.nn.losses import LossSpec
from destiny.ops import reference as ref
from destiny.ops.sparse import RowSparseGrad, SparseBatch

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
        ctx.param = weight if weight.is_leaf and weight.requires_grad else None
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
            grad = sparse_weight_grad(ctx.batch, grad_out, ctx.fused)
            if ctx.param is not None:
                accumulate_row_grad(ctx.param, grad)
            else:
                grad_weight = row_grad_to_dense(grad, ctx.weight_shape, ctx.fused)
        if ctx.has_bias and ctx.needs_input_grad[1]:
            grad_bias = grad_out.sum(0)
        return grad_weight, grad_bias, None


def sparse_linear(batch: SparseBatch, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """x @ weight (+ bias) for a sparse batch x (padded or not). weight: (n_features, units) →
    (batch, units).

    Backward: the row-sparse gradient of weight (only the batch's features) into
    ``weight.row_grad`` when weight is a leaf tensor (autograd then sees none), else a dense
    gradient; the batch sum of grad_out for bias. Deterministic: sums run in example order.
    """
    return _SparseLinear.apply(weight, bias, batch)


def sparse_weight_grad(batch: SparseBatch, grad_out: torch.Tensor, fused: bool | None = None) -> RowSparseGrad:
    """The gradient of ``batch @ W`` with respect to W (batch.n_features rows) for grad_out (B, H):
    on the kernel path static shapes (capacity min(nnz, n_features)) and no host sync; the
    reference's capacity is its exact count."""
    if fused is None:
        fused = use_kernels(grad_out.device)
    if fused:
        return _kernel("sparse_weight_grad").sparse_weight_grad(batch, grad_out)
    features, rows = ref.sparse_weight_grad_ref(batch, grad_out)
    return RowSparseGrad(features, rows, torch.tensor(features.numel(), device=features.device))


def accumulate_row_grad(param: torch.Tensor, grad: RowSparseGrad) -> None:
    """param.row_grad = grad, or the sum of both when param already holds one."""
    held = getattr(param, "row_grad", None)
    param.row_grad = grad if held is None else add_row_grads(held, grad, param.shape[0])


def add_row_grads(a: RowSparseGrad, b: RowSparseGrad, n_rows: int) -> RowSparseGrad:
    """a + b over (n_rows, H): the union of their features, the rows of a feature in both added
    in that order, into a new RowSparseGrad (deterministic; kernel path: no host sync)."""
    if use_kernels(a.rows.device):
        return _kernel("sparse_weight_grad").merge(a, b, n_rows)
    f1, r1 = a.valid()
    f2, r2 = b.valid()
    features, rows = ref.segment_rows_ref(torch.cat([f1, f2]), n_rows, torch.cat([r1, r2.to(r1.dtype)]))
    return RowSparseGrad(features, rows, torch.tensor(features.numel(), device=features.device))


def row_grad_to_dense(grad: RowSparseGrad, shape: torch.Size | tuple[int, ...], fused: bool | None = None,
                      out: torch.Tensor | None = None) -> torch.Tensor:
    """The dense gradient (shape) of a row-sparse one, added into ``out`` when given (in
    place). Kernel path: no host sync."""
    dense = torch.zeros(shape, dtype=grad.rows.dtype, device=grad.rows.device) if out is None else out
    if fused if fused is not None else use_kernels(grad.rows.device):
        return _kernel("row_sparse").add_rows_(dense, grad)
    features, rows = grad.valid()
    dense.view(dense.shape[0], -1)[features] += rows.reshape(rows.shape[0], -1).to(dense.dtype)
    return dense


def output_loss(z: torch.Tensor, target: SparseBatch | torch.Tensor, spec: LossSpec, *,
                inplace: bool | None = None, grad_scale: torch.Tensor | None = None, world=None) -> torch.Tensor:
    """Per-example loss (batch,) of an output layer; see ``reference.output_loss_ref``.

    With sparse targets and a supported loss (``destiny.ops.triton.output_loss.supports``) on
    the kernel path, one fused kernel computes the loss and the delta ∂loss/∂z. ``inplace``:
    the delta overwrites z's memory (halving the output layer's memory and traffic). None
    (default) does so when z is an intermediate result of the autograd graph (the output
    GEMM's), never for a leaf; z then holds the delta — read nothing from it afterwards.

    grad_scale: a 0-d float32 tensor s with which the caller will seed the backward pass of a
    sum of these losses (``total.backward(s)``, as the Trainer does with s = 1/batch). The
    fused kernel then writes s · delta, and backward returns it untouched when the incoming
    gradient is that very tensor (no extra pass over the outputs); any other gradient g is
    still exact (s · delta · g / s). The fused loss is then float32 whatever z's dtype. The
    reference ignores it (autograd applies the seed).

    world: a ``destiny.parallel.World`` when z holds one rank's units of a layer split over
    ranks (and target that rank's columns): the result is this rank's part of each example's
    loss. Elementwise losses need nothing more; a SoftMax layer normalises by the log-sum-exp
    of the whole rows (``sharded_logsumexp``, on the reference path: no fused kernel).
    """
    if world is not None and world.parallel and spec.activation.kind == Activation.SOFTMAX:
        return ref.output_loss_ref(z, target, spec, lse=sharded_logsumexp(z, world))
    if isinstance(target, SparseBatch) and use_kernels(z.device):
        fused = _kernel("output_loss")
        if fused.supports(spec, z):
            if inplace is None:
                inplace = z.grad_fn is not None
            return fused.output_loss(z, target, spec, inplace=inplace, grad_scale=grad_scale)
    if z.device.type == "cpu":
        from destiny.ops import cpu_loss

        if cpu_loss.supports(spec, target):  # two passes over z instead of the reference's dozen
            return cpu_loss.output_loss(z, target, spec)
    return ref.output_loss_ref(z, target, spec)


def candidate_scores_(out: torch.Tensor, h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                      items: torch.Tensor, lo: int, counts: torch.Tensor) -> torch.Tensor:
    """out (rows, slots) float64 += h @ weight[:, items] + bias[items] for the slots
    lo ≤ s < counts[r], in float64 (exact re-scoring of top-K candidates); see
    ``reference.candidate_scores_ref``. Not differentiable."""
    if use_kernels(h.device):
        return _kernel("rescore").candidate_scores_(out, h, weight, bias, items, lo, counts)
    return ref.candidate_scores_ref(out, h, weight, bias, items, lo, counts)


def sharded_logsumexp(z: torch.Tensor, world) -> torch.Tensor:
    """(batch, 1) log Σ_j exp z_j over the whole rows of a layer whose units are split over the
    ranks of ``world`` (z: this rank's (batch, units)), differentiable: the row maximum is
    all-reduced (a constant shift), Σ exp(z − max) all-reduced in rank order
    (``parallel.all_reduce``: forward all-reduce, backward all-reduce)."""
    from destiny.parallel import all_reduce, all_reduce_max

    flat = z.flatten(1)
    top = all_reduce_max(flat.detach().amax(1, keepdim=True) if flat.shape[1] else
                         flat.new_full((flat.shape[0], 1), -torch.inf), world)
    top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
    total = all_reduce(torch.exp(flat - top).sum(1, keepdim=True), world)
    return top + torch.log(total)


def sharded_softmax(z: torch.Tensor, world) -> torch.Tensor:
    """SoftMax of one rank's units of a layer split over ranks (``sharded_logsumexp``)."""
    return torch.exp(z.flatten(1) - sharded_logsumexp(z, world)).view_as(z)


def _int_seed(seed: int | torch.Tensor) -> int:
    return int(seed)  # a device seed: host sync (the reference path only)


def dropout(x: torch.Tensor, p: float, seed: int | torch.Tensor, col_offset: int = 0,
            row_stride: int | None = None) -> torch.Tensor:
    """Inverted dropout with the Philox uniforms of ``ops.random.uniform(seed, x.numel())``.
    seed: an int or a 0-d int64 device tensor (read by the kernel, no host sync). col_offset,
    row_stride: x is columns [col_offset, col_offset + cols) of a row_stride-wide layer (one
    rank's shard), whose elements draw their numbers of the whole layer's mask
    (``reference.mask_uniforms``)."""
    if use_kernels(x.device):
        return _kernel("dropout").dropout(x, p, seed, col_offset, row_stride)
    if x.device.type == "cpu":
        from destiny.ops import cpu_dropout

        return cpu_dropout.dropout(x, p, _int_seed(seed), col_offset, row_stride)  # the reference's numbers, faster
    return ref.dropout_ref(x, p, _int_seed(seed), col_offset, row_stride)


def alpha_dropout(x: torch.Tensor, p: float, seed: int | torch.Tensor, saturation: float, col_offset: int = 0,
                  row_stride: int | None = None) -> torch.Tensor:
    """Alpha dropout (ELU/SELU layers) with the same uniforms as ``dropout``."""
    if use_kernels(x.device):
        return _kernel("dropout").alpha_dropout(x, p, seed, saturation, col_offset, row_stride)
    return ref.alpha_dropout_ref(x, p, _int_seed(seed), saturation, col_offset, row_stride)


def denoise(batch: SparseBatch, p: float, seed: int | torch.Tensor, rescale: bool = True) -> SparseBatch:
    """Denoising of a sparse input batch (``reference.denoise_ref``: dropped slots keep value 0;
    kept ones are divided by 1 − p unless rescale is False)."""
    if use_kernels(batch.device):
        return _kernel("dropout").denoise(batch, p, seed, rescale)
    return ref.denoise_ref(batch, p, _int_seed(seed), rescale)


def normalize_rows(batch: SparseBatch, norm: str, dtype: torch.dtype = torch.float32) -> SparseBatch:
    """Each example's values scaled to unit "L2" or "L1" norm (``reference.normalize_rows_ref``;
    kernel: ``ops.triton.normalize``, no host sync). Zero norms give zeros, padding stays 0.
    dtype: the values' dtype for indicator data (else the batch's values' own)."""
    if use_kernels(batch.device):
        return _kernel("normalize").normalize_rows(batch, norm, dtype)
    return ref.normalize_rows_ref(batch, norm, dtype)
