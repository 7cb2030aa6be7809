"""Pure-torch references of Destiny's sparse ops: the spec of every fused kernel, and the path
that runs on CPU (and on GPU where no kernel exists).

Everything here is deterministic on CPU: sums run in a fixed order (embedding_bag sums each
example's rows in order; the sparse weight gradient is a CSR × dense product with one
output row per feature; per-example losses are segment sums over CSR rows). A padded batch
(``SparseRows.take(..., capacity=C)``) is sliced to its real nonzeros first (one host sync),
except where its sentinel slots can simply be skipped.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F

from destiny.config import Activation, ErrorFunction
from destiny.nn.losses import LossSpec, Outputs, element_loss
from destiny.ops.random import uniform, uniform_at
from destiny.ops.sparse import SparseBatch


def sparse_linear_ref(batch: SparseBatch, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """x @ W (+ b) for sparse x: each example sums the weight rows of its features, scaled by
    their values. weight: (n_features, units); returns (batch, units). Reads nnz rows of W:
    nnz·units·4 bytes, 2·nnz·units FLOPs; never touches the other rows."""
    batch = batch.unpadded()
    values = None if batch.values is None else batch.values.to(weight.dtype)
    out = F.embedding_bag(batch.indices, weight, batch.offsets[:-1], mode="sum",
                          per_sample_weights=values, include_last_offset=False)
    return out if bias is None else out + bias


def segment_rows_ref(keys: torch.Tensor, n_rows: int, src: torch.Tensor, src_rows: torch.Tensor | None = None,
                     values: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Σ per distinct key u < n_rows of values[k] · src[src_rows[k]] over the positions k with
    keys[k] == u, in position order; keys ≥ n_rows (padding) are skipped.

    Returns (features (U,) int64 sorted unique, rows (U, H) in src's dtype). Computed as a
    CSR (U × S) @ src product: no (n × H) temporary. The spec of
    ``ops.triton.sparse_weight_grad.segment_rows``.
    """
    real = keys < n_rows
    positions = torch.nonzero(real).view(-1)  # host sync (CPU: free)
    keys = keys[positions].long()
    sort = torch.argsort(keys, stable=True)
    order = positions[sort]  # (n_real,) positions, by key then position
    features, counts = torch.unique_consecutive(keys[sort], return_counts=True)
    crow = torch.zeros(features.numel() + 1, dtype=torch.int64, device=src.device)
    torch.cumsum(counts, 0, out=crow[1:])
    col = order if src_rows is None else src_rows[order]
    val = torch.ones(order.numel(), dtype=src.dtype, device=src.device) if values is None else \
        values[order].to(src.dtype)
    with warnings.catch_warnings():  # "CSR support is in beta": the product below is long stable
        warnings.simplefilter("ignore", UserWarning)
        transposed = torch.sparse_csr_tensor(crow, col, val, size=(features.numel(), src.shape[0]),
                                             check_invariants=False)
        return features, transposed @ src


