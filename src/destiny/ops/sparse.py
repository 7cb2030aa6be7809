"""Sparse batches on a device: CSR rows of examples, never densified.

``SparseRows`` holds a whole sparse dataset on one device (int64 offsets, int32/int64 feature
ids, optional float values); ``take`` gathers a batch of examples into a ``SparseBatch``
with torch ops only (one host sync for the batch's nonzero count), so the same code serves
CPU and GPU and the data can live in GPU memory.
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
    weights or None. n_features: the width of the layer the batch feeds.
    """

    offsets: torch.Tensor
    indices: torch.Tensor
    values: torch.Tensor | None
    n_features: int
    weights: torch.Tensor | None = None
    ignore_zero: bool = False

    @property
    def batch_size(self) -> int:
        return self.offsets.numel() - 1

    @property
    def nnz(self) -> int:
        return self.indices.numel()

    @property
    def device(self) -> torch.device:
        return self.indices.device

    @property
    def lengths(self) -> torch.Tensor:
        return self.offsets[1:] - self.offsets[:-1]

    def rows(self) -> torch.Tensor:
        """(nnz,) int64: the example (row) of each nonzero."""
        if getattr(self, "_rows", None) is None:
            self._rows = torch.repeat_interleave(
                torch.arange(self.batch_size, device=self.device), self.lengths, output_size=self.nnz)
        return self._rows

    def values_or_ones(self, dtype: torch.dtype) -> torch.Tensor:
        if self.values is None:
            return torch.ones(self.nnz, dtype=dtype, device=self.device)
        return self.values.to(dtype)

    def to_dense(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """(batch, n_features) dense copy; for tests and tiny layers only."""
        out = torch.zeros(self.batch_size, self.n_features, dtype=dtype, device=self.device)
        out.index_put_((self.rows(), self.indices), self.values_or_ones(dtype), accumulate=True)
        return out

    def to(self, device: torch.device | str) -> "SparseBatch":
        move = lambda t: None if t is None else t.to(device, non_blocking=True)  # noqa: E731
        return SparseBatch(move(self.offsets), move(self.indices), move(self.values),
                           self.n_features, move(self.weights), self.ignore_zero)


class SparseRows:
    """A sparse dataset held on one device, ready to gather batches from.

    Built from anything with ``offsets``, ``indices``, ``values`` (or None), ``weights``
    and ``n_features`` — a ``destiny.data.SparseDataset`` for instance.
    """

    def __init__(self, dataset, device: torch.device | str = "cpu", value_dtype: torch.dtype = torch.float32):
        self.n_features = int(dataset.n_features)
        self.n_examples = int(len(dataset.offsets) - 1)
        self.ignore_zero = bool(getattr(dataset, "ignore_zero", False))
        self.offsets = torch.as_tensor(np.asarray(dataset.offsets, dtype=np.int64), device=device)
        self.indices = torch.as_tensor(np.asarray(dataset.indices), device=device)
        values = getattr(dataset, "values", None)
        self.values = None if values is None else torch.as_tensor(np.asarray(values), device=device).to(value_dtype)
        weights = getattr(dataset, "weights", None)
        self.weights = None if weights is None else torch.as_tensor(np.asarray(weights, dtype=np.float32), device=device)

    @property
    def device(self) -> torch.device:
        return self.offsets.device

    def take(self, examples: torch.Tensor) -> SparseBatch:
        """Gather the examples (int64 tensor of example numbers) into a batch."""
        examples = examples.to(self.device)
        starts = self.offsets[examples]
        lengths = self.offsets[examples + 1] - starts
        offsets = torch.zeros(examples.numel() + 1, dtype=torch.int64, device=self.device)
        torch.cumsum(lengths, 0, out=offsets[1:])
        nnz = int(offsets[-1])  # host sync: the batch's size
        shift = torch.repeat_interleave(starts - offsets[:-1], lengths, output_size=nnz)
        positions = shift + torch.arange(nnz, device=self.device)
        indices = self.indices[positions].long()
        values = None if self.values is None else self.values[positions]
        weights = None if self.weights is None else self.weights[examples]
        return SparseBatch(offsets, indices, values, self.n_features, weights, self.ignore_zero)
