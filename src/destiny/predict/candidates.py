"""Exact top-K through a low-precision candidate pass and a certified float64 re-scoring.

Scoring every item in float32 is the cost of top-K (batch × inputs × width multiply-adds);
tensor cores do it several times faster in TF32, but TF32 scores are approximate. This module
keeps the answer exact: the fast pass only chooses candidates, a bound on its error proves
that no other item can reach the top K, and the candidates are scored exactly.

1. Candidates. s̃ = h @ W + b in low precision (TF32 on CUDA; on CPU an emulation that rounds
   h and W to bfloat16, whose larger error exercises the proof), column chunk by column chunk
   into one (batch, chunk) buffer as ``top_k`` does; filtered items (excluded, not included)
   set to −inf without a host sync; the running top-C approximate scores and items of each
   row kept (C = ``candidate_count``: max(4k, k + 54), at most the width).
2. Error bound. For each row, ε ≥ max_j |s̃_j − s'_j|, s' the exact score (below). With u the
   unit roundoff of the products' inputs (TF32 truncated or rounded to 10 fraction bits:
   2^-10; bfloat16 rounded: 2^-8), each product r(h_i)·r(W_ij) is off by at most
   (2u + u²)|h_i||W_ij| (the product itself is exact: 11 × 11 or 8 × 8 bits fit in float32);
   summing n products in float32 in any order and blocking, the accumulator possibly
   truncating (2^-23) and aligned to the largest term (2^-22 taken), adds at most
   (n − 1)·2^-22·Σ|products|; each of the S + 1 additions of a source's sum or bias, and the
   float32 rounding of s', at most 2^-22 of what they add. Σ_i |h_i||W_ij| ≤ ‖h‖₂·‖W_:j‖₂
   (Cauchy–Schwarz) ≤ ‖h‖₂·max_j ‖W_:j‖₂, the norms computed in float32 and enlarged by
   their own rounding (n·2^-22 relative, and 2^-126 a term for squares that underflow).
   Subnormal inputs a tensor core flushes to zero lose at most 2^-126·√n·(‖h‖ + max‖W_:j‖),
   and each flushed partial sum 2^-126. Together, over the sources s:
       ε = 2 · [ (2u + u² + 1.01·(n + 2S + 2)·2^-22·(1 + 3u)) · Σ_s ‖h_s‖·max_j‖W_s:j‖
                 + (2S + 2)·2^-22 · Σ_s max_j |b_sj|  +  2^-126·(Σ_s √n_s (‖h_s‖ + max‖W_s:j‖) + n + 2S + 2) ]
   with the factor 2 as a safety margin. A row whose norms are not finite or pass 2^100
   (where a low-precision cast could overflow) gets ε = ∞ and goes to step 5.
3. Exact scores. s'_j = float32(Σ_i h_i W_ij + b_j summed in float64): the float32 products
   are exact in float64, so the float64 sum is within ≈ n·2^-53 of the true one and its float32
   rounding is the correctly rounded score except within ~1e-16 of a rounding boundary; it
   does not depend on the batch, the chunk or which other items are rescored
   (``ops.triton.rescore``, a fixed summation order; ``reference.candidate_scores_ref`` on
   CPU). Only as many candidates as needed are rescored: first the k best approximate ones;
   their lowest exact score t₁ bounds the final k-th score from below, so only the candidates
   with s̃ ≥ t₁ − ε can still enter, and only those are rescored (no host sync: the counts
   stay on the device).
4. Certificate. Rank the rescored candidates by (s' descending, lower item first), t = the
   k-th. Every item not rescored has s̃ below t₁ − ε (skipped candidates) or at most the
   lowest kept approximate score a_C (untracked items), hence s' ≤ s̃ + ε < t — unless the
   skipped set is empty and t ≤ a_C + ε. So a row is certified when ε is finite and either
   fewer than C candidates were rescored, all its eligible items are tracked, or
   t > a_C + ε (compared in float64); its top-K among the candidates is then the exact top-K.
5. Fallback. Rows that are not certified (near-ties across more than C items, all-equal
   scores, NaN or huge weights) are scored over the whole width with a float64 GEMM of their
   rows (in column blocks of ``FALLBACK_ELEMENTS``), rounded to float32 and ranked by the
   same keys as ``top_k``: the same scores, so still exact, just slower. No row is ever
   answered in another arithmetic. One host sync a batch finds these rows.

Scores returned: the activation of s' (float64, then float32), as ``top_k`` does; items
int64, −1 / −inf where fewer than k items are eligible; NaN scores rank as −inf. Memory: the
(batch, chunk) buffer, (batch, C) lists, the norms, W transposed once a call (≤
``TRANSPOSE_ELEMENTS``: the candidate GEMM's operand and the re-scoring's columns are then
contiguous and aligned; wider layers read W in place) and the fallback's column blocks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from destiny.config import Activation
from destiny.nn.activations import activate
from destiny.ops import functional as F
from destiny.ops.sparse import SparseBatch
from destiny.predict.topk import TopK, _item_keys, _Running, _scores_from_keys, ranks_by_preactivation
from destiny.train.precision import Precision, matmul_precision

PRODUCT_ROUNDOFF = {"tf32": 2.0 ** -10, "bf16": 2.0 ** -8}  # relative error of a product's inputs
SUM_ROUNDOFF = 2.0 ** -22  # a float32 accumulation step, truncating and block-aligned
TINY = 2.0 ** -126  # the smallest normal float32: what a flushed subnormal can lose
SAFETY = 2.0
LARGEST = 2.0 ** 100  # norms past this get no bound (low-precision casts could overflow)
TRANSPOSE_ELEMENTS = 1 << 28  # W up to 1 GB (float32) is transposed once for contiguous re-scoring
FALLBACK_ELEMENTS = 1 << 24  # float64 elements of one block of the fallback's GEMM operands
ALIGN = 16  # the candidate GEMM's column counts: multiples of 16, for cuBLAS's Hopper kernels (ops/dense.py)


@dataclass
class _Source:
    """One dense source of the output layer: h (batch, n) float32, W (n, width), b (width,)."""

    h: torch.Tensor
    w: torch.Tensor
    b: torch.Tensor
    w_pad: torch.Tensor | None = None  # (n, width rounded up to ALIGN): w's storage, zero columns past it
    b_pad: torch.Tensor | None = None


def candidate_count(k: int, width: int) -> int:
    """Approximate candidates tracked per row: enough that near-ties at the k-th score rarely
    spill past them (each spill is a row scored over the whole width), few enough that the
    running top stays cheap."""
    return min(width, max(4 * k, k + 54))


def unsupported(network, layer_cfg, values) -> str | None:
    """Why the candidate method cannot rank output ``layer_cfg`` (None: it can)."""
    act = network.activation[layer_cfg.name]
    if network.world.parallel:
        return f"the network runs model parallel over {network.world.size} processes"
    if act.kind == Activation.SOFTMAX:
        return "SoftMax normalises over every item, which the candidates do not see"
    if not ranks_by_preactivation(act):
        return f"its activation {act.kind.json} is not strictly increasing"
    if layer_cfg.skips:
        return "it has skip connections"
    if network.dtype != torch.float32:
        return f"the network is {network.dtype}, not float32"
    for src in layer_cfg.sources:
        if network._spec_of[(src, layer_cfg.name)].convolutional:
            return f"its weights from '{src}' are convolutional"
        if not isinstance(values[src], torch.Tensor):
            return f"its source '{src}' is a sparse input"
    return None


@torch.no_grad()
def candidate_top_k(network, layer_cfg, values, k: int, *, exclude: SparseBatch | None = None,
                    include_only: torch.Tensor | None = None, chunk: int) -> TopK:
    """The exact top-k of output ``layer_cfg`` (one process, dense sources: ``unsupported``
    is None) from the forward ``values`` of a batch; see the module docstring. The result's
    ``fallback`` marks the rows scored over the whole width."""
    sources = []
    for src in layer_cfg.sources:
        spec = network._spec_of[(src, layer_cfg.name)]
        h = network.full_value(src, values).contiguous()
        sources.append(_source(h, network.weight(spec), network.bias(spec)))
    batch, width = sources[0].h.shape[0], sources[0].w.shape[1]
    device = sources[0].h.device
    precision = "tf32" if device.type == "cuda" else "bf16"
    act = network.activation[layer_cfg.name]
    running = _Running(batch, k, device)
    if batch == 0:
        return _result(running, act, torch.zeros(0, dtype=torch.bool, device=device))
    allowed = None if include_only is None else include_only.to(device)
    eps = error_bound(sources, precision)
    approx, cand = _approximate_top(sources, candidate_count(k, width), exclude, allowed, chunk, precision)
    running.keys, running.items, certified = _rescore(sources, approx, cand, k, eps, width)
    redo = torch.nonzero(~certified).flatten()  # host sync: the one of the batch
    if redo.numel():
        keys, items = _exact_rows(sources, redo, k, exclude, allowed)
        running.keys[redo], running.items[redo] = keys, items
    return _result(running, act, ~certified)


def _result(running: _Running, act, fallback: torch.Tensor) -> TopK:
    best = running.result(lambda z: activate(z.double(), act).float())
    best.fallback = fallback
    return best


def error_bound(sources: list[_Source], precision: str) -> torch.Tensor:
    """(batch,) float64 ε ≥ |approximate − exact| of every item of each row (module
    docstring, step 2); ∞ where no bound holds (non-finite or huge norms)."""
    u = PRODUCT_ROUNDOFF[precision]
    n = sum(s.h.shape[1] for s in sources)
    count = len(sources)
    relative = 2 * u + u * u + 1.01 * (n + 2 * count + 2) * SUM_ROUNDOFF * (1 + 3 * u)
    products = biases = 0.0
    tiny = torch.tensor((n + 2 * count + 2) * TINY, dtype=torch.float64, device=sources[0].h.device)
    huge = torch.zeros(sources[0].h.shape[0], dtype=torch.bool, device=sources[0].h.device)
    for s in sources:
        inputs = s.h.shape[1]
        h_norm = _norm_bound(torch.linalg.vector_norm(s.h, dim=1), inputs)  # (batch,)
        w_norm = _norm_bound(torch.linalg.vector_norm(s.w, dim=0).amax(), inputs)  # the widest column
        b_max = s.b.abs().amax().double()
        products = products + h_norm * w_norm
        biases = biases + b_max
        tiny = tiny + TINY * math.sqrt(inputs) * (h_norm + w_norm)
        huge |= (h_norm > LARGEST) | (w_norm > LARGEST) | (b_max > LARGEST)
    eps = SAFETY * (relative * products + (2 * count + 2) * SUM_ROUNDOFF * biases + tiny)
    huge |= ~torch.isfinite(eps) | (products + biases > LARGEST)
    return torch.where(huge, math.inf, eps)


def _norm_bound(norm: torch.Tensor, n: int) -> torch.Tensor:
    """An upper bound (float64) of the true 2-norm of n float32 values from torch's float32
    norm: its rounding (n·2^-22 relative) and squares below the normal range (2^-126 each)."""
    norm = norm.double()
    return torch.sqrt(norm * norm * (1 + (n + 2) * SUM_ROUNDOFF) + n * TINY) * (1 + SUM_ROUNDOFF)


def _approximate_top(sources: list[_Source], count: int, exclude: SparseBatch | None,
                     allowed: torch.Tensor | None, chunk: int, precision: str):
    """(values, items), each (batch, count) sorted by value descending: the ``count`` best
    low-precision pre-activations of each row, −inf for filtered items. No host sync."""
    batch, width = sources[0].h.shape[0], sources[0].w.shape[1]
    device = sources[0].h.device
    padded = all(s.w_pad is not None for s in sources)  # products of ALIGN-multiple column counts
    full = sources[0].w_pad.shape[1] if padded else width
    room = -(-chunk // ALIGN) * ALIGN if padded else chunk
    buffer = torch.empty(batch * room + 1, dtype=torch.float32, device=device)  # + 1: a sink for the mask
    values = torch.empty(batch, 0, dtype=torch.float32, device=device)
    items = torch.empty(batch, 0, dtype=torch.int64, device=device)
    emulate = precision == "bf16"
    hs = [s.h.bfloat16().float() if emulate else s.h for s in sources]  # (batch, n) each
    banned = (exclude.rows(), exclude.indices) if exclude is not None and exclude.nnz else None
    with matmul_precision(Precision.TF32 if precision == "tf32" else Precision.FP32):
        for start in range(0, width, chunk):
            stop = min(start + chunk, width)
            n = stop - start
            m = min(-(-n // ALIGN) * ALIGN, full - start) if padded else n  # columns computed: n, or a few more
            wide = buffer[:batch * m].view(batch, m)
            for i, (h, s) in enumerate(zip(hs, sources)):
                w = (s.w_pad if padded else s.w)[:, start:start + m]  # (inputs, m) strided view
                b = (s.b_pad if padded else s.b)[start:start + m]
                if emulate:
                    w = w.bfloat16().float()
                if i == 0:
                    torch.addmm(b, h, w, out=wide)
                else:
                    wide.addmm_(h, w).add_(b)
            out = wide[:, :n]  # the real items' scores
            if allowed is not None:
                out.masked_fill_(~allowed[start:stop].unsqueeze(0), -math.inf)
            if banned is not None:  # entries outside the chunk (and padding) write the sink
                rows, cols = banned
                inside = (cols >= start) & (cols < stop)
                buffer.index_fill_(0, torch.where(inside, rows * m + (cols - start), batch * m), -math.inf)
            top, where = torch.topk(out, min(count, n), dim=1, sorted=False)
            values = torch.cat([values, top], dim=1)
            items = torch.cat([items, where + start], dim=1)
            if values.shape[1] > count:
                values, pick = torch.topk(values, count, dim=1, sorted=False)
                items = torch.gather(items, 1, pick)
    values, order = torch.sort(values, dim=1, descending=True, stable=True)
    return values, torch.gather(items, 1, order)


def _source(h: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> _Source:
    """The source with W (n, width) given contiguous columns (stride (1, n)) when that costs ≤
    TRANSPOSE_ELEMENTS of memory, else W as it is. Made once a call: the re-scoring then reads
    each column as one run, and a chunk of columns is a column-major operand whose leading
    dimension n keeps the 16-byte alignment cuBLAS's tensor-core kernels want (a row-major W's
    width, 27,278, does not). The copy's storage has zero columns up to a multiple of ALIGN, so
    that every chunk's product, the last one too, has a column count cuBLAS runs on its fast
    kernels (27,278 − 3 × 8,192 = 2,702 columns took as long as 8,192 on an H200)."""
    if w.numel() > TRANSPOSE_ELEMENTS:
        return _Source(h, w, b)
    n, width = w.shape
    padded = -(-width // ALIGN) * ALIGN
    storage = w.new_zeros((padded, n))
    storage[:width].copy_(w.t())
    b_pad = b.new_zeros(padded)
    b_pad[:width].copy_(b)
    return _Source(h, storage[:width].t(), b, storage.t(), b_pad)


def _rescore(sources: list[_Source], approx: torch.Tensor, cand: torch.Tensor, k: int, eps: torch.Tensor,
             width: int):
    """(keys, items, certified): the top-k of the exactly rescored candidates of each row on
    ``top_k``'s keys, and whether that is provably the top-k of the whole row (module
    docstring, steps 3–4). No host sync."""
    batch, count = cand.shape
    device = cand.device
    first = min(k, count)
    eligible = approx > -math.inf  # (batch, count); NaN (rows with ε = ∞ only) counts as not
    bounded = torch.isfinite(eps)
    exact64 = torch.zeros(batch, count, dtype=torch.float64, device=device)
    head = torch.full((batch,), first, dtype=torch.int64, device=device)
    for s in sources:
        F.candidate_scores_(exact64, s.h, s.w, s.b, cand, 0, head)
    head_scores = torch.where(eligible[:, :first], exact64[:, :first].float(), -math.inf)
    floor = head_scores.amin(dim=1).double() - eps  # below it no candidate can reach the top k
    needed = ((approx.double() >= floor[:, None]) & eligible).sum(dim=1)  # a prefix: approx is sorted
    needed = torch.where(bounded, torch.maximum(needed, head), head)
    for s in sources:
        F.candidate_scores_(exact64, s.h, s.w, s.b, cand, first, needed)
    scored = torch.arange(count, device=device)[None, :] < needed[:, None]
    exact = torch.where(scored & eligible, exact64.float(), -math.inf)
    keys, where = torch.topk(_item_keys(exact, cand), first, dim=1, sorted=True)
    items = torch.gather(cand, 1, where)
    kth = _scores_from_keys(keys[:, -1]).double()
    lowest = approx[:, -1].double() if count < width else torch.full_like(kth, -math.inf)
    certified = bounded & ((needed < count) | (lowest == -math.inf) | (kth > lowest + eps))
    return keys, items, certified


def _exact_rows(sources: list[_Source], rows: torch.Tensor, k: int, exclude: SparseBatch | None,
                allowed: torch.Tensor | None):
    """(keys, items) of the exact top-k of the given rows over the whole width: float64 GEMMs
    of their h, rounded to float32, ranked as ``top_k`` ranks."""
    width = sources[0].w.shape[1]
    device = rows.device
    hs = [s.h[rows].double() for s in sources]  # (rows, n) each
    running = _Running(len(rows), k, device)
    banned = _rows_of(exclude, rows)
    widest = max(max(h.shape) for h in hs)
    step = max(1, min(width, FALLBACK_ELEMENTS // widest))
    for start in range(0, width, step):
        stop = min(start + step, width)
        z = None
        for h, s in zip(hs, sources):
            term = torch.addmm(s.b[start:stop].double(), h, s.w[:, start:stop].double())
            z = term if z is None else z.add_(term)
        running.add(z.float(), start, banned, allowed)
    return running.keys, running.items


def _rows_of(exclude: SparseBatch | None, rows: torch.Tensor) -> SparseBatch | None:
    """The rows ``rows`` (sorted) of a batch of items to exclude, as their own batch."""
    if exclude is None or not exclude.nnz:
        return None
    slot = torch.full((exclude.batch_size + 1,), -1, dtype=torch.int64, device=rows.device)
    slot[rows] = torch.arange(len(rows), device=rows.device)
    mapped = slot[exclude.rows()]  # −1: another row, or padding
    keep = mapped >= 0
    mapped, indices = mapped[keep], exclude.indices[keep]
    offsets = torch.zeros(len(rows) + 1, dtype=torch.int64, device=rows.device)
    offsets[1:] = torch.cumsum(torch.bincount(mapped, minlength=len(rows)), dim=0)
    return SparseBatch(offsets, indices, None, exclude.n_features)
