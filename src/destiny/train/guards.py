"""What a Trainer checks in what it is given, before it allocates or trains.

- Hyperparameters in range: a negative learning rate climbs the loss and a negative λ rewards
  large weights, silently; every run of the CLI and the Python API passes here.
- A seed a network file can hold (``io.storable``), so the run is not lost at its save.
- Training data with examples (zero examples is a run of nothing).
- A run resumed from a checkpoint continues on its own training data: the checkpoint's info
  holds a fingerprint of the data (``data_fingerprint``: each dataset's name, shape, nonzeros,
  and a hash of its row lengths and of up to ``SAMPLED_ROWS`` rows spread over it; the same
  whether the data are in memory or streamed), and ``fit`` refuses other data, naming both.
"""

from __future__ import annotations

import hashlib
import math
from typing import Mapping

import numpy as np

from destiny.errors import DataError, UsageError

SAMPLED_ROWS = 64  # rows whose entries enter the fingerprint (all row lengths do)

# (field of Hyperparameters, what it is, its flag, the lowest value, whether that value is allowed, upper bound)
_RANGES = (
    ("alpha", "the learning rate alpha", "--alpha", 0.0, False, None),
    ("lam", "the L2 weight decay lam", "--lambda", 0.0, True, None),
    ("lam1", "the L1 weight decay lam1", "--lambda1", 0.0, True, None),
    ("mu", "the momentum or averaging rate mu", "--mu", 0.0, True, 1.0),
    ("mu1", "Adam's beta2 mu1", "--mu1", 0.0, True, 1.0),
    ("decay", "the learning-rate decay", "the network's Decay", 0.0, True, None),
    ("weight_decay", "the decoupled weight decay", "the network's WeightDecay", 0.0, True, None),
)


def check_hyperparameters(hyper) -> None:
    """UsageError naming the argument and its flag when a hyperparameter given is out of
    range (None: the optimizer's default): alpha > 0; lam, lam1, decay, weight_decay ≥ 0;
    mu, mu1 in [0, 1); all finite."""
    for name, what, flag, low, low_ok, high in _RANGES:
        value = getattr(hyper, name, None)
        if value is None:
            continue
        wanted = (f"in [{low:g}, {high:g})" if high is not None else f"{'≥' if low_ok else 'above'} {low:g}")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise UsageError(f"{what} ({flag}, {name}=) must be a number {wanted}; got {value!r}") from None
        bad = not math.isfinite(number) or number < low or (number == low and not low_ok) or \
            (high is not None and number >= high)
        if bad:
            raise UsageError(f"{what} ({flag}, {name}=) must be a finite number {wanted}; got {value!r}")


def _sampled_entries(dataset, examples: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """(indices, values or None) of the rows ``examples``, each row's entries sorted by index,
    read the same way from data in memory (CSR arrays) and from data streamed from disk."""
    if hasattr(dataset, "read_rows"):
        dataset = dataset.read_rows(examples)
        examples = np.arange(len(examples))
    offsets = np.asarray(dataset.offsets, dtype=np.int64)
    rows = [np.arange(offsets[e], offsets[e + 1]) for e in examples]
    positions = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    row_of = np.repeat(np.arange(len(rows)), [len(r) for r in rows])
    indices = np.asarray(dataset.indices)[positions].astype(np.int64)
    order = np.lexsort((indices, row_of))
    values = getattr(dataset, "values", None)
    values = None if values is None else np.asarray(values)[positions].astype(np.float64)[order]
    return indices[order], values


def _describe(name: str, dataset) -> str:
    """'input: 200x64, 1,234 nonzeros, #0123456789abcdef' (shape, nonzeros, hash; ASCII, as a
    network file's info attribute)."""
    sparse = hasattr(dataset, "read_rows") or hasattr(dataset, "offsets")
    if hasattr(dataset, "read_rows"):
        lengths = np.asarray(dataset.lengths, dtype=np.int64)
    elif sparse:
        lengths = np.diff(np.asarray(dataset.offsets, dtype=np.int64))
    else:
        data = np.asarray(dataset.data)
    n = len(lengths) if sparse else len(data)
    dims = tuple(int(d) for d in getattr(dataset, "dims", ()))
    h = hashlib.blake2b(repr((name, n, dims)).encode(), digest_size=8)
    examples = np.unique(np.linspace(0, n - 1, min(n, SAMPLED_ROWS)).astype(np.int64)) if n else np.zeros(0, np.int64)
    if sparse:
        h.update(lengths.astype("<i8").tobytes())
        indices, values = _sampled_entries(dataset, examples)
        h.update(indices.astype("<i8").tobytes())
        if values is not None:
            h.update(values.astype("<f8").tobytes())
        nnz = f", {int(lengths.sum()):,} nonzeros"
    else:  # dense: examples × values
        h.update(np.ascontiguousarray(data[examples], dtype="<f8").tobytes())
        nnz = ""
    return f"{name}: {'x'.join(str(d) for d in (n, *dims))}{nnz}, #{h.hexdigest()}"


def data_fingerprint(network, datasets: Mapping[str, object]) -> str:
    """The fingerprint of the datasets ``network``'s Input and Output layers read."""
    names = sorted({layer.dataset for layer in network.input_layers() + network.output_layers()
                    if layer.dataset in datasets})
    return "; ".join(_describe(name, datasets[name]) for name in names)


def _examples(dataset) -> int | None:
    if hasattr(dataset, "n_examples"):
        return int(dataset.n_examples)
    if hasattr(dataset, "offsets"):
        return len(dataset.offsets) - 1
    return len(dataset.data) if hasattr(dataset, "data") else None


def check_training_data(trainer, datasets: Mapping[str, object]) -> None:
    """At the start of ``Trainer.fit``: DataError for data without examples; the data's
    fingerprint into ``trainer.data_fingerprint`` (checkpoints store it); UsageError when the
    trainer was restored from a checkpoint of a run on other data."""
    empty = [layer.dataset for layer in trainer.network.input_layers() if _examples(datasets.get(layer.dataset)) == 0]
    if empty:
        raise DataError(f"the training data have no examples (dataset '{empty[0]}' is empty): there is nothing to "
                        "train on; give a dataset with at least one example")
    trainer.data_fingerprint = data_fingerprint(trainer.network, datasets)
    if trainer.resumed_data is None:
        return
    path, stored = trainer.resumed_data
    if stored and stored != trainer.data_fingerprint:
        raise UsageError(f"{path} was trained on other data ({stored}) than this run gives "
                         f"({trainer.data_fingerprint}); resume with the run's own training files, or start a new run "
                         "without --resume")
