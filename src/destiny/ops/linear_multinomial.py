"""The output layer and its multinomial loss in one op that never holds the (batch × items)
output: z = h @ W + b is computed a chunk of item columns at a time, twice — once in the
forward pass for the rows' log-sum-exp (online max and sum of exponentials) and the targets'
logits, once in the backward pass for the gradient — as Liger-Kernel's fused linear cross
entropy does over the vocabulary. A 10M-item SoftMax output then trains in memory for one
(batch × chunk) block (plus W, its gradient and the optimizer's state, which any method holds).

Spec: ``reference.linear_multinomial_ref`` (which materialises z). Per example r, with t_k the
target values (1 for indicator targets, not spread) and w_r the data weight:

    loss_r = w_r · Σ_k t_k · (lse_r − z_{r, col k})          lse_r = log Σ_j exp z_rj
    ∂loss_r/∂z_rj = w_r · (softmax(z_r)_j · Σ_k t_k − t_j)

Backward, per chunk C of columns: dz = g·∂loss/∂z (B, C) from z recomputed, then
∂W[:, C] = hᵀ dz, ∂b[C] = Σ_rows dz, ∂h += dz W[:, C]ᵀ, in chunk order (deterministic: GEMMs
and sums in a fixed order; the target terms add to distinct places). Cost: four GEMMs of
B·H·N (the plain layer's three plus the recomputation), B·C·4 bytes of temporaries, no host
sync (padded target batches included: their slots fall outside every chunk), so a training
step built on it can be captured in a CUDA graph. One process only (a split output would
combine the ranks' max and sum, as ``functional.sharded_logsumexp`` does).

Wiring: ``Network`` does not call it yet. For an Output layer with SoftMax + Multinomial, one
FullyConnected source h and no Skip/BatchNormalization/DeltaNorm, its loss term equals
``linear_multinomial(h, W, b, target).sum()`` in place of ``output_loss(preactivation(...))``.
"""

from __future__ import annotations

import torch

from destiny.ops.sparse import SparseBatch

CHUNK_ELEMENTS = 1 << 24  # (batch × chunk) elements of z held at once: 64 MiB in float32
MIN_CHUNK = 256


