"""Ranking metrics on held-out items while training: the validator behind early stopping.

    validator = RankingValidator({"input": train_rows}, held_out, metrics=["ndcg@100", "p@10"])
    trainer = Trainer(network, "adam", validator=validator, patience=5)   # destiny.train.trainer
    validator.validate(network)          # {"ndcg@100": 0.41, "precision@10": 0.33}

Every ``every`` epochs the validator feeds the validation users' *input* rows (their training
interactions) through the network without dropout or denoising (``forward(..., noise=None)``),
ranks the output layer's items with the users' input items removed (``seen``), and scores the
top K against their held-out items. Its numbers are those of
``destiny.predict.metrics.ranking_metrics`` on ``recommend_batch(..., method="exact")``: the
same definitions (NDCG with binary gains and the ideal DCG of min(K, |held-out|) items, Recall
with the |held-out| and min(K, |held-out|) denominators, P@K = hits / K, MAP, HitRate), the
same ranking (items by pre-activation for increasing activations, ReLU by its activation; equal
scores go to the lower item index; NaN ranks last), users without held-out items left out of
the means. Sums differ from numpy's in the order of float64 additions (~1e-16 relative).

Cost, one process (the fast path): per batch of B users one forward pass to the output
layer's sources, then the output's pre-activations in chunks of columns (B × chunk floats in
one reused buffer), seen items set to −inf by one ``index_fill_`` (no boolean indexing), a
float ``topk`` of K + 1 per chunk, a merge on int64 keys (score, then the lower index) of
(B, 2K), and a sorted-membership test (``searchsorted``) of the (B, K) picks against the
held-out (user, item) keys. On the GPU the input batches are padded to a static capacity, so
the only host syncs are one read of the sums per validation — plus, only where a row's K-th
and (K+1)-th best values tie inside a chunk (so ``topk``'s pick among equal values could be
arbitrary), one more read and an exact redo of those rows with ``destiny.predict.topk.top_k``.
A validation costs about a third of an epoch of training on the same users (a forward pass
instead of forward, backward and update) plus the top-K passes; users without held-out items
are not scored at all. Every op has a deterministic kernel under the Trainer's
``torch.use_deterministic_algorithms`` (hits are an integer scan: CUDA has no deterministic
floating-point cumsum), so the same network gives the same numbers to the bit. Memory: the
inputs' rows on the device (a second copy beside the training binding's), the held-out
(user, item) keys (8 bytes each), one B × chunk float32 buffer and (B, 2K) int64 keys.

Model parallel (N processes, the output's items split): each batch is ranked by ``top_k``,
whose per-process top-K lists are all-gathered and merged on the same keys, so every process
computes the one-process numbers (with a host sync per chunk); the early-stopping decisions
of the processes agree.
"""

from __future__ import annotations

import math
import time
import warnings
from typing import Mapping, Sequence

import numpy as np
import torch

from destiny.errors import DataError, DataWarning, UsageError

# name → what it measures (K is the cut-off); the definitions of destiny.predict.metrics
METRICS = {
    "ndcg": "NDCG@K: binary gains, log2 discount, ideal DCG of min(K, |held-out|) hits",
    "recall": "Recall@K = hits / |held-out| (textbook; LightGCN's)",
    "recall_min": "Recall@K = hits / min(K, |held-out|) (Liang et al. 2018)",
    "precision": "P@K = hits / K",
    "map": "MAP@K = Σ rel_i · P@i / min(K, |held-out|)",
    "hit_rate": "HitRate@K: share of users with at least one hit",
}
_ALIASES = {"p": "precision", "prec": "precision", "hr": "hit_rate", "hitrate": "hit_rate", "hit": "hit_rate",
            "recall_liang": "recall_min", "ap": "map"}
DEFAULT_METRICS = ("ndcg@100", "recall@100", "recall_min@100", "precision@10")
LOSS_MONITOR = "validation_error"  # early stopping on the validation loss (lower is better)
_LOSS_ALIASES = {"validation_error", "validation_loss", "loss", "val_loss"}


