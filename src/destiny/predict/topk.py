"""Top-K recommendations at any output width, without the full batch × width score matrix.

The output layer is scored in chunks of columns: for each chunk, pre-activations
z = h @ W[:, chunk] + b[chunk], the activation, filtering (seen / excluded items get −inf),
and a top-K merged into the running top-K of the batch. Memory is bounded by batch × chunk;
the same code serves 27K and 10M items, on CPU and GPU.

Ties are broken deterministically by the lower item index: scores are mapped to
order-preserving integers and combined with the item index into one int64 key, so top-K
never depends on the order a kernel happens to visit equal scores. SoftMax outputs are ranked
by their pre-activations and normalised with a running log-sum-exp over the chunks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from destiny.config import Activation, LayerKind
from destiny.nn.activations import activate
from destiny.ops.sparse import SparseBatch

DEFAULT_CHUNK_ELEMENTS = 1 << 24  # batch × chunk ≤ 16M scores (64 MB in float32)


@dataclass
class TopK:
    """scores (batch, k) float32 descending; items (batch, k) int64, −1 where fewer than k
    items were eligible (their score is −inf)."""

    scores: torch.Tensor
    items: torch.Tensor


def _sortable(scores: torch.Tensor) -> torch.Tensor:
    """float32 → int64 whose order is the float order (−inf lowest; NaN treated as −inf)."""
    scores = torch.nan_to_num(scores, nan=-math.inf, posinf=math.inf, neginf=-math.inf)
    bits = scores.contiguous().view(torch.int32).to(torch.int64)
    return torch.where(bits >= 0, bits, bits ^ 0x7FFFFFFF)


def _keys(scores: torch.Tensor, first_item: int) -> torch.Tensor:
    """One int64 key per score: score order first, then the lower item index."""
    items = torch.arange(first_item, first_item + scores.shape[1], device=scores.device, dtype=torch.int64)
    return (_sortable(scores) << 32) | ((1 << 32) - 1 - (items & 0xFFFFFFFF))


def _merge(best_keys, best_items, keys, items, k):
    keys = torch.cat([best_keys, keys], dim=1)
    items = torch.cat([best_items, items], dim=1)
    top, where = torch.topk(keys, min(k, keys.shape[1]), dim=1, sorted=True)
    return top, torch.gather(items, 1, where)


def _scores_from_keys(keys: torch.Tensor) -> torch.Tensor:
    bits = keys >> 32
    bits = torch.where(bits >= 0, bits, bits ^ 0x7FFFFFFF)
    return bits.to(torch.int32).view(torch.float32)


@torch.no_grad()
def top_k(network, inputs: dict, k: int, *, layer: str | None = None, exclude: SparseBatch | None = None,
          include_only: torch.Tensor | None = None, chunk: int | None = None) -> TopK:
    """The k best items of output ``layer`` for one batch of ``inputs`` (layer name → batch).

    exclude: items per example never to recommend (e.g. those already seen), in output-layer
    columns. include_only: a (width,) bool mask of the items allowed at all.
    """
    layer_cfg = network.config.layer(layer) if layer else network.output_layers()[0]
    if layer_cfg.kind != LayerKind.OUTPUT:
        raise ValueError(f"layer '{layer_cfg.name}' is not an Output layer")
    width = network.units[layer_cfg.name]
    sources = set(layer_cfg.sources) | set(layer_cfg.skips)
    values = network.forward(inputs, None, stop_at=sources)
    batch = next(v.shape[0] if isinstance(v, torch.Tensor) else v.batch_size for v in values.values())
    chunk = chunk or max(1, min(width, DEFAULT_CHUNK_ELEMENTS // max(batch, 1)))
    device = network.device
    act = network.activation[layer_cfg.name]
    softmax = act.kind == Activation.SOFTMAX
    best_keys = torch.empty(batch, 0, dtype=torch.int64, device=device)
    best_items = torch.empty(batch, 0, dtype=torch.int64, device=device)
    lse = torch.full((batch,), -math.inf, dtype=torch.float32, device=device)
    for start in range(0, width, chunk):
        stop = min(start + chunk, width)
        z = _chunk_preactivation(network, layer_cfg, values, start, stop)
        scores = z.float() if softmax else activate(z, act).float()
        if softmax:
            lse = torch.logaddexp(lse, torch.logsumexp(scores, dim=1))
        _mask(scores, start, stop, exclude, include_only)
        keys = _keys(scores, start)
        kk = min(k, stop - start)
        top, where = torch.topk(keys, kk, dim=1, sorted=False)
        items = where + start
        best_keys, best_items = _merge(best_keys, best_items, top, items, k)
    raw = _scores_from_keys(best_keys)
    invalid = torch.isneginf(raw)
    scores = torch.exp(raw - lse[:, None]) if softmax else raw
    scores = torch.where(invalid, torch.full_like(scores, -math.inf), scores)
    items = torch.where(invalid, torch.full_like(best_items, -1), best_items)
    if items.shape[1] < k:  # fewer items than k in the whole layer
        pad = k - items.shape[1]
        items = torch.cat([items, items.new_full((batch, pad), -1)], dim=1)
        scores = torch.cat([scores, scores.new_full((batch, pad), -math.inf)], dim=1)
    return TopK(scores, items)


def _chunk_preactivation(network, layer_cfg, values, start: int, stop: int) -> torch.Tensor:
    from destiny.ops import functional as ops

    z = None
    for src in layer_cfg.sources:
        spec = network._spec_of[(src, layer_cfg.name)]
        w = network.weight(spec)[:, start:stop]
        b = network.bias(spec)[start:stop]
        x = values[src]
        term = ops.sparse_linear(x, w.contiguous(), b) if isinstance(x, SparseBatch) else torch.addmm(b, x, w)
        z = term if z is None else z + term
    for skip in layer_cfg.skips:
        z = z + values[skip][:, start:stop]
    return z


def _mask(scores, start, stop, exclude, include_only) -> None:
    if include_only is not None:
        scores[:, ~include_only[start:stop].to(scores.device)] = -math.inf
    if exclude is not None and exclude.nnz:
        rows = exclude.rows()
        cols = exclude.indices
        inside = (cols >= start) & (cols < stop)
        scores[rows[inside], cols[inside] - start] = -math.inf
