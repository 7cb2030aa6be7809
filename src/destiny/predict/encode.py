"""Embeddings: the activations of one layer for every example (DSSTNE's encoder, §6.4), written
batch by batch to ``.npy`` (float32, examples × units, memory-mapped while written) or to a
NetCDF dense dataset named after the layer (DSSTNE's dense layout). Both atomically."""

from __future__ import annotations

import math
import os
from typing import Iterator, Mapping

import numpy as np
import torch

from destiny.config import LayerKind
from destiny.errors import UsageError
from destiny.io.atomic import atomic_path
from destiny.train.binding import Binding

SUFFIXES = (".npy", ".nc")


def default_layer(network) -> str:
    """The last Hidden layer in topological order (the embedding of an autoencoder)."""
    hidden = [layer.name for layer in network.order if layer.kind == LayerKind.HIDDEN]
    if not hidden:
        raise UsageError("the network has no Hidden layer; name the layer to encode with --layer")
    return hidden[-1]


def check_layer(network, name: str) -> str:
    try:
        layer = network.config.layer(name)
    except KeyError:
        names = ", ".join(f"'{l.name}'" for l in network.config.layers)
        raise UsageError(f"--layer {name}: the network has no such layer; its layers are {names}") from None
    if layer.kind == LayerKind.INPUT:
        raise UsageError(f"--layer {name}: an Input layer holds the data itself; name a Hidden or Output layer")
    return name


@torch.no_grad()
def iter_encodings(network, datasets: Mapping[str, object], layer: str, *, batch_size: int | None = None,
                   device: torch.device | str | None = None) -> Iterator[tuple[slice, np.ndarray]]:
    """(rows, activations (batch, units) float32) of ``layer`` for each batch, in evaluation
    mode (no dropout); an Output layer gives its activated outputs. batch_size: default 16,384
    on a GPU, 1,024 elsewhere (``recommend.default_batch_size``)."""
    from destiny.predict.recommend import default_batch_size

    device = torch.device(device) if device is not None else network.device
    batch_size = default_batch_size(device) if batch_size is None else batch_size
    if batch_size < 1:
        raise UsageError(f"the batch size must be a positive integer, not {batch_size}")
    check_layer(network, layer)
    binding = Binding(network, datasets, device=device, with_targets=False, what="encoder input")
    for start in range(0, binding.n_examples, batch_size):
        examples = torch.arange(start, min(start + batch_size, binding.n_examples), device=device)
        inputs, _ = binding.batch(examples)
        value = network.predict(inputs, [layer])[layer]
        yield slice(start, start + len(examples)), value.float().flatten(1).cpu().numpy()


def write_encodings(path: str | os.PathLike, network, datasets: Mapping[str, object], layer: str, n_examples: int,
                    *, batch_size: int | None = None, device=None) -> tuple[int, int]:
    """Write the activations of ``layer`` to ``path`` (.npy or .nc); returns (examples, units)."""
    path = os.fspath(path)
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in SUFFIXES:
        raise UsageError(f"{path}: the output must end in .npy (numpy) or .nc (NetCDF dense dataset)")
    check_layer(network, layer)
    units = math.prod(network.dims[layer])
    batches = iter_encodings(network, datasets, layer, batch_size=batch_size, device=device)
    if suffix == ".npy":
        with atomic_path(path, ".npy") as tmp:
            out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(n_examples, units))
            for rows, values in batches:
                out[rows] = values
            out.flush()
            del out
    else:
        from destiny.data import DenseDataset, write_netcdf

        data = np.empty((n_examples, units), dtype=np.float32)
        for rows, values in batches:
            data[rows] = values
        write_netcdf(path, DenseDataset(layer, (units,), data))
    return n_examples, units