def parse_metric(text: str) -> tuple[str, int]:
    """("ndcg", 100) from "ndcg@100" (case-insensitive; "p@10" is precision@10); UsageError
    naming the known metrics when it is not one."""
    s = str(text).strip().lower()
    name, at, k = s.partition("@")
    name = _ALIASES.get(name, name)
    if name not in METRICS or not at:
        raise UsageError(f"unknown ranking metric {text!r}; write NAME@K with NAME one of "
                         f"{', '.join(METRICS)} (or p for precision), such as ndcg@100 or p@10")
    try:
        cut = int(k)
    except ValueError:
        cut = 0
    if cut < 1 or str(cut) != k.strip().lstrip("+"):
        raise UsageError(f"the K of ranking metric {text!r} must be a positive integer, such as {name}@100")
    return name, cut


def metric_name(text: str) -> str:
    """The canonical name of a metric: "NDCG@100" → "ndcg@100", "p@10" → "precision@10";
    the validation loss's aliases → "validation_error"."""
    if str(text).strip().lower() in _LOSS_ALIASES:
        return LOSS_MONITOR
    name, k = parse_metric(text)
    return f"{name}@{k}"


def _host_csr(x, what: str) -> tuple[np.ndarray, np.ndarray, int]:
    """(offsets, indices, width) of a SparseDataset, scipy matrix, streaming dataset or
    anything with offsets/indices/n_features."""
    if type(x).__module__.startswith("scipy.sparse"):
        m = x.tocsr()
        return np.asarray(m.indptr, np.int64), np.asarray(m.indices, np.int64), int(m.shape[1])
    if hasattr(x, "read_rows"):  # a StreamingSparseDataset: read whole (held-out items are a small share)
        n = int(x.n_examples)
        x = x.read_rows(np.arange(n, dtype=np.int64))
    if not hasattr(x, "offsets") or not hasattr(x, "indices"):
        raise UsageError(f"{what} must be sparse rows (a SparseDataset, a scipy sparse matrix, or CSR offsets and "
                         f"indices); got {type(x).__name__}")
    width = int(x.n_features) if hasattr(x, "n_features") else int(np.prod(x.dims))
    return np.asarray(x.offsets, np.int64), np.asarray(x.indices, np.int64), width


def _check_held_out_unseen(inputs, held_offsets: np.ndarray, held_indices: np.ndarray) -> None:
    """UsageError when every held-out item is also among its user's input items (removed from
    the ranking as seen, so every metric would be 0: the training rows given as validation), a
    DataWarning when more than half are. Checked for one sparse input dataset in memory."""
    rows = list(inputs.values()) if isinstance(inputs, dict) else [inputs]
    if len(rows) != 1 or hasattr(rows[0], "read_rows") or not (hasattr(rows[0], "offsets") or
                                                                 type(rows[0]).__module__.startswith("scipy.sparse")):
        return
    offsets, indices, width = _host_csr(rows[0], "the validation inputs")
    n = len(held_offsets) - 1
    total = len(held_indices)
    if len(offsets) - 1 != n or total == 0:
        return
    span = max(width, int(held_indices.max()) + 1, int(indices.max(initial=-1)) + 1)
    seen = np.repeat(np.arange(n, dtype=np.int64), np.diff(offsets)) * span + indices
    held = np.repeat(np.arange(n, dtype=np.int64), np.diff(held_offsets)) * span + held_indices
    both = int(np.isin(held, seen).sum())
    if both == total:
        raise UsageError(f"every one of the {total:,} held-out items is also in its user's input rows, so each is "
                         "removed from the ranking as already seen and every metric would be 0: give validation "
                         "items held out of the training rows (not the training data itself)")
    if 2 * both > total:
        warnings.warn(f"{both:,} of the {total:,} held-out items are also in their users' input rows; they are "
                      "removed from the ranking as seen, so the metrics undercount: hold validation items out of the "
                      "training rows", DataWarning, stacklevel=3)


