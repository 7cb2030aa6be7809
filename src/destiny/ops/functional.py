"""The sparse ops as differentiable functions, each dispatched once: a fused Triton kernel on
CUDA where one exists, the pure-torch reference (``reference.py``) otherwise.

``sparse_linear`` returns a row-sparse weight gradient (a coalesced sparse COO tensor holding
only the features present in the batch), so the input layer's gradient costs nnz·units, not
n_features·units, and optimizers can update only what changed.
"""

from __future__ import annotations

import torch

from destiny.nn.losses import LossSpec
from destiny.ops import reference as ref
from destiny.ops.sparse import SparseBatch


class _SparseLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, weight, bias, batch: SparseBatch):
        ctx.batch = batch
        ctx.weight_shape = weight.shape
        ctx.has_bias = bias is not None
        return ref.sparse_linear_ref(batch, weight, bias)

    @staticmethod
    def backward(ctx, grad_out):
        grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
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


def output_loss(z: torch.Tensor, target: SparseBatch | torch.Tensor, spec: LossSpec) -> torch.Tensor:
    """Per-example loss (batch,) of an output layer; see ``reference.output_loss_ref``."""
    return ref.output_loss_ref(z, target, spec)


def dropout(x: torch.Tensor, p: float, seed: int) -> torch.Tensor:
    return ref.dropout_ref(x, p, seed)


def alpha_dropout(x: torch.Tensor, p: float, seed: int, saturation: float) -> torch.Tensor:
    return ref.alpha_dropout_ref(x, p, seed, saturation)


def denoise(batch: SparseBatch, p: float, seed: int) -> SparseBatch:
    return ref.denoise_ref(batch, p, seed)