def sparse_weight_grad_ref(batch: SparseBatch, grad_out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The gradient of x @ W with respect to W, only for the features present in the batch.

    Returns (features, rows): features (U,) int64, sorted and unique; rows (U, units) with
    rows[u] = Σ over the nonzeros k of feature u of value_k · grad_out[example of k], summed in
    example order. Computed as Xᵀ (U × batch, CSR) @ grad_out: no (nnz × units) temporary. A
    padded batch's sentinel slots are skipped.
    """
    return segment_rows_ref(batch.indices, batch.n_features, grad_out, batch.rows(), batch.values)


def row_sums(values: torch.Tensor, batch: SparseBatch) -> torch.Tensor:
    """(batch,) sums of per-nonzero values over each example's nonzeros, in order."""
    return torch.segment_reduce(values, "sum", lengths=batch.lengths, unsafe=True)


class _ShardOutputs(Outputs):
    """SoftMax outputs of one rank's units of a layer split over ranks: a = exp(z − lse) with
    the log-sum-exp of the whole row."""

    def __init__(self, z: torch.Tensor, spec: LossSpec, lse: torch.Tensor):
        self.z, self.kind = z, spec.activation.kind
        self._log_a = z - lse
        self.a = torch.exp(self._log_a)


def output_loss_ref(z: torch.Tensor, target: SparseBatch | torch.Tensor, spec: LossSpec,
                    lse: torch.Tensor | None = None) -> torch.Tensor:
    """Per-example loss (batch,) of an output layer with pre-activations z (batch, units).

    Sparse targets: every unit is scored as a zero target, then only the nonzero targets are
    corrected (DSSTNE's two-pass trick): one pass over z, no dense target tensor. Indicator
    targets are 1 (1/#targets of the example for SoftMax + CrossEntropy, so the target is a
    distribution; Multinomial keeps 1: −Σ_targets log softmax(z)). With ignore_zero (DSSTNE's SparseIgnoreZero) only nonzero targets count.
    Per-example data weights multiply the loss. The gradient of the sum is DSSTNE's delta.

    lse: (batch, 1) for a SoftMax layer split over ranks (z holds one rank's units): the
    log-sum-exp of the whole rows (``functional.sharded_logsumexp``); the loss is then this
    rank's part of the example's loss.
    """
    out = Outputs(z, spec) if lse is None else _ShardOutputs(z, spec, lse)
    if isinstance(target, SparseBatch):
        target = target.unpadded()
    if isinstance(target, torch.Tensor):
        loss = element_loss(out, target, spec)
        loss = loss.flatten(1).sum(1)
        return loss
    rows, cols = target.rows(), target.indices
    t = target.values_or_ones(z.dtype)
    if target.values is None and out.kind == Activation.SOFTMAX and spec.error_function == ErrorFunction.CROSS_ENTROPY:
        t = t / target.lengths.clamp(min=1).to(z.dtype)[rows]
    picked = out.gather(rows, cols)
    correction = element_loss(picked, t, spec)
    if target.ignore_zero:
        loss = row_sums(correction, target)
    else:
        correction = correction - element_loss(picked, 0.0, spec)
        loss = element_loss(out, 0.0, spec).sum(1) + row_sums(correction, target)
    if target.weights is not None:
        loss = loss * target.weights.to(loss.dtype)
    return loss


def linear_multinomial_ref(h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                           target: SparseBatch) -> torch.Tensor:
    """Per-example multinomial loss (batch,) of a SoftMax output z = h @ weight + bias against
    sparse targets: −Σ_k t_k·log softmax(z)_{col k} (``output_loss_ref`` with Multinomial).
    h: (batch, H); weight: (H, N); bias: (N,) or None. Materialises z (batch × N): the spec of
    ``ops.linear_multinomial``, which never does."""
    from destiny.nn.activations import ActivationSpec

    z = h @ weight if bias is None else torch.addmm(bias, h, weight)
    return output_loss_ref(z, target, LossSpec(ErrorFunction.MULTINOMIAL, ActivationSpec(Activation.SOFTMAX)))


def mask_uniforms(x: torch.Tensor, seed: int, col_offset: int = 0, row_stride: int | None = None) -> torch.Tensor:
    """The uniforms of x's elements for dropout: ``destiny.ops.random.uniform(seed, x.numel())``
    in x's row-major order; or, when x (rows, cols) is columns [col_offset, col_offset + cols)
    of a row_stride-wide layer (a model-parallel shard), element (b, j) takes number
    b·row_stride + col_offset + j of that stream — its place in the whole layer's mask."""
    if row_stride is None or (col_offset == 0 and row_stride == x.shape[-1]):
        return uniform(seed, x.numel(), x.device).view_as(x)
    rows, cols = x.numel() // max(x.shape[-1], 1), x.shape[-1]
    index = (torch.arange(rows, dtype=torch.int64, device=x.device)[:, None] * row_stride + col_offset
             + torch.arange(cols, dtype=torch.int64, device=x.device)[None, :])
    return uniform_at(seed, index).view_as(x)


def dropout_ref(x: torch.Tensor, p: float, seed: int, col_offset: int = 0,
                row_stride: int | None = None) -> torch.Tensor:
    """Inverted dropout: each element is kept when its uniform u ≥ p and scaled by 1/(1-p).
    The uniforms are ``mask_uniforms(x, seed, col_offset, row_stride)``."""
    keep = mask_uniforms(x, seed, col_offset, row_stride) >= p
    return torch.where(keep, x * (1.0 / (1.0 - p)), torch.zeros_like(x))


def alpha_dropout_ref(x: torch.Tensor, p: float, seed: int, saturation: float, col_offset: int = 0,
                      row_stride: int | None = None) -> torch.Tensor:
    """Alpha dropout for ELU/SELU layers (Klambauer et al. 2017): dropped units take the
    activation's negative saturation value, then an affine map keeps mean and variance."""
    q = 1.0 - p
    keep = mask_uniforms(x, seed, col_offset, row_stride) >= p
    a = (q + saturation * saturation * p * q) ** -0.5
    b = -a * saturation * p
    return a * torch.where(keep, x, torch.full_like(x, saturation)) + b


def denoise_ref(batch: SparseBatch, p: float, seed: int, rescale: bool = True) -> SparseBatch:
    """Denoising of a sparse input: each nonzero slot k is dropped when its uniform u_k < p
    (``uniform(seed, batch.nnz)``), kept values are scaled by 1/(1-p) (DSSTNE's denoising q;
    rescale=False: kept as they are — the same mask either way).

    Static formulation: a dropped nonzero keeps its slot with value 0, so the batch keeps its
    shape (offsets, indices) and only its float32 values change; a padded batch's padding slots
    stay 0. The forward sums and the weight gradient equal those of the batch without the
    dropped nonzeros (their rows get zero gradient)."""
    keep = uniform(seed, batch.nnz, batch.device) >= p
    if batch.padded:
        keep &= batch.rows() < batch.batch_size
    scale = 1.0 / (1.0 - p) if rescale else 1.0
    values = torch.where(keep, batch.values_or_ones(torch.float32) * scale, 0.0)
    out = SparseBatch(batch.offsets, batch.indices, values, batch.n_features, batch.weights, batch.ignore_zero,
                      batch.padded)
    out._rows = getattr(batch, "_rows", None)
    return out


def normalized_dtype(batch: SparseBatch, dtype: torch.dtype = torch.float32) -> torch.dtype:
    """The dtype of a normalised batch's values: the batch's own when floating, else ``dtype``
    (indicator data: the network's)."""
    return batch.values.dtype if batch.values is not None and batch.values.is_floating_point() else dtype


def normalize_rows_ref(batch: SparseBatch, norm: str, dtype: torch.dtype = torch.float32) -> SparseBatch:
    """Each example's values scaled to unit norm: "L2" v/√Σv² (1/√n for indicator data, values
    None), "L1" v/Σ|v| (1/n). An example whose norm is 0 (no nonzeros, or only zero values)
    keeps zeros, never NaN. Same offsets and indices; values in ``normalized_dtype(batch, dtype)``; a padded
    batch stays padded, its padding slots 0. Per-example sums in example order over the real
    nonzeros (``unpadded``: a host sync when padded). Not differentiable (input data)."""
    dtype = normalized_dtype(batch, dtype)
    real = batch.unpadded()
    v = real.values_or_ones(dtype)
    terms = v * v if norm == "L2" else v.abs()
    sums = torch.segment_reduce(terms, "sum", lengths=real.lengths, unsafe=True) if real.batch_size else terms[:0]
    size = sums.sqrt() if norm == "L2" else sums
    scale = torch.where(size > 0, 1.0 / torch.where(size > 0, size, 1.0), 0.0)  # (batch,): 0 for an empty example
    values = torch.zeros(batch.nnz, dtype=dtype, device=batch.device)
    values[:real.nnz] = v * scale[real.rows()]
    out = SparseBatch(batch.offsets, batch.indices, values, batch.n_features, batch.weights, batch.ignore_zero,
                      batch.padded)
    out._rows = getattr(batch, "_rows", None)
    return out


RESCORE_ELEMENTS = 1 << 22  # float64 products (32 MB) held at once by candidate_scores_ref


def candidate_scores_ref(out: torch.Tensor, h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                         items: torch.Tensor, lo: int, counts: torch.Tensor) -> torch.Tensor:
    """out[r, s] += Σ_i h[r, i] · weight[i, items[r, s]] + bias[items[r, s]] in float64, for the
    slots lo ≤ s < counts[r]; the others are left as they are (their items may be anything).

    out: (rows, slots) float64; h: (rows, n) float32; weight: (n, width) float32 (any
    strides); bias: (width,); items: (rows, slots) int64; counts: (rows,) int64 ≤ slots.
    Products of float32 values are exact in float64; the dot is summed in float64, then the
    bias added. Temporaries: one block of rows' gathered columns (``RESCORE_ELEMENTS``)."""
    rows, slots = items.shape
    n = h.shape[1]
    if rows == 0 or slots <= lo:
        return out
    live = torch.arange(lo, slots, device=items.device)[None, :] < counts[:, None]  # (rows, slots − lo)
    picked = torch.where(live, items[:, lo:], 0)
    step = max(1, RESCORE_ELEMENTS // max(1, (slots - lo) * n))
    columns = weight.t()  # (width, n) view
    for first in range(0, rows, step):
        block = slice(first, min(first + step, rows))
        w = columns[picked[block]].to(torch.float64)  # (r, slots − lo, n) gathered columns
        dots = torch.einsum("rsn,rn->rs", w, h[block].to(torch.float64))
        scores = dots + bias[picked[block]].to(torch.float64)
        out[block, lo:] += torch.where(live[block], scores, 0.0)
    return out
