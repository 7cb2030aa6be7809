"""The Python face of prediction: ``network.predict(x)`` and ``network.recommend(x, k)`` for
whatever holds the examples — a SparseBatch, a SparseDataset, a scipy.sparse matrix, a dense
numpy array or torch tensor, or a mapping of those by Input layer or DataSet name.

    recs = recommend_batch(network, user_items_csr, k=10)      # seen items filtered out
    recs.items[u], recs.scores[u]                             # best first; −1 / −inf: no item

Batch calls equal single calls: every example is scored on its own, ties go to the lower item
index, and the results do not depend on batch_size or chunk.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Mapping, NamedTuple

import numpy as np
import torch

from destiny.errors import UsageError
from destiny.ops.sparse import SparseBatch
from destiny.predict.recommend import iter_recommendations
from destiny.predict.topk import output_layer


class Recommendations(NamedTuple):
    """scores (n, k) float32 best first, −inf in empty slots; items (n, k) int64, −1 in empty
    slots. Unpacks like ``torch.topk``: ``scores, items = recs``."""

    scores: np.ndarray
    items: np.ndarray


def _is_scipy(x) -> bool:
    return type(x).__module__.startswith("scipy.sparse")


def _sparse_rows(x, width: int, what: str):
    """A SparseDataset-like object (offsets, indices, values, n_features) ``width`` wide."""
    if isinstance(x, SparseBatch):
        n = x.n_features
        x = SimpleNamespace(offsets=x.offsets.cpu().numpy(), indices=x.indices.cpu().numpy(),
                            values=None if x.values is None else x.values.cpu().numpy(), weights=None,
                            ignore_zero=x.ignore_zero)
    elif _is_scipy(x):
        from destiny.data.interop import from_scipy

        n = x.shape[1]
        x = from_scipy(x, name="x")
    else:
        n = x.n_features
    if n > width:
        raise UsageError(f"{what} has {n:,} features but the layer has {width:,} units")
    return SimpleNamespace(offsets=x.offsets, indices=x.indices, values=getattr(x, "values", None),
                           weights=None, n_features=width, ignore_zero=getattr(x, "ignore_zero", False),
                           n_examples=len(x.offsets) - 1)


def _dense_rows(x, width: int, what: str):
    if isinstance(x, torch.Tensor):
        data = x.detach().cpu().numpy()
    elif isinstance(getattr(x, "data", None), np.ndarray):  # a DenseDataset (uint8 images stay uint8)
        data = x.data
    else:
        data = np.asarray(x)
    if data.ndim == 1:
        data = data[None, :]
    data = data.reshape(len(data), -1)
    if data.shape[1] != width:
        raise UsageError(f"{what} has {data.shape[1]:,} values per example but the layer has {width:,} units")
    return SimpleNamespace(data=data, n_examples=len(data))


def as_datasets(network, x) -> dict[str, object]:
    """``x`` as the datasets of the network's Input layers, by DataSet name (what ``Binding``
    reads). A single ``x`` feeds the only Input layer; a mapping is keyed by layer or DataSet name.
    Sparse data narrower than the layer is widened (generateNetCDF's padding columns)."""
    layers = network.input_layers()
    if isinstance(x, Mapping):
        given = dict(x)
    elif len(layers) == 1:
        given = {layers[0].name: x}
    else:
        raise UsageError(f"the network has {len(layers)} Input layers; give x as a mapping of "
                         f"{', '.join(l.name for l in layers)} to their data")
    out = {}
    for layer in layers:
        key = layer.name if layer.name in given else layer.dataset if layer.dataset in given else None
        if key is None:
            raise UsageError(f"no data for Input layer '{layer.name}' (DataSet '{layer.dataset}')")
        data, width = given[key], network.units[layer.name]
        what = f"the data of Input layer '{layer.name}'"
        sparse = isinstance(data, SparseBatch) or _is_scipy(data) or hasattr(data, "offsets")
        out[layer.dataset] = _sparse_rows(data, width, what) if sparse else _dense_rows(data, width, what)
    return out


def _item_mask(items, width: int, what: str) -> np.ndarray | None:
    if items is None:
        return None
    items = np.asarray(items)
    if items.dtype == bool:
        if items.shape != (width,):
            raise UsageError(f"{what} as a mask needs shape ({width},), not {items.shape}")
        return items
    items = items.astype(np.int64).ravel()
    if items.size and (items.min() < 0 or items.max() >= width):
        raise UsageError(f"{what} holds item {items.min() if items.min() < 0 else items.max()}, outside 0..{width - 1}")
    mask = np.zeros(width, dtype=bool)
    mask[items] = True
    return mask


def recommend_batch(network, x, k: int = 10, *, filter_seen: bool = True, seen=None, exclude=None,
                    include_only=None, layer: str | None = None, batch_size: int | None = None,
                    chunk: int | None = None,
                    device: torch.device | str | None = None, method: str = "auto") -> Recommendations:
    """The k best items of output ``layer`` for every example of ``x``.

    filter_seen: never recommend an example's own input items (an autoencoder's input and output
    columns are the same items; otherwise pass ``seen``). seen: per example, output columns never
    to recommend (SparseDataset, scipy.sparse or SparseBatch with x's rows); overrides x for
    filtering. exclude / include_only: item ids (or a (width,) bool mask) never / only to
    recommend. batch_size: default 16,384 on a GPU, 1,024 elsewhere (``recommend.default_batch_size``).
    chunk: output columns scored at once; memory ≈ batch_size × chunk × 4 bytes.
    method: "auto", "exact" or "candidates" (``destiny.predict.topk.top_k``).
    """
    cfg = output_layer(network, layer)
    width = network.units[cfg.name]
    datasets = as_datasets(network, x)
    n = next(iter(datasets.values())).n_examples
    if seen is None and filter_seen:
        if len(datasets) != 1 or not hasattr(next(iter(datasets.values())), "offsets"):
            raise UsageError("filter_seen=True needs one sparse input whose columns are the output's items; "
                             "pass seen=… or filter_seen=False")
        (only,) = network.input_layers()
        if network.units[only.name] != width:
            raise UsageError(f"filter_seen=True: the input has {network.units[only.name]:,} features and output "
                             f"'{cfg.name}' {width:,} items, so x's items are not output columns; pass seen=… "
                             "or filter_seen=False")
        seen = next(iter(datasets.values()))
    elif seen is not None:
        seen = _sparse_rows(seen, width, "seen")
    allowed = _item_mask(include_only, width, "include_only")
    excluded = _item_mask(exclude, width, "exclude")
    if excluded is not None:
        allowed = ~excluded if allowed is None else allowed & ~excluded
    scores = np.empty((n, k), np.float32)
    items = np.empty((n, k), np.int64)
    for rows, s, i in iter_recommendations(network, datasets, k, exclude=seen, include_only=allowed,
                                           layer=cfg.name, batch_size=batch_size, chunk=chunk, device=device,
                                           method=method):
        scores[rows], items[rows] = s, i
    return Recommendations(scores, items)


@torch.no_grad()
def predict_batch(network, x, layers: list[str] | None = None, *, batch_size: int = 1024,
                  device: torch.device | str | None = None) -> dict[str, np.ndarray]:
    """Activations (n, units) of the output layers (or of ``layers``) for every example of x.
    Dense: n × width floats; for top-K of a wide layer use ``recommend_batch``."""
    from destiny.train.binding import Binding

    device = torch.device(device) if device is not None else network.device
    binding = Binding(network, as_datasets(network, x), device=device, with_targets=False, what="x")
    parts: dict[str, list[np.ndarray]] = {}
    for start in range(0, binding.n_examples, batch_size):
        inputs, _ = binding.batch(torch.arange(start, min(start + batch_size, binding.n_examples), device=device))
        for name, value in network.predict(inputs, layers).items():
            parts.setdefault(name, []).append(value.float().cpu().numpy())
    return {name: np.concatenate(chunks) for name, chunks in parts.items()}


def as_batch(network, x, device: torch.device | str | None = None) -> dict[str, SparseBatch | torch.Tensor]:
    """``x`` as one batch for ``Network.forward``/``predict``: {Input layer name: SparseBatch or
    tensor}. A mapping of layer names to SparseBatch/tensor comes back unchanged."""
    from destiny.train.binding import Binding

    if isinstance(x, Mapping) and all(isinstance(v, (SparseBatch, torch.Tensor)) for v in x.values()) \
            and set(x) <= {layer.name for layer in network.input_layers()}:
        return dict(x)
    device = torch.device(device) if device is not None else network.device
    binding = Binding(network, as_datasets(network, x), device=device, with_targets=False, what="x")
    inputs, _ = binding.batch(torch.arange(binding.n_examples, device=device))
    return inputs
