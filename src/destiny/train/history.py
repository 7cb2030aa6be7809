"""Training history as JSON: what each epoch did, for plots and comparisons.

    trainer.callbacks.append(history_callback("history.json", {"config": "net.json"}))
    write_history("history.json", trainer.history, {"note": "baseline"})
    history = read_history("history.json")      # History(epochs=[{...}, ...], meta={...})

The file is one JSON object::

    {"format": "destiny-history", "version": 1,
     "meta": {"destiny": "0.1.0", "optimizer": "adam", "batch_size": 256, ...},
     "epochs": [{"epoch": 1, "training_error": 0.71, "validation_error": 0.69,
                 "regularization_error": 0.0, "learning_rate": 0.001, "seconds": 2.1,
                 "examples_per_second": 2857.1, "extra": {"P@10": 0.21},
                 "metrics": {"ndcg@100": 0.41, "precision@10": 0.33}, "best_epoch": 1}, ...]}

Each epoch is ``EpochResult.as_dict()``; ``extra`` holds metrics a callback added (plotted by
``destiny plot`` beside the errors); ``metrics`` the ranking metrics of a validated epoch
(``destiny.train.validation``; ``{}`` otherwise) and ``best_epoch`` the best validated epoch so
far under early stopping (``null`` otherwise). Both keys are newer than version 1's first
files, which lack them: readers take a missing key as empty. With early stopping, ``meta``
also says what was monitored: ``monitor``, ``best_epoch``, ``best``, ``patience``,
``stopped_early``. Non-finite numbers (a diverged run's NaN) are written as
``null``: the file is standard JSON. Writes are atomic, so a reader never sees half a file.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Any, Iterable, NamedTuple

from destiny.errors import DataError
from destiny.io.atomic import atomic_open
from destiny.io.inputs import open_text_input

FORMAT = "destiny-history"
VERSION = 1


class History(NamedTuple):
    """epochs: one dict per epoch (``EpochResult.as_dict()``), in order; meta: the run's facts."""

    epochs: list[dict]
    meta: dict


