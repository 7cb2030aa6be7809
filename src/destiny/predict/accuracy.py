"""Classification accuracy: the share of examples whose label is among the network's k best
classes (top-1, top-5, ...), for classifiers such as the seed's CIFAR and AlexNet networks.

Classes are ranked as ``destiny.predict.topk`` ranks items: by the output layer's
pre-activation (SoftMax and Sigmoid keep its order), ties to the lower class index, so the
numbers are deterministic and do not depend on the batch size. Each example has exactly one
label: a (n,) integer array, or a sparse dataset with one index a row (DSSTNE's CIFAR
``output``); rows without a label are skipped and counted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from destiny.errors import DataError, UsageError


@dataclass
class Accuracy:
    """Top-k accuracy by k, over ``examples`` labelled examples."""

    top: dict[int, float]
    examples: int
    skipped: int = 0
    source: str = ""
    labels: str = ""
    notes: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"source": self.source, "labels": self.labels, "examples": self.examples, "skipped": self.skipped,
                "accuracy": {f"top{k}": v for k, v in sorted(self.top.items())}, **self.notes}


def label_array(labels, n_examples: int | None = None) -> np.ndarray:
    """(n,) int64 labels, −1 where a row has none, from an array or a one-index-a-row sparse dataset."""
    if hasattr(labels, "offsets"):
        counts = np.diff(np.asarray(labels.offsets))
        if counts.size and counts.max() > 1:
            row = int(np.argmax(counts > 1))
            raise DataError(f"dataset '{getattr(labels, 'name', 'labels')}' row {row} has {int(counts[row])} labels; "
                            "accuracy needs one label per example (use the ranking metrics for several)")
        out = np.full(counts.size, -1, dtype=np.int64)
        out[counts == 1] = np.asarray(labels.indices)[np.asarray(labels.offsets)[:-1][counts == 1]]
    else:
        out = np.asarray(labels)
        if out.ndim != 1 or out.dtype.kind not in "iu":
            raise DataError(f"labels of shape {out.shape} and dtype {out.dtype}: give one integer class per example")
        out = out.astype(np.int64)
    if n_examples is not None and out.size != n_examples:
        raise DataError(f"{out.size:,} labels for {n_examples:,} examples; give one label per example, in order")
    return out


def _datasets(network, x) -> dict[str, object]:
    """x as datasets by DataSet name (what Binding reads)."""
    from destiny.predict.api import as_datasets

    layers = network.input_layers()
    if isinstance(x, Mapping) and set(x) <= {layer.dataset for layer in layers} \
            and all(hasattr(v, "offsets") or hasattr(v, "dims") for v in x.values()):
        return dict(x)
    if hasattr(x, "dims") and (hasattr(x, "offsets") or hasattr(x, "data")) and len(layers) == 1:
        return {layers[0].dataset: x}
    return as_datasets(network, x)


def top_k_accuracy(network, x, labels, ks=(1, 5), *, layer: str | None = None, batch_size: int | None = None,
                   device=None, source: str = "", labels_name: str = "") -> Accuracy:
    """Top-k accuracy of ``network`` on inputs ``x`` (a dataset, an array, or datasets by
    DataSet name) against ``labels``, for each k of ``ks`` (k beyond the number of classes
    counts as all of them)."""
    from destiny.predict.recommend import iter_recommendations
    from destiny.predict.topk import output_layer

    ks = sorted({int(k) for k in ks})
    if not ks or ks[0] < 1:
        raise UsageError(f"every k must be a positive integer, got {ks}")
    out = output_layer(network, layer)
    width = network.units[out.name]
    datasets = _datasets(network, x)
    n = next(iter(datasets.values())).n_examples
    y = label_array(labels, n)
    if y.size and y.max() >= width:
        raise DataError(f"label {int(y.max())} does not fit output layer '{out.name}' of {width} classes")
    k_max = min(max(ks), width)
    hits = np.zeros(k_max + 1, dtype=np.int64)  # hits[r]: examples whose label is ranked r (0-based); last: absent
    for rows, _, items in iter_recommendations(network, datasets, k_max, layer=out.name, batch_size=batch_size,
                                               device=device):
        truth = y[rows]
        keep = truth >= 0
        found = items[keep] == truth[keep, None]
        ranks = np.where(found.any(1), found.argmax(1), k_max)
        hits += np.bincount(ranks, minlength=k_max + 1)
    labelled = int((y >= 0).sum())
    cumulative = np.cumsum(hits[:-1])
    top = {k: float(cumulative[min(k, k_max) - 1]) / labelled if labelled else float("nan") for k in ks}
    return Accuracy(top, labelled, int((y < 0).sum()), source, labels_name)


__all__ = ["Accuracy", "label_array", "top_k_accuracy"]
