"""Training curves in TensorBoard: a Trainer callback that writes each epoch's numbers to event
files (``torch.utils.tensorboard.SummaryWriter``), beside the JSON history of ``destiny plot``.

    with TensorBoardLogger("runs/ml20m") as board:
        trainer.callbacks.append(board)
        trainer.fit(datasets, epochs, validation)
    # tensorboard --logdir runs

Scalars, by epoch (the step): ``loss/training`` (average error per example),
``loss/validation`` (with validation data), ``loss/regularization`` (when not 0),
``learning_rate``, ``metrics/<name>`` for the ranking metrics of validated epochs (``ndcg@100``,
``precision@10``, …; a closed-form start's at epoch 0), ``examples_per_second``, and any number
a callback put in ``EpochResult.extra`` as ``extra/<name>``. Each epoch is flushed, so a running
TensorBoard shows it at once.

Needs the ``tensorboard`` package (``pip install destiny[tensorboard]``); without it, opening a
logger is a ResourceError saying so, before any training.
"""

from __future__ import annotations

import math
import os
from numbers import Real

from destiny.errors import ResourceError, UsageError

INSTALL = "pip install destiny[tensorboard] (or pip install tensorboard)"


def summary_writer_class():
    """``torch.utils.tensorboard.SummaryWriter``; ResourceError naming the install when the
    tensorboard package is missing."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # torch raises it when tensorboard is not installed
        raise ResourceError(f"TensorBoard event files need the tensorboard package, which is not installed: "
                            f"{INSTALL}") from None
    return SummaryWriter


def check_log_dir(log_dir: str | os.PathLike, what: str = "tensorboard") -> str:
    """The directory as a str; UsageError when it names a file."""
    log_dir = os.fspath(log_dir)
    if os.path.exists(log_dir) and not os.path.isdir(log_dir):
        raise UsageError(f"{what} {log_dir} is a file; give a directory for the TensorBoard event files (created if "
                         "missing), such as runs/NAME")
    return log_dir


class TensorBoardLogger:
    """A ``Trainer`` callback writing each epoch's scalars to event files in ``log_dir``."""

    def __init__(self, log_dir: str | os.PathLike, *, what: str = "tensorboard"):
        self.log_dir = check_log_dir(log_dir, what)
        writer_class = summary_writer_class()
        self.writer = writer_class(self.log_dir)
        self._start_written = False

    def __call__(self, result, trainer) -> None:
        add = self.writer.add_scalar
        step = result.epoch
        if not self._start_written and getattr(trainer, "start_metrics", None):  # a closed-form start: epoch 0
            for name, value in trainer.start_metrics.items():
                add(f"metrics/{name}", float(value), 0)
        self._start_written = True
        add("loss/training", float(result.training_error), step)
        if result.validation_error is not None:
            add("loss/validation", float(result.validation_error), step)
        if result.regularization_error:
            add("loss/regularization", float(result.regularization_error), step)
        add("learning_rate", float(result.learning_rate), step)
        for name, value in result.metrics.items():
            add(f"metrics/{name}", float(value), step)
        add("examples_per_second", float(result.examples_per_second), step)
        for name, value in result.extra.items():
            if isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value):
                add(f"extra/{name}", float(value), step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()

    def __enter__(self) -> "TensorBoardLogger":
        return self

    def __exit__(self, *exc) -> bool:
        self.close()
        return False
