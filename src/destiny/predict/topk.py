"""Top-K recommendations at any output width, without the full batch × width score matrix.

Two methods give the same exact ranking. "exact" (below; CPU's default) scores every item in
the network's precision. "candidates" (``destiny.predict.candidates``; the default on CUDA,
where it applies: one process, dense sources, an increasing activation other than SoftMax,
float32) scores every item with a TF32 GEMM only to pick each row's candidates, bounds that
GEMM's error per row, rescores the candidates that can still reach the top K in float64 and
proves that no other item can; rows it cannot prove are scored over the whole width in
float64. Its scores are the float32 roundings of float64 sums, so they can differ from the
exact method's float32 GEMM in the last bit, and near-ties at that level can order
differently. ``top_k(method=...)`` chooses ("auto", "exact", "candidates"); model-parallel
networks use the exact method.

The output layer is scored in chunks of columns into one reused (batch, chunk) buffer:
pre-activations z = h @ W[:, chunk] + b[chunk] written in place (``addmm(out=)``), the
activation applied in place where ranking needs it (below), filtered items (seen, excluded,
not included) set to −inf, then a top-(K+1) of the chunk merged into the running top-K of the
batch. Every other temporary is (batch, K) or one block of rows (``BLOCK_ELEMENTS`` floats or
``KEY_BLOCK_ELEMENTS`` keys: under 10 MB), so the peak is batch × chunk × 4 bytes plus a few
MB, besides what the BLAS library keeps after its first call (benchmarks/predict_memory.py);
the same code serves 27K and 10M items, on CPU and GPU.

Ranking: for strictly increasing activations (Sigmoid, Tanh, Linear, SoftPlus, SoftSign,
SoftMax, ELU, SELU, LeakyReLU with a positive slope) items are ranked by their pre-activations
and only the K picked scores are activated (in float64, then rounded to float32): no pass of
the activation over the chunk, a sigmoid saturated at 1.0 in float32 still ranks by how sure
the network is, and an elementwise kernel whose last bit depends on where a value sits in a
tensor cannot reorder equal items. ReLU (flat below 0) ranks by its exact activations.

Ties go to the lower item index, deterministically. A chunk's top is taken on the float
values with one candidate more than K: where the (K+1)-th value equals the K-th, topk's choice
among the tied items is arbitrary, so those rows (rare: real ties at the cut) are redone on
int64 keys (value order first, then the lower index), one block of rows at a time. The merge
across chunks always uses the keys. So top-K depends neither on the order a kernel visits
equal values nor on the batch or chunk size. NaN ranks as −inf (never recommended), −0.0
equals +0.0. SoftMax outputs are normalised with a running log-sum-exp over the chunks.
Item indices must be below 2^32.

Model parallel (a Network over N processes): each process scores only its items (its columns
of the output layer, ``shard_bounds``) chunk by chunk, keeps its top-K with global item ids,
and the N candidate lists are all-gathered and merged on the same keys (score, then the lower
item index), so every process gets the one-process answer for the same scores; SoftMax's
log-sum-exp is combined over the processes in rank order. An output matrix split by input rows
(an output narrower than 2/3 of its input) is computed whole for the process's items first
(batch × its items), then ranked in chunks the same way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from destiny.config import Activation, LayerKind
from destiny.errors import UsageError
from destiny.nn.activations import activate
from destiny.ops.reference import sparse_linear_ref
from destiny.ops.sparse import SparseBatch
from destiny.parallel import OUTPUT, all_gather_stack

DEFAULT_CHUNK_ELEMENTS = 1 << 24  # batch × chunk ≤ 16M scores (64 MB in float32)
# The candidate method on a GPU: batch × chunk ≤ 128M scores (512 MB); with batch 16,384 a chunk of
# 8,192 columns, the fastest measured (NVIDIA H200, benchmarks/train_step.py --parts predict).
CANDIDATE_CHUNK_ELEMENTS = 1 << 27
BLOCK_ELEMENTS = 1 << 20  # float32 values (4 MB) of a chunk's rows handled at once by passes that need a temporary
KEY_BLOCK_ELEMENTS = 1 << 18  # values of tied rows redone at once on int64 keys (~8 MB of temporaries)
_INDEX_MASK = (1 << 32) - 1
_IN_PLACE = {Activation.RELU: torch.relu_}


METHODS = ("auto", "exact", "candidates")


@dataclass
class TopK:
    """scores (batch, k) float32 descending; items (batch, k) int64, −1 where fewer than k
    items were eligible (their score is −inf). fallback: (batch,) bool, the method
    "candidates" only: the rows its certificate did not cover, scored over the whole width."""

    scores: torch.Tensor
    items: torch.Tensor
    fallback: torch.Tensor | None = None


def _sortable(scores: torch.Tensor) -> torch.Tensor:
    """float32 → int64 whose order is the float order (−inf lowest; NaN treated as −inf;
    −0.0 and +0.0 equal)."""
    scores = torch.nan_to_num(scores, nan=-math.inf, posinf=math.inf, neginf=-math.inf) + 0.0  # −0 → +0
    bits = scores.contiguous().view(torch.int32).to(torch.int64)
    return torch.where(bits >= 0, bits, bits ^ 0x7FFFFFFF)


def _item_keys(scores: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    """One int64 key per (score, item): score order first, then the lower item index."""
    return (_sortable(scores) << 32) | (_INDEX_MASK - (items & _INDEX_MASK))


def _keys(scores: torch.Tensor, first_item: int) -> torch.Tensor:
    """Keys of a (rows, n) block of scores whose columns are items first_item, first_item + 1, …"""
    items = torch.arange(first_item, first_item + scores.shape[1], device=scores.device, dtype=torch.int64)
    return _item_keys(scores, items)


def _merge(best_keys, best_items, keys, items, k):
    keys = torch.cat([best_keys, keys], dim=1)
    items = torch.cat([best_items, items], dim=1)
    top, where = torch.topk(keys, min(k, keys.shape[1]), dim=1, sorted=True)
    return top, torch.gather(items, 1, where)


def _scores_from_keys(keys: torch.Tensor) -> torch.Tensor:
    bits = keys >> 32
    bits = torch.where(bits >= 0, bits, bits ^ 0x7FFFFFFF)
    return bits.to(torch.int32).view(torch.float32)


def _row_blocks(rows: int, width: int, elements: int | None = None):
    step = max(1, (elements or BLOCK_ELEMENTS) // max(width, 1))
    for first in range(0, rows, step):
        yield slice(first, min(first + step, rows))


def output_layer(network, layer: str | None):
    """The config of output ``layer`` (default: the first Output layer); UsageError if unknown."""
    if layer is None:
        return network.output_layers()[0]
    try:
        cfg = network.config.layer(layer)
    except KeyError:
        names = ", ".join(f"'{l.name}'" for l in network.config.layers)
        raise UsageError(f"the network has no layer '{layer}'; its layers are {names}") from None
    if cfg.kind != LayerKind.OUTPUT:
        raise UsageError(f"layer '{layer}' is a {cfg.kind.json} layer; recommendations come from an Output layer "
                         f"({', '.join(repr(l.name) for l in network.output_layers())})")
    return cfg


class _Running:
    """The running top-k of a batch, fed one chunk of activated scores at a time."""

    def __init__(self, batch: int, k: int, device: torch.device):
        self.k = k
        self.keys = torch.empty(batch, 0, dtype=torch.int64, device=device)
        self.items = torch.empty(batch, 0, dtype=torch.int64, device=device)

    def add(self, scores: torch.Tensor, start: int, exclude: SparseBatch | None,
            include_only: torch.Tensor | None) -> None:
        """Merge the chunk ``scores`` (batch, n) of items start…start + n − 1; ``scores`` is
        overwritten (NaN → −inf, filtered items → −inf)."""
        torch.nan_to_num_(scores, nan=-math.inf, posinf=math.inf, neginf=-math.inf)
        _mask(scores, start, start + scores.shape[1], exclude, include_only)
        keys, items = _chunk_top(scores, self.k, start)
        self.keys, self.items = _merge(self.keys, self.items, keys, items, self.k)

    def merge_ranks(self, world) -> None:
        """Replace this rank's top-k by the top-k of every rank's (all-gathered, merged on the
        keys): the same on every rank. Ranks holding fewer than k items pad with −inf."""
        if not world.parallel:
            return
        batch, held = self.keys.shape
        if held < self.k:  # pad to k candidates: −inf scores that lose every tie
            pad_items = torch.full((batch, self.k - held), _INDEX_MASK, dtype=torch.int64, device=self.keys.device)
            pad_keys = _item_keys(torch.full(pad_items.shape, -math.inf, device=self.keys.device), pad_items)
            self.keys = torch.cat([self.keys, pad_keys], dim=1)
            self.items = torch.cat([self.items, pad_items], dim=1)
        keys = all_gather_stack(self.keys, world).permute(1, 0, 2).reshape(batch, -1)  # (batch, P·k), rank order
        items = all_gather_stack(self.items, world).permute(1, 0, 2).reshape(batch, -1)
        top, where = torch.topk(keys, min(self.k, keys.shape[1]), dim=1, sorted=True)
        self.keys, self.items = top, torch.gather(items, 1, where)

    def result(self, activation=None) -> TopK:
        """Scores (``activation`` of the ranked values, if any) and items, −inf / −1 padded to k."""
        batch, k = self.keys.shape[0], self.k
        raw = _scores_from_keys(self.keys)
        invalid = torch.isneginf(raw)
        scores = raw if activation is None else activation(raw)
        scores = torch.where(invalid, torch.full_like(scores, -math.inf), scores)
        items = torch.where(invalid, torch.full_like(self.items, -1), self.items)
        if items.shape[1] < k:  # fewer items than k in the whole layer
            pad = k - items.shape[1]
            items = torch.cat([items, items.new_full((batch, pad), -1)], dim=1)
            scores = torch.cat([scores, scores.new_full((batch, pad), -math.inf)], dim=1)
        return TopK(scores, items)


def _default_chunk(width: int, batch: int, chunk: int | None, elements: int = DEFAULT_CHUNK_ELEMENTS) -> int:
    if chunk is not None and chunk < 1:
        raise UsageError(f"the chunk must be a positive number of columns, not {chunk}")
    return max(1, min(width, chunk or elements // max(batch, 1)))


@torch.no_grad()
def top_k(network, inputs: dict, k: int, *, layer: str | None = None, exclude: SparseBatch | None = None,
          include_only: torch.Tensor | None = None, chunk: int | None = None, method: str = "auto") -> TopK:
    """The k best items of output ``layer`` for one batch of ``inputs`` (layer name → batch).

    exclude: items per example never to recommend (e.g. those already seen), in output-layer
    columns. include_only: a (width,) bool mask of the items allowed at all. chunk: output
    columns scored at once (default: 16M / batch); memory ≈ batch × chunk × 4 bytes.
    method: "exact" scores every item in the network's precision (this module's docstring);
    "candidates" picks candidates with a TF32 pass (bfloat16-emulated on CPU) and scores them
    exactly in float64 under a certified error bound (``destiny.predict.candidates``: the
    same items as a float64 brute force, several times faster on tensor cores); "auto" (the
    default) is "candidates" on CUDA where it applies, else "exact".
    """
    if k < 1:
        raise UsageError(f"k must be a positive integer, not {k}")
    if method not in METHODS:
        raise UsageError(f"unknown top-K method {method!r}; use one of {', '.join(METHODS)}")
    layer_cfg = output_layer(network, layer)
    world = network.world
    lo, hi = network.bounds[layer_cfg.name]  # this process's items (all of them in one process)
    sources = set(layer_cfg.sources) | set(layer_cfg.skips)
    values = network.forward(inputs, None, stop_at=sources)
    batch = next(v.shape[0] if isinstance(v, torch.Tensor) else v.batch_size for v in values.values())
    if method != "exact":
        from destiny.predict import candidates  # it builds on this module's keys

        why = candidates.unsupported(network, layer_cfg, values)
        if why is not None and method == "candidates":
            raise UsageError(f"top-K method 'candidates' cannot rank layer '{layer_cfg.name}': {why}; "
                             "use method 'exact' (or 'auto', which picks it)")
        if why is None and (method == "candidates" or network.device.type == "cuda"):
            elements = CANDIDATE_CHUNK_ELEMENTS if network.device.type == "cuda" else DEFAULT_CHUNK_ELEMENTS
            return candidates.candidate_top_k(network, layer_cfg, values, k, exclude=exclude,
                                              include_only=include_only,
                                              chunk=_default_chunk(hi - lo, batch, chunk, elements))
    chunk = _default_chunk(hi - lo, batch, chunk)
    device = network.device
    act = network.activation[layer_cfg.name]
    softmax = act.kind == Activation.SOFTMAX
    by_preactivation = ranks_by_preactivation(act)
    buffer = torch.empty(batch * chunk, dtype=network.dtype, device=device)  # the one batch × chunk buffer
    running = _Running(batch, k, device)
    lse = torch.full((batch,), -math.inf, dtype=torch.float32, device=device)
    whole = None  # model parallel, a matrix split by input rows: (batch, my items) at once
    if world.parallel and any(network.plan[network._spec_of[(src, layer_cfg.name)].index].mode != OUTPUT
                              for src in layer_cfg.sources):
        whole = network.preactivation(layer_cfg, values)
    for start in range(0, hi - lo, chunk):
        stop = min(start + chunk, hi - lo)
        if whole is not None:
            scores = buffer[:batch * (stop - start)].view(batch, stop - start)
            scores.copy_(whole[:, start:stop])
        else:
            scores = _chunk_preactivation(network, layer_cfg, values, start, stop, buffer, batch)
        if scores.dtype != torch.float32:
            scores = scores.float()
        if softmax:
            lse = torch.logaddexp(lse, _logsumexp_rows(scores))
        elif not by_preactivation:
            _activate_(scores, act)
        running.add(scores, lo + start, exclude, include_only)  # global item ids
        del scores
    running.merge_ranks(world)
    if softmax and world.parallel:  # log Σ over every process's items, in rank order
        every = all_gather_stack(lse, world)
        lse = every[0]
        for q in range(1, world.size):
            lse = torch.logaddexp(lse, every[q])
    if softmax:
        return running.result(lambda z: torch.exp(z.double() - lse.double()[:, None]).float())
    return running.result((lambda z: activate(z.double(), act).float()) if by_preactivation else None)


@torch.no_grad()
def top_k_scores(scores: torch.Tensor, k: int, *, exclude: SparseBatch | None = None,
                 include_only: torch.Tensor | None = None, chunk: int | None = None) -> TopK:
    """The same ranking over a given (batch, width) score matrix (e.g. another model's): the k
    best items of each row, ties to the lower item index, ``exclude``/``include_only`` as in
    ``top_k``. ``scores`` is left unchanged; one (batch, chunk) float32 copy at a time."""
    if k < 1:
        raise UsageError(f"k must be a positive integer, not {k}")
    batch, width = scores.shape
    chunk = _default_chunk(width, batch, chunk)
    buffer = torch.empty(batch * chunk, dtype=torch.float32, device=scores.device)
    running = _Running(batch, k, scores.device)
    for start in range(0, width, chunk):
        stop = min(start + chunk, width)
        part = buffer[:batch * (stop - start)].view(batch, stop - start)
        part.copy_(scores[:, start:stop])
        running.add(part, start, exclude, include_only)
    return running.result()


def _chunk_preactivation(network, layer_cfg, values, start: int, stop: int, buffer: torch.Tensor,
                         batch: int) -> torch.Tensor:
    """(batch, stop − start) pre-activations of the output columns start:stop (of this
    process's columns, model parallel: all the sources' units all-gathered), in ``buffer``."""
    out = buffer[:batch * (stop - start)].view(batch, stop - start)
    parallel = network.world.parallel
    for n, src in enumerate(layer_cfg.sources):
        spec = network._spec_of[(src, layer_cfg.name)]
        w = network.weight(spec)[:, start:stop]  # (inputs, columns) strided view: no copy
        b = network.bias(spec)[start:stop]
        x = network.full_value(src, values) if parallel else values[src]
        if isinstance(x, SparseBatch):  # gathers x's weight rows of the slice: (batch, columns)
            term = sparse_linear_ref(x, w, b)
            if n == 0:
                out.copy_(term)
            else:
                out.add_(term)
            del term
        elif n == 0:
            torch.addmm(b, x, w, out=out)
        else:
            out.addmm_(x, w).add_(b)
    for skip in layer_cfg.skips:
        out.add_((network.shard_value(skip, values) if parallel else values[skip])[:, start:stop])
    return out


def ranks_by_preactivation(act) -> bool:
    """Whether the activation is strictly increasing, so that ranking by pre-activations is
    ranking by outputs."""
    kind = act.kind
    if kind == Activation.LEAKY_RELU:
        return act.slope > 0
    if kind in (Activation.ELU, Activation.SELU):
        return act.alpha > 0 and (kind == Activation.ELU or act.lam > 0)
    return kind != Activation.RELU


def _activate_(scores: torch.Tensor, act) -> None:
    """The activation in place, with at most one block of rows of temporaries."""
    if act.kind == Activation.LINEAR:
        return
    if act.kind in _IN_PLACE:
        _IN_PLACE[act.kind](scores)
        return
    for rows in _row_blocks(*scores.shape):
        scores[rows] = activate(scores[rows], act)


def _logsumexp_rows(scores: torch.Tensor) -> torch.Tensor:
    out = torch.empty(scores.shape[0], dtype=torch.float32, device=scores.device)
    for rows in _row_blocks(*scores.shape):
        out[rows] = torch.logsumexp(scores[rows], dim=1)
    return out


def _mask(scores, start, stop, exclude, include_only) -> None:
    if include_only is not None:
        scores.masked_fill_(~include_only[start:stop].to(scores.device).unsqueeze(0), -math.inf)
    if exclude is not None and exclude.nnz:
        rows = exclude.rows()
        cols = exclude.indices
        inside = (cols >= start) & (cols < stop)
        scores[rows[inside], cols[inside] - start] = -math.inf


def _chunk_top(scores: torch.Tensor, k: int, start: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(keys, items), each (batch, min(k, columns)): the exact top of one chunk of scores
    (columns = items start, start + 1, …) under (score descending, item ascending)."""
    batch, n = scores.shape
    kk = min(k, n)
    if kk == n:
        values, where = scores, torch.arange(n, device=scores.device).expand(batch, n)
    else:
        # One more than needed, sorted: where the (k+1)-th best value equals the k-th, topk's
        # choice among the tied items is arbitrary, and those rows are redone on exact keys.
        values, where = torch.topk(scores, kk + 1, dim=1, sorted=True)
        beyond = values[:, kk]
        values, where = values[:, :kk], where[:, :kk]
        kth = values[:, kk - 1]
        tied = torch.nonzero((kth == beyond) & (kth > -math.inf)).flatten()  # −inf: ineligible anyway
        if tied.numel():  # host sync
            values, where = values.clone(), where.clone()
            for block in _row_blocks(tied.numel(), n, KEY_BLOCK_ELEMENTS):
                rows = tied[block]
                _, exact = torch.topk(_keys(scores[rows], 0), kk, dim=1, sorted=False)
                where[rows] = exact
                values[rows] = torch.gather(scores[rows], 1, exact)
    items = where + start
    return _item_keys(values, items), items