class RankingValidator:
    """Scores ranking metrics of a network's recommendations against held-out items.

    inputs: the validation users' input rows by DataSet name (what ``Trainer.fit`` takes; one
    dataset alone feeds the network's only Input layer). held_out: their held-out items, one
    row per user in the same order (SparseDataset, scipy CSR, streaming dataset), in the output
    layer's columns. metrics: "NAME@K" names (``METRICS``; default ndcg@100, recall@100,
    recall_min@100, precision@10). every: validate after every that many epochs. seen: True
    removes each user's input items from the ranking (an autoencoder's input columns are its
    output items), False ranks every item, or give the items to remove as sparse rows.
    layer: the Output layer ranked (default the first). batch_size: users a batch (default
    4,096 on a GPU, 1,024 elsewhere); chunk_elements: batch × output columns scored at once
    (default 64M on a GPU, 16M elsewhere: 256 / 64 MB of float32). static_shapes: input batches
    padded to one capacity, no host sync per batch (None: where the fused kernels run, i.e.
    CUDA; streaming inputs and model parallelism take exact batches).
    """

    def __init__(self, inputs, held_out, *, metrics: Sequence[str] | None = None, every: int = 1, seen=True,
                 layer: str | None = None, batch_size: int | None = None, chunk_elements: int | None = None,
                 static_shapes: bool | None = None):
        if int(every) < 1:
            raise UsageError(f"validate every {every} epochs: give a positive number of epochs")
        names = list(DEFAULT_METRICS if metrics is None else metrics)
        if isinstance(metrics, str):
            names = [metrics]
        self.metrics: list[str] = []
        self._parsed: list[tuple[str, int]] = []
        for text in names:
            name, k = parse_metric(text)
            if f"{name}@{k}" not in self.metrics:
                self.metrics.append(f"{name}@{k}")
                self._parsed.append((name, k))
        if not self.metrics:
            raise UsageError("a RankingValidator needs at least one metric, such as ndcg@100")
        if batch_size is not None and batch_size < 1:
            raise UsageError(f"the validation batch size must be a positive integer, not {batch_size}")
        self.k = max(k for _, k in self._parsed)
        self.every = int(every)
        self.inputs = inputs
        self.layer = layer
        self.batch_size = batch_size
        self.chunk_elements = chunk_elements
        self.static_shapes = static_shapes
        offsets, indices, self.width = _host_csr(held_out, "the held-out items")
        from destiny.predict.metrics import unique_rows

        self.held_offsets, self.held_indices = unique_rows(offsets, indices)  # each item once a user
        counts = np.diff(self.held_offsets)
        self.n_users = len(counts)
        self.users = np.flatnonzero(counts > 0).astype(np.int64)  # the users scored; the others skipped
        self.users_skipped = self.n_users - len(self.users)
        self.seen = seen
        if seen is True:
            _check_held_out_unseen(inputs, self.held_offsets, self.held_indices)
        self.seconds = 0.0  # the last validation's wall time
        self.standard_errors: dict[str, float] = {}  # of the last validation's means, by metric (over users)
        self.redone = 0  # users of the last validation ranked again exactly (ties at a chunk's cut)
        self._bound: _Bound | None = None

    def due(self, epoch: int) -> bool:
        """Whether epoch ``epoch`` (1-based) ends with a validation."""
        return epoch % self.every == 0

    @torch.no_grad()
    def validate(self, network, *, precision=None) -> dict[str, float]:
        """The metrics of ``network`` now, by name (means over the users with held-out items;
        NaN when there are none). precision: the matrix products' (``train.precision``; tf32
        allows TF32, anything else runs float32 products); the network is not changed."""
        from destiny.train.precision import Precision, matmul_precision

        started = time.perf_counter()
        bound = self._bind(network)
        mode = Precision.TF32 if precision is not None and Precision.parse(precision) == Precision.TF32 \
            else Precision.FP32
        with matmul_precision(mode):
            sums, squares = bound.run()
        n = len(self.users)
        out = {name: (float(s) / n if n else math.nan) for name, s in zip(self.metrics, sums)}
        self.standard_errors = {name: _standard_error(float(s), float(q), n)
                                for name, s, q in zip(self.metrics, sums, squares)}
        self.seconds = time.perf_counter() - started
        return out

    def _bind(self, network) -> "_Bound":
        key = (id(network), network.device)
        if self._bound is None or self._bound.key != key:
            self._bound = _Bound(self, network, key)
        return self._bound


