"""Datasets bound to a network's Input and Output layers (matched by DataSet name, as DSSTNE
does) and held on the training device, ready to gather batches of examples.

A dataset that feeds several layers (an autoencoder's input and targets) is held once and
gathered once a batch. ``batch(examples, capacity)`` gathers padded sparse batches of static
size (``SparseRows.take``) for a CUDA-graph-capturable step; ``max_batch_nnz`` plans those
capacities on the host from an epoch's example order.

Streaming datasets (``destiny.data.stream.StreamingSparseDataset``) bind as
``train.streaming.StreamingRows``: ``plan(order, batch_size)`` starts reading an epoch's batches
in the background and ``stage(examples, capacity)`` puts a batch on the device before its step;
both do nothing for data held in memory."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Mapping

import numpy as np
import torch

from destiny.errors import DataError
from destiny.ops.sparse import SparseBatch, SparseRows

if TYPE_CHECKING:
    from destiny.train.streaming import StreamingRows


class DenseRows:
    """A dense dataset (examples × values) held on one device."""

    def __init__(self, dataset, device: torch.device, dtype: torch.dtype):
        data = np.asarray(dataset.data)
        self.n_examples = data.shape[0]
        self.n_features = math.prod(data.shape[1:])
        tensor = torch.as_tensor(data, device=device)
        self.data = tensor.to(dtype) if tensor.dtype != torch.uint8 else tensor
        self.dtype = dtype

    def take(self, examples: torch.Tensor) -> torch.Tensor:
        rows = self.data.index_select(0, examples.to(self.data.device))
        if rows.dtype == torch.uint8:  # DSSTNE normalises byte images to x/256 - 0.5
            rows = rows.to(self.dtype) / 256.0 - 0.5
        return rows


def _rows(dataset, device, dtype):
    if hasattr(dataset, "read_rows"):  # a StreamingSparseDataset: entries stay on disk
        from destiny.train.streaming import StreamingRows

        return StreamingRows(dataset, device, dtype)
    return SparseRows(dataset, device, dtype) if hasattr(dataset, "offsets") else DenseRows(dataset, device, dtype)


def _is_sparse(rows) -> bool:
    return not isinstance(rows, DenseRows)


class Binding:
    """The datasets of one network by layer: ``inputs`` and ``targets`` (layer name → rows)."""

    def __init__(self, network, datasets: Mapping[str, object], *, device: torch.device,
                 with_targets: bool = True, what: str = "training data"):
        self.inputs: dict[str, SparseRows | StreamingRows | DenseRows] = {}
        self.targets: dict[str, SparseRows | StreamingRows | DenseRows] = {}
        layers = list(network.input_layers()) + (list(network.output_layers()) if with_targets else [])
        counts = {}
        held: dict[int, SparseRows | DenseRows] = {}  # id(dataset) → its rows on the device
        for layer in layers:
            if layer.dataset not in datasets:
                raise DataError(f"{what}: layer '{layer.name}' reads dataset '{layer.dataset}', which is not "
                                f"among the datasets given ({', '.join(sorted(datasets)) or 'none'}); "
                                "the DataSet names of the JSON must match the names in the NetCDF files")
            dataset = datasets[layer.dataset]
            rows = held.get(id(dataset))
            if rows is None:
                rows = held[id(dataset)] = _rows(dataset, device, network.dtype)
            if rows.n_features != network.units[layer.name]:
                raise DataError(f"{what}: dataset '{layer.dataset}' has {rows.n_features} features but layer "
                                f"'{layer.name}' has {network.units[layer.name]} units; use \"N\": \"auto\" "
                                "or the dataset the network was built for")
            (self.inputs if layer in network.input_layers() else self.targets)[layer.name] = rows
            counts[layer.dataset] = rows.n_examples
        if len(set(counts.values())) > 1:
            sizes = ", ".join(f"'{k}' {v}" for k, v in counts.items())
            raise DataError(f"{what}: the datasets have different numbers of examples ({sizes}); input and "
                            "output datasets must have one row per example, in the same order")
        self.n_examples = next(iter(counts.values()))
        self._held = held

    def rows_of(self, dataset) -> SparseRows | StreamingRows | DenseRows | None:
        """The device rows of ``dataset`` if it is one of the bound datasets (the same object)."""
        return self._held.get(id(dataset))

    def sparse(self) -> dict[str, SparseRows | StreamingRows]:
        """The sparse datasets by layer name (inputs and targets)."""
        return {name: rows for name, rows in {**self.inputs, **self.targets}.items() if _is_sparse(rows)}

    def streaming(self) -> dict[int, tuple[StreamingRows, list[str]]]:
        """The streaming datasets, each once (by id), with the sparse layers they feed."""
        out: dict[int, tuple[StreamingRows, list[str]]] = {}
        for name, rows in self.sparse().items():
            if hasattr(rows, "stage"):
                out.setdefault(id(rows), (rows, []))[1].append(name)
        return out

    def plan(self, order: np.ndarray, batch_size: int) -> None:
        """Start prefetching the batches of an epoch's order (streaming datasets only)."""
        for rows, _ in self.streaming().values():
            rows.plan(order, batch_size)

    def stage(self, examples: np.ndarray, capacity: Mapping[str, int] | None = None) -> None:
        """Put a batch's rows (host example numbers) on the device before its step (streaming
        datasets only; capacity as for ``batch``)."""
        for rows, names in self.streaming().values():
            rows.stage(examples, None if capacity is None else max(capacity[name] for name in names))

    def close(self) -> None:
        """Stop background reads (streaming datasets); the binding stays usable."""
        for rows, _ in self.streaming().values():
            rows.close()

    def max_batch_nnz(self, order: np.ndarray, batch_size: int) -> dict[str, int]:
        """By sparse layer: the most nonzeros of any batch of ``order`` cut into batch_size
        slices (host arithmetic over the row lengths, no device work)."""
        order = np.asarray(order, dtype=np.int64)
        starts = np.arange(0, order.size, batch_size)
        out = {}
        for name, rows in self.sparse().items():
            if order.size == 0:
                out[name] = 0
                continue
            out[name] = int(np.add.reduceat(rows.host_lengths[order], starts).max())
        return out

    def batch(self, examples: torch.Tensor, capacity: Mapping[str, int] | None = None) -> tuple[dict, dict]:
        """(inputs, targets) by layer name for the examples (an int64 tensor). capacity: by
        sparse layer, the static slot count of its padded batch (no host sync); None: exact
        batches (one host sync each)."""
        taken: dict[int, object] = {}

        def take(name, rows):
            key = id(rows)
            if key not in taken:
                if _is_sparse(rows) and capacity is not None:
                    taken[key] = rows.take(examples, capacity[name])
                else:
                    taken[key] = rows.take(examples)
            return taken[key]

        inputs = {name: take(name, rows) for name, rows in self.inputs.items()}
        targets = {name: take(name, rows) for name, rows in self.targets.items()}
        return inputs, targets


def batch_size_of(batch: SparseBatch | torch.Tensor) -> int:
    return batch.batch_size if isinstance(batch, SparseBatch) else batch.shape[0]
