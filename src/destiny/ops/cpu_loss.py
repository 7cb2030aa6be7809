"""The output loss of the two commonest sparse-target layers in two passes over the output, for
the CPU (where no fused kernel runs): a Sigmoid output with CrossEntropy and a Linear output
with L2, without ignore_zero. ``reference.output_loss_ref`` scores every unit as a zero target,
then corrects the targets — on the CPU half a dozen elementwise passes over the (batch × units)
output and as many again in autograd's backward, the largest cost of a step of a wide
autoencoder (Last.fm, 17,632 items: more than the three matrix products). Here, per example r
with targets t_k at columns c_k and data weight w_r:

    Sigmoid + CrossEntropy:  loss_r = w_r·(Σ_j softplus(z_rj) − Σ_k t_k·z_{r,c_k})
                             ∂loss_r/∂z_rj = w_r·(σ(z_rj) − t_j)
    Linear + L2:             loss_r = w_r·(½Σ_j z_rj² − Σ_k t_k·z_{r,c_k} + ½Σ_k t_k²)
                             ∂loss_r/∂z_rj = w_r·(z_rj − t_j)

the reference's numbers, since −t·log σ(z) − (1 − t)·log(1 − σ(z)) = softplus(z) − t·z. Forward: one pass
(softplus or square, summed by rows); backward: one pass (σ or identity, scaled by the rows'
gradients) and a scatter of the targets (CPU ``index_put_`` with accumulate: sequential, so
deterministic). Equal to the reference within float rounding (tested)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from destiny.config import Activation, ErrorFunction
from destiny.ops.sparse import SparseBatch


def supports(spec, target) -> bool:
    """Whether this op computes ``output_loss_ref(z, target, spec)``: sparse targets, not
    ignore_zero, no DeltaBoost, Sigmoid + CrossEntropy or Linear + L2."""
    return (isinstance(target, SparseBatch) and not target.ignore_zero and spec.boost_one == 1
            and spec.boost_zero == 1 and (spec.error_function, spec.activation.kind) in _KINDS)


_KINDS = {(ErrorFunction.CROSS_ENTROPY, Activation.SIGMOID): "sigmoid",
          (ErrorFunction.L2, Activation.LINEAR): "l2"}


def output_loss(z: torch.Tensor, target: SparseBatch, spec) -> torch.Tensor:
    """Per-example loss (batch,) as ``output_loss_ref``; differentiable in z."""
    target = target.unpadded()
    rows, cols = target.rows(), target.indices.long()
    t = target.values_or_ones(z.dtype)
    kind = _KINDS[(spec.error_function, spec.activation.kind)]
    weights = None if target.weights is None else target.weights.to(z.dtype)
    return _Loss.apply(z, rows, cols, t, weights, kind)


class _Loss(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z, rows, cols, t, weights, kind):
        flat = z.flatten(1)
        loss = torch.empty(flat.shape[0], dtype=flat.dtype, device=flat.device)
        for lo, hi in _chunks(flat):  # a few MB at a time: the temporary stays in cache
            part = flat[lo:hi]
            loss[lo:hi] = (F.softplus(part) if kind == "sigmoid" else 0.5 * part * part).sum(1)
        per_target = -t * flat[rows, cols]
        if kind == "l2":
            per_target = per_target + 0.5 * t * t
        loss = loss.index_add(0, rows, per_target)
        if weights is not None:
            loss = loss * weights
        ctx.save_for_backward(z, rows, cols, t, weights)
        ctx.kind = kind
        return loss

    @staticmethod
    def backward(ctx, grad):
        z, rows, cols, t, weights = ctx.saved_tensors
        scale = grad if weights is None else grad * weights
        flat = z.flatten(1)
        out = torch.empty_like(flat, memory_format=torch.contiguous_format)
        for lo, hi in _chunks(flat):  # σ(z) (or z) times the rows' gradients, a chunk in cache at a time
            if ctx.kind == "sigmoid":
                torch.sigmoid(flat[lo:hi], out=out[lo:hi])
            else:
                out[lo:hi] = flat[lo:hi]
            out[lo:hi].mul_(scale[lo:hi, None])
        out.index_put_((rows, cols), -t * scale[rows], accumulate=True)
        return out.view_as(z), None, None, None, None, None


CHUNK_ELEMENTS = 1 << 18  # 1 MB of float32 a chunk of rows


def _chunks(flat: torch.Tensor):
    """(lo, hi) row ranges of about CHUNK_ELEMENTS elements each."""
    n, width = flat.shape
    step = max(1, CHUNK_ELEMENTS // max(width, 1))
    return [(lo, min(lo + step, n)) for lo in range(0, n, step)]