def _standard_error(total: float, squares: float, n: int) -> float:
    """The standard error of a mean over n users from the sum and the sum of squares of their
    values (NaN for fewer than two users)."""
    if n < 2:
        return math.nan
    variance = max(squares - total * total / n, 0.0) / (n - 1)
    return math.sqrt(variance / n)


class _Bound:
    """A validator's data on one network's device: input rows, seen rows, held-out keys."""

    def __init__(self, v: RankingValidator, network, key):
        from destiny.predict.api import as_datasets
        from destiny.predict.topk import output_layer
        from destiny.train.binding import Binding

        self.v, self.network, self.key = v, network, key
        device = self.device = network.device
        self.layer = output_layer(network, v.layer)
        width = network.units[self.layer.name]
        if v.width > width:
            raise DataError(f"the held-out items are {v.width:,} columns wide but output layer '{self.layer.name}' "
                            f"has {width:,} units; give held-out items in the output layer's columns")
        self.width = width
        datasets = v.inputs if isinstance(v.inputs, Mapping) else as_datasets(network, v.inputs)
        self.binding = Binding(network, datasets, device=device, with_targets=False, what="validation inputs")
        if self.binding.n_examples != v.n_users:
            raise DataError(f"validation: the inputs have {self.binding.n_examples:,} users (rows) but the held-out "
                            f"items {v.n_users:,}; give one held-out row per input row, in the same order")
        self.seen_layer, self.seen = self._seen(network, datasets, v.seen)
        self.streaming = bool(self.binding.streaming())
        self.parallel = network.world.parallel
        # static shapes (padded input batches, no host sync) where the fused kernels run
        from destiny.ops.functional import use_kernels

        static = use_kernels(device) if v.static_shapes is None else bool(v.static_shapes)
        self.capacity_path = static and not self.streaming and not self.parallel
        cuda = device.type == "cuda"
        self.batch = v.batch_size or (4096 if cuda else 1024)
        self.elements = v.chunk_elements or ((1 << 26) if cuda else (1 << 24))
        self.batches = [v.users[i:i + self.batch] for i in range(0, len(v.users), self.batch)]
        self.capacity = None
        if self.capacity_path and len(v.users):
            from destiny.train.step import round_capacity

            order = v.users
            self.capacity = {name: round_capacity(nnz)
                             for name, nnz in self.binding.max_batch_nnz(order, self.batch).items()}
        # held-out (user, item) keys, sorted: user · (width + 1) + item, int64 on the device
        rows = np.repeat(np.arange(v.n_users, dtype=np.int64), np.diff(v.held_offsets))
        keys = np.sort(rows * (width + 1) + v.held_indices)
        self.held_keys = torch.as_tensor(keys, device=device)
        self.held_count = torch.as_tensor(np.diff(v.held_offsets).astype(np.float64), device=device)
        discount = 1.0 / np.log2(np.arange(2, v.k + 2))  # numpy's, as ranking_metrics computes it
        self.discount = torch.as_tensor(discount, device=device)
        self.ideal = torch.as_tensor(np.cumsum(discount), device=device)
        self.ranks = torch.arange(1, v.k + 1, dtype=torch.float64, device=device)

    def _seen(self, network, datasets, seen):
        """(input layer name or None, SparseRows/StreamingRows or None) of the items to remove."""
        from destiny.ops.sparse import SparseRows

        if seen is False or seen is None:
            return None, None
        if seen is True:
            layers = network.input_layers()
            if len(layers) != 1 or layers[0].name not in self.binding.sparse() \
                    or network.units[layers[0].name] != self.width:
                raise UsageError("validation with seen=True removes the users' input items from the ranking, which "
                                 "needs one sparse Input layer as wide as the output layer (an autoencoder); pass "
                                 "seen=False, or the items to remove as sparse rows")
            return layers[0].name, self.binding.inputs[layers[0].name]
        rows = self.binding.rows_of(seen)
        if rows is None:
            offsets, indices, width = _host_csr(seen, "seen")
            from types import SimpleNamespace

            rows = SparseRows(SimpleNamespace(offsets=offsets, indices=indices, values=None, weights=None,
                                              n_features=self.width), self.device)
        if rows.n_examples != self.v.n_users:
            raise DataError(f"validation: the items to remove cover {rows.n_examples:,} users but the held-out "
                            f"items {self.v.n_users:,}")
        return None, rows

    # -- one validation -----------------------------------------------------------------------

    def run(self) -> tuple[np.ndarray, np.ndarray]:
        """(sums, sums of squares) over the scored users of each metric (float64, host): one
        host sync, plus one for an exact redo where ties at a chunk's cut made ``topk``'s pick
        ambiguous."""
        v = self.v
        total = torch.zeros(2, len(v.metrics), dtype=torch.float64, device=self.device)
        tied_parts = []
        if self.streaming:
            self.binding.plan(v.users, self.batch)
        for users in self.batches:
            examples, inputs, seen = self._batch(users)
            if self.parallel:
                items, tied = self._top_k(inputs, seen), None
            else:
                items, tied = self._fast_top(inputs, seen)
            parts = self._contributions(examples, items)  # (B, M) float64
            if tied is not None:
                parts = parts.masked_fill(tied[:, None], 0.0)
                tied_parts.append(tied)
            total[0] += parts.sum(0)
            total[1] += parts.square().sum(0)
        v.redone = 0
        if not tied_parts:
            total = total.cpu().numpy()
            return total[0], total[1]
        tied = torch.cat(tied_parts)
        packed = torch.cat([total.view(-1), tied.sum().to(torch.float64).view(1)]).cpu().numpy()  # the host sync
        sums, squares, n_tied = packed[:len(v.metrics)], packed[len(v.metrics):-1], int(packed[-1])
        v.redone = n_tied
        if n_tied:  # the rows whose ranking topk could not settle: ranked exactly, on int64 keys
            users = v.users[tied.cpu().numpy()]
            for first in range(0, len(users), self.batch):
                examples, inputs, seen = self._batch(users[first:first + self.batch], exact=True)
                parts = self._contributions(examples, self._top_k(inputs, seen))
                sums = sums + parts.sum(0).cpu().numpy()
                squares = squares + parts.square().sum(0).cpu().numpy()
        return sums, squares

    def _batch(self, users: np.ndarray, exact: bool = False):
        """(examples (B,) device int64, inputs by layer, seen SparseBatch or None)."""
        if self.streaming:
            self.binding.stage(users)
        examples = torch.as_tensor(users, device=self.device)
        capacity = None if exact or self.capacity is None else self.capacity
        inputs, _ = self.binding.batch(examples, capacity)
        if self.seen is None:
            return examples, inputs, None
        if self.seen_layer is not None:  # the input rows themselves (no denoising in validation)
            return examples, inputs, inputs[self.seen_layer]
        if hasattr(self.seen, "stage"):
            self.seen.stage(users, None)
        return examples, inputs, self.seen.take(examples)

    def _top_k(self, inputs, seen) -> torch.Tensor:
        """(B, K) items by ``destiny.predict.topk.top_k`` (exact method; model parallel: merged
        over the processes), −1 in empty slots."""
        from destiny.predict.topk import top_k

        if seen is not None and seen.padded:
            seen = seen.unpadded()
        return top_k(self.network, inputs, self.v.k, layer=self.layer.name, exclude=seen, method="exact").items

    def _fast_top(self, inputs, seen) -> tuple[torch.Tensor, torch.Tensor]:
        """(items (B, K) int64 with −1 in empty slots, tied (B,) bool): the top K of the output
        layer ranked as ``top_k`` ranks it, with no host sync; ``tied`` marks the rows where a
        chunk's K-th and (K+1)-th values were equal (their pick is redone exactly)."""
        from destiny.config import Activation
        from destiny.predict.topk import (_activate_, _chunk_preactivation, _item_keys, _merge, _scores_from_keys,
                                          ranks_by_preactivation)

        net, layer, k = self.network, self.layer, self.v.k
        values = net.forward(inputs, None, stop_at=set(layer.sources) | set(layer.skips))
        batch = next(iter(inputs.values()))
        batch = batch.batch_size if hasattr(batch, "batch_size") else batch.shape[0]
        act = net.activation[layer.name]
        by_preactivation = act.kind == Activation.SOFTMAX or ranks_by_preactivation(act)
        chunk = max(1, min(self.width, self.elements // max(batch, 1)))
        # the (B, chunk) scores with a spare last slot (where the mask sends padding): float32
        # networks score in place; others are scored in ``buffer`` and copied to float32, as top_k does
        flat = torch.empty(batch * chunk + 1, dtype=torch.float32, device=self.device)
        buffer = flat if net.dtype == torch.float32 else torch.empty(batch * chunk, dtype=net.dtype, device=self.device)
        keys = torch.empty(batch, 0, dtype=torch.int64, device=self.device)
        items = torch.empty(batch, 0, dtype=torch.int64, device=self.device)
        tied = torch.zeros(batch, dtype=torch.bool, device=self.device)
        if seen is not None:
            seen_rows, seen_cols = seen.rows(), seen.indices
        for start in range(0, self.width, chunk):
            stop = min(start + chunk, self.width)
            n = stop - start
            z = _chunk_preactivation(net, layer, values, start, stop, buffer, batch)  # (B, n), in buffer
            scores = flat[:batch * n].view(batch, n)
            if buffer is not flat:
                scores.copy_(z)
            if not by_preactivation:
                _activate_(scores, act)
            torch.nan_to_num_(scores, nan=-math.inf, posinf=math.inf, neginf=-math.inf)
            if seen is not None:  # −inf at (row, column) of each seen item of the chunk; the rest to the spare slot
                inside = (seen_rows < batch) & (seen_cols >= start) & (seen_cols < stop)
                flat.index_fill_(0, torch.where(inside, seen_rows * n + (seen_cols - start), batch * n), -math.inf)
            kk = min(k, n)
            if kk == n:
                top = scores
                where = torch.arange(n, device=self.device).expand(batch, n)
            else:
                top, where = torch.topk(scores, kk + 1, dim=1, sorted=True)
                kth, beyond = top[:, kk - 1], top[:, kk]
                tied |= (kth == beyond) & (kth > -math.inf)
                top, where = top[:, :kk], where[:, :kk]
            where = where + start
            keys, items = _merge(keys, items, _item_keys(top, where), where, k)
        invalid = torch.isneginf(_scores_from_keys(keys))
        items = torch.where(invalid, torch.full_like(items, -1), items)
        if items.shape[1] < k:
            items = torch.cat([items, items.new_full((batch, k - items.shape[1]), -1)], dim=1)
        return items, tied

    def _contributions(self, examples: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """(B, M) float64: each user's value of each metric (``ranking_metrics``' definitions)."""
        v = self.v
        rec = examples[:, None] * (self.width + 1) + items  # (B, K) keys
        if self.held_keys.numel():
            pos = torch.searchsorted(self.held_keys, rec).clamp_(max=self.held_keys.numel() - 1)
            rel = (self.held_keys[pos] == rec) & (items >= 0)
        else:
            rel = torch.zeros_like(items, dtype=torch.bool)
        hits = torch.cumsum(rel.to(torch.int64), 1).to(torch.float64)  # (B, K) hits in the first i; integer
        rel = rel.to(torch.float64)  # scan: a floating-point cumsum has no deterministic CUDA kernel
        n_rel = self.held_count[examples]  # (B,) ≥ 1: only users with held-out items are scored
        gain = rel * self.discount  # (B, K) discounted gains
        precision_at = None
        columns = []
        for name, k in v._parsed:
            h = hits[:, k - 1]
            cap = torch.clamp(n_rel, max=k)
            if name == "ndcg":
                columns.append(gain[:, :k].sum(1) / self.ideal[cap.long() - 1])
            elif name == "recall":
                columns.append(h / n_rel)
            elif name == "recall_min":
                columns.append(h / cap)
            elif name == "precision":
                columns.append(h / k)
            elif name == "hit_rate":
                columns.append((h > 0).to(torch.float64))
            else:  # map
                if precision_at is None:
                    precision_at = hits / self.ranks * rel  # (B, K) P@i at the hits, 0 elsewhere
                columns.append(precision_at[:, :k].sum(1) / cap)
        return torch.stack(columns, 1)


__all__ = ["DEFAULT_METRICS", "LOSS_MONITOR", "METRICS", "RankingValidator", "metric_name", "parse_metric"]
