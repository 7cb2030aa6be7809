"""Recipes of the field's best recommenders, as DSSTNE JSON keys (Destiny extensions):

- ``Normalize`` on a sparse Input layer: each example's values scaled to unit L2 (Mult-VAE) or
  L1 norm, in training and prediction, before denoising (``ops.functional.normalize_rows``);
- ``Denoising.Rescale``: whether kept input values are divided by 1 − p (DSSTNE's behaviour,
  the default) — with ``Normalize`` that is Mult-VAE's dropout on the normalised input;
- ``WeightInit.FrequencyBias`` on an Output layer: biases started from the target dataset's
  column counts when training starts from a freshly initialised network;
- the warning about a wide sparse Sigmoid output starting at bias 0 (every output then starts
  at probability 0.5: half the recommendation quality measured on Last.fm).

``ZeroDiagonal`` layers are in ``nn/itemitem.py``.
"""

from __future__ import annotations

import math
import warnings
from typing import Mapping

import numpy as np
import torch

from destiny.config import Activation, LayerKind, NetworkConfig
from destiny.errors import ConfigWarning, DataError
from destiny.ops import functional as ops
from destiny.ops.sparse import SparseBatch

WIDE_OUTPUT = 1000  # a sparse Sigmoid output wider than this should not start at bias 0
STREAM_CHUNK = 1 << 16  # examples read at once when counting a dataset that streams from disk


# -- inputs ----------------------------------------------------------------------------------

def sparse_input(network, layer, x: SparseBatch, noise) -> SparseBatch:
    """A sparse Input layer's batch as the network reads it: normalised (``Normalize``), then
    denoised in training (``Denoising``: p, Rescale)."""
    if layer.normalize is not None:
        x = ops.normalize_rows(x, layer.normalize, network.dtype)
    denoising = network.config.denoising
    if noise is not None and denoising.p > 0 and layer.sparse:
        x = ops.denoise(x, denoising.p, noise.seed_for("denoise", layer.name), denoising.rescale)
    return x


# -- output biases from item frequencies -----------------------------------------------------

def column_counts(dataset, n_features: int) -> tuple[np.ndarray, int]:
    """(c, n): the (n_features,) float64 sums of each column's values over the examples (1 a
    nonzero for indicator data: its count) and the number of examples n. Sparse datasets in
    memory, datasets streamed from disk (read in chunks of examples) and dense ones."""
    if hasattr(dataset, "read_rows"):  # data.stream.StreamingSparseDataset
        n = int(dataset.n_examples)
        counts = np.zeros(n_features, np.float64)
        for lo in range(0, n, STREAM_CHUNK):
            part, _ = column_counts(dataset.read_rows(np.arange(lo, min(lo + STREAM_CHUNK, n))), n_features)
            counts += part
        return counts, n
    if hasattr(dataset, "offsets"):
        indices = np.asarray(dataset.indices)
        values = getattr(dataset, "values", None)
        weights = None if values is None else np.asarray(values, np.float64)
        return np.bincount(indices, weights=weights, minlength=n_features).astype(np.float64), \
            len(dataset.offsets) - 1
    data = np.asarray(dataset.data)
    flat = data.reshape(data.shape[0], -1).astype(np.float64)
    if data.dtype == np.uint8:  # as the network reads byte data (train.binding.DenseRows)
        flat = flat / 256.0 - 0.5
    return flat.sum(0), data.shape[0]


def frequency_bias(counts: np.ndarray, n: int, activation: Activation) -> np.ndarray:
    """The initial biases (float64) of an output of N = len(counts) units from its targets'
    column sums c over n examples: Sigmoid log((c+1)/(n−c+1)), the smoothed log-odds of each
    unit being on (c clipped to [0, n]); SoftMax log((c+1)/(Σc+N)), the smoothed
    log-frequency; Linear c/n, the mean target."""
    c = np.asarray(counts, np.float64)
    if activation == Activation.SIGMOID:
        c = np.clip(c, 0.0, n)
        return np.log((c + 1.0) / (n - c + 1.0))
    if activation == Activation.SOFTMAX:
        c = np.clip(c, 0.0, None)
        return np.log((c + 1.0) / (c.sum() + c.size))
    if activation == Activation.LINEAR:
        return c / max(n, 1)
    raise ValueError(f"FrequencyBias is not defined for {activation.json} outputs")


