"""Sparse batches on a device: CSR rows of examples, never densified; row-sparse gradients.

``SparseRows`` holds a whole sparse dataset on one device (int64 offsets, int32/int64 feature
ids, optional float values); ``take`` gathers a batch of examples into a ``SparseBatch``
with torch ops only, so the same code serves CPU and GPU and the data can live in GPU memory.

Static shapes (CUDA graphs): ``take(examples, capacity=C)`` returns a batch of exactly C
nonzero slots with no host sync. The batch's real nonzeros come first, in example order, and
``offsets`` are the real ones (``offsets[-1]``, a device value, is the real count); the
``C − nnz`` padding slots that follow carry the sentinel feature id ``n_features`` (it sorts
after every real feature), value 0 and row ``batch_size`` (outside every example), and lie
outside every example's segment [offsets[b], offsets[b+1]). Consumers either walk the
examples' segments (gather-sum, output loss: padding is never read), skip the sentinel (the
weight gradient), or — the CPU references — call ``unpadded()`` (one host sync).

``RowSparseGrad`` is the gradient of a (rows, H) weight that only some rows have: the sparse
input layer's, stored on its weight parameter as ``param.row_grad`` (see
``ops.functional.sparse_linear``) and consumed by ``DsstneOptimizer``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class SparseBatch:
    """A batch of sparse examples in CSR form.

    offsets: (batch + 1,) int64, offsets[0] == 0. indices: (nnz,) int64 feature ids.
    values: (nnz,) float or None (every listed feature is 1). weights: (batch,) per-example data
    weights or None. n_features: the width of the layer the batch feeds. padded: the slots
    past offsets[-1] are padding (feature id n_features, value 0, row batch_size); ``nnz``
    is then the capacity, not the real count.
    """

    offsets: torch.Tensor
    indices: torch.Tensor
    values: torch.Tensor | None
    n_features: int
    weights: torch.Tensor | None = None
    ignore_zero: bool = False
    padded: bool = False

    @property
    def batch_size(self) -> int:
        return self.offsets.numel() - 1

    @property
    def nnz(self) -> int:
        """Nonzero slots (the capacity when padded)."""
        return self.indices.numel()

    @property
    def device(self) -> torch.device:
        return self.indices.device

    @property
    def lengths(self) -> torch.Tensor:
        return self.offsets[1:] - self.offsets[:-1]

    def rows(self) -> torch.Tensor:
        """(nnz,) int64: the example (row) of each nonzero; batch_size for padding slots."""
        if getattr(self, "_rows", None) is None:
            if self.padded:
                self._rows = _rows_of_slots(self.offsets, self.nnz)
            else:
                self._rows = torch.repeat_interleave(
                    torch.arange(self.batch_size, device=self.device), self.lengths, output_size=self.nnz)
        return self._rows

    def values_or_ones(self, dtype: torch.dtype) -> torch.Tensor:
        if self.values is None:
            return torch.ones(self.nnz, dtype=dtype, device=self.device)
        return self.values.to(dtype)

    def unpadded(self) -> "SparseBatch":
        """The batch without its padding slots (itself when not padded). int(offsets[-1]): host sync."""
        if not self.padded:
            return self
        n = int(self.offsets[-1])  # host sync: the real nonzero count
        out = SparseBatch(self.offsets, self.indices[:n], None if self.values is None else self.values[:n],
                          self.n_features, self.weights, self.ignore_zero)
        if getattr(self, "_rows", None) is not None:
            out._rows = self._rows[:n]
        return out

    def to_dense(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """(batch, n_features) dense copy; for tests and tiny layers only."""
        b = self.unpadded()
        out = torch.zeros(b.batch_size, b.n_features, dtype=dtype, device=b.device)
        out.index_put_((b.rows(), b.indices), b.values_or_ones(dtype), accumulate=True)
        return out

    def columns(self, lo: int, hi: int) -> "SparseBatch":
        """The batch restricted to features [lo, hi), renumbered from 0 (n_features hi − lo):
        one rank's shard of a model-parallel layer. Each example keeps its nonzeros in that
        range, in order. A padded batch stays padded with the same capacity and no host sync
        (a cumulative count and a search place the kept slots first); an unpadded one is
        compacted (a host sync)."""
        if lo == 0 and hi == self.n_features:
            return self
        width = hi - lo
        idx = self.indices
        inside = (idx >= lo) & (idx < hi)
        if not self.padded:
            kept = torch.zeros(self.nnz + 1, dtype=torch.int64, device=self.device)
            torch.cumsum(inside, 0, out=kept[1:])
            offsets = kept[self.offsets]
            values = None if self.values is None else self.values[inside]
            return SparseBatch(offsets, idx[inside] - lo, values, width, self.weights, self.ignore_zero)
        batch, capacity = self.batch_size, self.nnz
        rows = self.rows()
        inside &= rows < batch
        kept = torch.zeros(capacity + 1, dtype=torch.int64, device=self.device)
        torch.cumsum(inside, 0, out=kept[1:])  # kept[k]: kept slots before slot k
        offsets = kept[self.offsets]
        slots = torch.arange(capacity, dtype=torch.int64, device=self.device)
        source = torch.searchsorted(kept[1:], slots + 1).clamp_(max=max(capacity - 1, 0))  # (C,) slot of the j-th kept
        real = slots < kept[-1]
        indices = torch.where(real, idx[source] - lo, width)
        values = None if self.values is None else torch.where(real, self.values[source],
                                                              torch.zeros((), dtype=self.values.dtype,
                                                                          device=self.device))
        out = SparseBatch(offsets, indices, values, width, self.weights, self.ignore_zero, padded=True)
        out._rows = torch.where(real, rows[source], batch)
        return out

    def to(self, device: torch.device | str) -> "SparseBatch":
        move = lambda t: None if t is None else t.to(device, non_blocking=True)  # noqa: E731
        return SparseBatch(move(self.offsets), move(self.indices), move(self.values),
                           self.n_features, move(self.weights), self.ignore_zero, self.padded)


def _rows_of_slots(offsets: torch.Tensor, capacity: int) -> torch.Tensor:
    """(capacity,) int64: the example of each slot k (the b with offsets[b] ≤ k < offsets[b+1]),
    batch_size for slots at or past offsets[-1]. No host sync."""
    slots = torch.arange(capacity, device=offsets.device)
    return torch.searchsorted(offsets, slots, right=True) - 1  # (capacity,) in [0, batch]


@dataclass
class RowSparseGrad:
    """The gradient of a (n_rows, H) weight on a few rows: Σ over the rows not listed is zero.

    features: (cap,) int64 row numbers, sorted and unique in their first ``count`` entries
    (what follows is unspecified). rows: (cap, H) the gradient rows of those features.
    count: 0-d int64 tensor on the rows' device, the number of valid entries (a device value:
    reading it is a host sync). cap: how many entries the buffers hold (static under CUDA graphs).
    """

    features: torch.Tensor
    rows: torch.Tensor
    count: torch.Tensor

    @property
    def capacity(self) -> int:
        return self.features.numel()

    def valid(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(features (U,), rows (U, H)) of the valid entries; ``int(count)``: host sync."""
        n = int(self.count)
        return self.features[:n], self.rows[:n]

    def to_dense(self, n_rows: int) -> torch.Tensor:
        """(n_rows, H) dense gradient (zeros elsewhere); for tests and references (host sync)."""
        features, rows = self.valid()
        out = torch.zeros(n_rows, *self.rows.shape[1:], dtype=self.rows.dtype, device=self.rows.device)
        out[features] = rows
        return out

    @classmethod
    def from_coo(cls, grad: torch.Tensor) -> "RowSparseGrad":
        """From a sparse COO gradient over dim 0 (coalesced here: summed per row, sorted)."""
        grad = grad.coalesce()
        features = grad.indices()[0]
        count = torch.tensor(features.numel(), dtype=torch.int64, device=grad.device)
        return cls(features, grad.values(), count)