def default_chunk(batch: int, width: int) -> int:
    """Columns a chunk: CHUNK_ELEMENTS / batch, a multiple of MIN_CHUNK, at most the width."""
    chunk = max(MIN_CHUNK, (CHUNK_ELEMENTS // max(batch, 1)) // MIN_CHUNK * MIN_CHUNK)
    return min(chunk, max(width, 1))


def _segment_sums(per_slot: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """(batch,) Σ over each example's slots [offsets[r], offsets[r+1]) of per_slot (float64),
    as differences of one running sum: static shapes, a fixed order, padding never read."""
    run = torch.zeros(per_slot.numel() + 1, dtype=torch.float64, device=per_slot.device)
    torch.cumsum(per_slot.double(), 0, out=run[1:])
    return run[offsets[1:]] - run[offsets[:-1]]


class _Targets:
    """A target batch as flat slots: rows (nnz,), columns (nnz,), values t (nnz,), Σt per row."""

    def __init__(self, target: SparseBatch, dtype: torch.dtype):
        self.rows = target.rows()
        self.cols = target.indices.long()
        self.t = target.values_or_ones(dtype)
        self.offsets = target.offsets
        self.weights = target.weights
        self.total = _segment_sums(self.t, self.offsets).to(dtype)  # (batch,) Σ_k t_k

    def in_chunk(self, lo: int, hi: int):
        """(mask, rows, columns − lo clamped into the chunk) of the slots whose column is in [lo, hi)."""
        mask = (self.cols >= lo) & (self.cols < hi)  # padding (column N) is never inside
        rows = torch.where(mask, self.rows, 0)
        return mask, rows, (self.cols - lo).clamp(0, hi - lo - 1)


def _chunk_logits(h, weight, bias, lo: int, hi: int) -> torch.Tensor:
    w = weight[:, lo:hi]
    return h @ w if bias is None else torch.addmm(bias[lo:hi], h, w)


class _LinearMultinomial(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h, weight, bias, target: SparseBatch, chunk: int):
        batch, width = h.shape[0], weight.shape[1]
        targets = _Targets(target, h.dtype)
        m = torch.full((batch,), -torch.inf, dtype=h.dtype, device=h.device)
        s = torch.zeros(batch, dtype=h.dtype, device=h.device)
        picked = torch.zeros(targets.cols.numel(), dtype=h.dtype, device=h.device)  # z at the targets
        for lo in range(0, width, chunk):
            hi = min(lo + chunk, width)
            z = _chunk_logits(h, weight, bias, lo, hi)  # (batch, C): the only block of z alive
            m_new = torch.maximum(m, z.amax(1))
            s = s * torch.exp(m - m_new) + torch.exp(z - m_new[:, None]).sum(1)
            m = m_new
            mask, rows, cols = targets.in_chunk(lo, hi)
            picked = torch.where(mask, z[rows, cols], picked)
        lse = m + torch.log(s)  # (batch,); −inf + log 0 never: width ≥ 1
        per_slot = torch.where(targets.rows < batch, targets.t * (lse[targets.rows.clamp(max=batch - 1)] - picked), 0)
        loss = _segment_sums(per_slot, targets.offsets).to(h.dtype)
        if targets.weights is not None:
            loss = loss * targets.weights.to(h.dtype)
        ctx.save_for_backward(h, weight, bias, lse)
        ctx.targets, ctx.chunk = targets, chunk
        return loss

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_loss):
        h, weight, bias, lse = ctx.saved_tensors
        targets, chunk = ctx.targets, ctx.chunk
        batch, width = h.shape[0], weight.shape[1]
        coef = grad_loss.to(h.dtype)
        if targets.weights is not None:
            coef = coef * targets.weights.to(h.dtype)
        scale = (coef * targets.total)[:, None]  # (batch, 1): g·w·Σt
        slot_coef = -(coef[targets.rows.clamp(max=batch - 1)] * targets.t)  # (nnz,): −g·w·t
        grad_h = torch.zeros_like(h) if ctx.needs_input_grad[0] else None
        grad_w = torch.empty_like(weight) if ctx.needs_input_grad[1] else None
        grad_b = torch.empty_like(bias) if bias is not None and ctx.needs_input_grad[2] else None
        for lo in range(0, width, chunk):
            hi = min(lo + chunk, width)
            dz = torch.exp(_chunk_logits(h, weight, bias, lo, hi) - lse[:, None]).mul_(scale)  # (batch, C)
            mask, rows, cols = targets.in_chunk(lo, hi)
            dz.index_put_((rows, cols), torch.where(mask, slot_coef, 0), accumulate=True)  # distinct places
            if grad_w is not None:
                grad_w[:, lo:hi] = h.t() @ dz  # (H, C)
            if grad_b is not None:
                grad_b[lo:hi] = dz.sum(0)
            if grad_h is not None:
                grad_h.addmm_(dz, weight[:, lo:hi].t())
        return grad_h, grad_w, grad_b, None, None


def linear_multinomial(h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, target: SparseBatch, *,
                       chunk: int | None = None) -> torch.Tensor:
    """Per-example multinomial loss (batch,) of the SoftMax output z = h @ weight + bias against
    sparse targets, without materialising z; differentiable in h, weight and bias.

    h: (batch, H) float; weight: (H, N); bias: (N,) or None; target: SparseBatch of batch
    examples over N features (distinct features an example; padded or not; values, data
    weights and ignore_zero as ``output_loss_ref``). chunk: columns of z alive at once
    (default ``default_chunk``: about CHUNK_ELEMENTS elements). Equals
    ``reference.linear_multinomial_ref`` up to rounding."""
    batch, width = h.shape[0], weight.shape[1]
    if weight.shape[0] != h.shape[1] or (bias is not None and bias.shape != (width,)):
        raise ValueError(f"h {tuple(h.shape)}, weight {tuple(weight.shape)} and bias "
                         f"{None if bias is None else tuple(bias.shape)} do not make a (batch, N) output")
    if target.batch_size != batch or target.n_features != width:
        raise ValueError(f"targets of {target.batch_size} × {target.n_features} for outputs of {batch} × {width}")
    chunk = default_chunk(batch, width) if chunk is None else int(chunk)
    if chunk < 1:
        raise ValueError(f"chunk must be a positive number of columns; got {chunk}")
    if batch == 0:
        return (h.sum(1) + weight.sum() * 0.0).to(h.dtype)  # (0,), still in the graph
    return _LinearMultinomial.apply(h, weight, bias, target, chunk)