def _plain(value: Any) -> Any:
    """JSON-ready: non-finite floats → None, numpy scalars → Python, containers recursively."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def epoch_dicts(results: Iterable) -> list[dict]:
    """EpochResults (or dicts of their fields) as plain dicts."""
    return [_plain(r.as_dict() if hasattr(r, "as_dict") else dict(r)) for r in results]


def write_history(path: str | os.PathLike, results: Iterable, meta: dict | None = None) -> None:
    """Write ``results`` (EpochResults or their dicts) and ``meta`` to ``path`` as JSON, atomically."""
    from destiny import __version__

    document = {"format": FORMAT, "version": VERSION, "meta": _plain({"destiny": __version__, **(meta or {})}),
                "epochs": epoch_dicts(results)}
    with atomic_open(path, "w") as stream:
        json.dump(document, stream, indent=1, allow_nan=False)
        stream.write("\n")


def read_history(path: str | os.PathLike) -> History:
    """Read a history file (also a bare JSON list of epoch dicts, such as a saved
    ``Recommender.history_``); DataError if it is neither."""
    from destiny.io.limits import MAX_JSON_BYTES, json_too_big, json_too_deep

    path = os.fspath(path)
    with open_text_input(path) as stream:
        raw = stream.read(MAX_JSON_BYTES + 1)
    fix = "give a file written by `destiny train --history`"
    too_big = json_too_big(os.path.getsize(path) if len(raw) > MAX_JSON_BYTES else len(raw))
    if too_big:
        raise DataError(f"{path}: {too_big}; {fix}")
    try:
        document = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (byte {exc.start}); {fix}") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: line {exc.lineno}: not JSON ({exc.msg}); {fix}") from None
    except (ValueError, RecursionError):  # a number of thousands of digits, or nesting past the stack
        raise DataError(f"{path}: not a history Destiny reads (a number too long or nesting too deep); {fix}") from None
    too_deep = json_too_deep(document)
    if too_deep:
        raise DataError(f"{path}: the JSON {too_deep}; {fix}")
    if isinstance(document, list):
        document = {"format": FORMAT, "epochs": document, "meta": {}}
    if not isinstance(document, dict) or not isinstance(document.get("epochs"), list):
        raise DataError(f"{path}: not a training history (a JSON object with an 'epochs' list); give a file "
                        "written by `destiny train --history` or destiny.train.history.write_history")
    epochs = document["epochs"]
    for i, epoch in enumerate(epochs):
        if not isinstance(epoch, dict):
            raise DataError(f"{path}: epochs[{i}] is not an object of per-epoch values")
        _check_epoch(epoch, f"{path}: epochs[{i}]", fix)
    meta = document.get("meta") or {}
    if not isinstance(meta, dict):
        raise DataError(f"{path}: 'meta' is {_shown(meta)}, not an object of the run's facts; {fix}")
    _check_fields(meta, f"{path}: meta", fix, counts=("best_epoch",), texts=("network", "monitor"))
    return History(epochs, dict(meta))


_EPOCH_NUMBERS = ("training_error", "validation_error", "regularization_error", "learning_rate", "seconds",
                  "examples_per_second")


def _check_epoch(epoch: dict, where: str, fix: str) -> None:
    """DataError naming the field when an epoch's value is not what ``destiny plot`` and the
    readers of a history take: numbers (or null), an epoch number, objects of metrics."""
    if "epoch" in epoch and epoch["epoch"] is None:
        raise DataError(f"{where}.epoch is null; it must be the epoch's number (an integer ≥ 1); {fix}")
    _check_fields(epoch, where, fix, counts=("epoch", "best_epoch"), numbers=_EPOCH_NUMBERS)
    for key in ("metrics", "extra"):
        value = epoch.get(key)
        if value is not None and not isinstance(value, dict):
            raise DataError(f"{where}.{key} is {_shown(value)}, not an object of named values; {fix}")


def _check_fields(row: dict, where: str, fix: str, *, counts=(), numbers=(), texts=()) -> None:
    for key in counts:
        value = row.get(key)
        whole = _is_number(value) and math.isfinite(value) and value == int(value) and value >= 0
        if value is not None and not whole:
            raise DataError(f"{where}.{key} is {_shown(value)}; it must be an epoch number (an integer ≥ 0) or null; "
                            f"{fix}")
    for key in numbers:
        value = row.get(key)
        if value is not None and not _is_number(value):
            raise DataError(f"{where}.{key} is {_shown(value)}; it must be a number or null; {fix}")
    for key in texts:
        value = row.get(key)
        if value is not None and not isinstance(value, str):
            raise DataError(f"{where}.{key} is {_shown(value)}; it must be text; {fix}")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _shown(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 40 else text[:37] + "..."


def run_facts(trainer) -> dict:
    """What a history's meta says about the run of ``trainer``."""
    opt = trainer.optimizer
    network = trainer.network
    return {"network": network.config.name, "optimizer": opt.kind.value,
            "hyperparameters": dataclasses.asdict(opt.hyper), "batch_size": trainer.batch_size,
            "seed": trainer.seed, "device": str(trainer.device), "precision": str(trainer.precision.value),
            "parameters": sum(p.numel() for p in network.parameters()),
            **(trainer.stopping.state() if getattr(trainer, "stopping", None) is not None else {})}


def history_callback(path: str | os.PathLike, meta: dict | None = None):
    """A Trainer callback that rewrites ``path`` with the trainer's whole history after every
    epoch (atomically), so the file is complete even if the run stops. Under model parallelism
    only rank 0 writes."""

    def callback(result, trainer) -> None:
        world = getattr(trainer, "world", None)
        if world is not None and not world.is_root:
            return
        write_history(path, trainer.history, {**run_facts(trainer), **(meta or {})})

    return callback


__all__ = ["FORMAT", "History", "VERSION", "epoch_dicts", "history_callback", "read_history", "run_facts",
           "write_history"]