class SparseRows:
    """A sparse dataset held on one device, ready to gather batches from.

    Built from anything with ``offsets``, ``indices``, ``values`` (or None), ``weights``
    and ``n_features`` — a ``destiny.data.SparseDataset`` for instance. ``host_lengths``: the
    (examples,) int64 nonzero counts kept on the host, to plan batch capacities without syncs.
    """

    def __init__(self, dataset, device: torch.device | str = "cpu", value_dtype: torch.dtype = torch.float32):
        self.n_features = int(dataset.n_features)
        self.n_examples = int(len(dataset.offsets) - 1)
        self.ignore_zero = bool(getattr(dataset, "ignore_zero", False))
        host_offsets = np.asarray(dataset.offsets, dtype=np.int64)
        self.host_lengths = np.diff(host_offsets)
        self.offsets = torch.as_tensor(host_offsets, device=device)
        self.indices = torch.as_tensor(np.asarray(dataset.indices), device=device)
        values = getattr(dataset, "values", None)
        self.values = None if values is None else torch.as_tensor(np.asarray(values), device=device).to(value_dtype)
        weights = getattr(dataset, "weights", None)
        self.weights = None if weights is None else torch.as_tensor(np.asarray(weights, dtype=np.float32), device=device)

    @property
    def device(self) -> torch.device:
        return self.offsets.device

    def batch_nnz(self, examples) -> int:
        """The nonzero count of a batch of examples (host numbers, no device work)."""
        return int(self.host_lengths[np.asarray(examples, dtype=np.int64)].sum())

    def take(self, examples: torch.Tensor, capacity: int | None = None) -> SparseBatch:
        """Gather the examples (int64 tensor of example numbers) into a batch.

        capacity None: exactly the batch's nonzeros (``int(offsets[-1])``: one host sync).
        capacity C: a padded batch of C slots (see the module docstring), no host sync; C must
        be at least the batch's nonzero count (a smaller C silently drops the excess nonzeros).
        """
        examples = examples.to(self.device)
        starts = self.offsets[examples]
        lengths = self.offsets[examples + 1] - starts
        offsets = torch.zeros(examples.numel() + 1, dtype=torch.int64, device=self.device)
        torch.cumsum(lengths, 0, out=offsets[1:])
        weights = None if self.weights is None else self.weights[examples]
        if capacity is None:
            nnz = int(offsets[-1])  # host sync: the batch's size
            shift = torch.repeat_interleave(starts - offsets[:-1], lengths, output_size=nnz)
            positions = shift + torch.arange(nnz, device=self.device)
            indices = self.indices[positions].long()
            values = None if self.values is None else self.values[positions]
            return SparseBatch(offsets, indices, values, self.n_features, weights, self.ignore_zero)
        from destiny.ops.functional import use_kernels  # (functional imports this module)

        if use_kernels(self.device) and examples.numel() > 0:
            from destiny.ops.triton.take import take_padded

            indices, values, rows = take_padded(self, starts, offsets, capacity)
        else:
            indices, values, rows = _take_padded_ref(self, starts, offsets, capacity)
        batch = SparseBatch(offsets, indices, values, self.n_features, weights, self.ignore_zero, padded=True)
        batch._rows = rows
        return batch


def _take_padded_ref(data: SparseRows, starts: torch.Tensor, offsets: torch.Tensor, capacity: int):
    """The padded gather in torch ops (the spec of ``ops.triton.take``): (indices (C,) int64,
    values (C,) or None, rows (C,) int64), no host sync."""
    batch = offsets.numel() - 1
    rows = _rows_of_slots(offsets, capacity)  # (C,) in [0, batch]
    indices = torch.full((capacity,), data.n_features, dtype=torch.int64, device=data.device)
    values = None if data.values is None else torch.zeros(capacity, dtype=data.values.dtype, device=data.device)
    if batch == 0 or data.indices.numel() == 0:
        return indices, values, rows
    real = rows < batch
    row = rows.clamp(max=batch - 1)
    slots = torch.arange(capacity, device=data.device)
    positions = torch.where(real, starts[row] + (slots - offsets[row]), 0)  # (C,) into the dataset
    indices = torch.where(real, data.indices[positions].long(), indices)
    if values is not None:
        values = torch.where(real, data.values[positions], values)
    return indices, values, rows