@torch.no_grad()
def init_frequency_biases(network, datasets: Mapping[str, object]) -> list[str]:
    """Set the biases of every Output layer with ``WeightInit.FrequencyBias`` from its target
    dataset (``datasets`` by DataSet name): its first source's bias takes ``frequency_bias``,
    the others 0, so that the pre-activations start at it. Model parallel: each process its
    slice. Returns the layers set. One pass over each target dataset on the host."""
    done = []
    for layer in network.config.output_layers:
        if not layer.weight_init.frequency_bias:
            continue
        if layer.dataset not in datasets:
            raise DataError(f"layer '{layer.name}' starts its biases from the frequencies of dataset "
                            f"'{layer.dataset}' (WeightInit.FrequencyBias), which is not among the datasets "
                            f"given ({', '.join(sorted(datasets)) or 'none'})")
        units = network.units[layer.name]
        counts, n = column_counts(datasets[layer.dataset], units)
        if counts.size != units:
            raise DataError(f"dataset '{layer.dataset}' has {counts.size} features but layer '{layer.name}' has "
                            f"{units} units; use \"N\": \"auto\" or the dataset the network was built for")
        bias = frequency_bias(counts, n, layer.activation)
        specs = [s for s in network.specs if s.output_layer == layer.name]
        for k, spec in enumerate(specs):
            target = network.bias(spec)
            lo, hi = network.plan[spec.index].bias if spec.index in network.plan else (0, units)
            part = bias[lo:hi] if k == 0 else np.zeros(hi - lo)
            target.copy_(torch.as_tensor(part, dtype=target.dtype, device=target.device))
        done.append(layer.name)
    return done


# -- the warning -----------------------------------------------------------------------------

def bias_warnings(config: NetworkConfig, dims: Mapping[str, tuple[int, ...] | None] | None = None) -> list[str]:
    """What to say about sparse Sigmoid Output layers wider than ``WIDE_OUTPUT`` units (or of
    unknown width) that start at bias 0 without FrequencyBias: every output then starts at
    probability 0.5. dims: the layers' dimensions where known."""
    messages = []
    for i, layer in enumerate(config.layers):
        if (layer.kind != LayerKind.OUTPUT or not layer.sparse or layer.activation != Activation.SIGMOID
                or layer.weight_init.frequency_bias or layer.weight_init.bias != 0):
            continue
        known = (dims or {}).get(layer.name)
        width = math.prod(known) if known else None
        if width is not None and width <= WIDE_OUTPUT:
            continue
        size = f"{width:,} units" if width is not None else f"\"auto\" units (if its dataset is wider than {WIDE_OUTPUT:,})"
        messages.append(
            f"Layers[{i}] (layer '{layer.name}'): a sparse Sigmoid output of {size} starts at bias 0, so every "
            "output starts at probability 0.5; on real data this halves recommendation quality (measured on "
            "Last.fm: NDCG@100 0.175 against 0.385 with a negative output bias). Start the biases from the items' "
            "frequencies with \"WeightInit\": {\"FrequencyBias\": true}, or give a negative \"Bias\" such as -5")
    return messages


# -- the start of training -------------------------------------------------------------------

def start_training(network, datasets: Mapping[str, object]) -> bool:
    """What the recipes do when ``Trainer.fit`` starts: ZeroDiagonal diagonals set to zero (a
    loaded network's too); and, for a freshly initialised network only (not one read from a
    file or a checkpoint, not one already trained), the FrequencyBias biases, the ClosedForm
    matrices (``nn/closedform.py``) and the bias-0 warning (on the first process). Runs once
    per fresh network. Returns whether a closed form was solved (the Trainer validates that
    start as epoch 0)."""
    from destiny.nn.itemitem import zero_diagonals

    zero_diagonals(network)
    if not network.fresh:
        return False
    network.fresh = False
    init_frequency_biases(network, datasets)
    from destiny.nn.closedform import init_closed_form

    solved = bool(init_closed_form(network, datasets))
    if network.world.is_root:
        for message in bias_warnings(network.config, network.dims):
            warnings.warn(message, ConfigWarning, stacklevel=4)
    return solved
