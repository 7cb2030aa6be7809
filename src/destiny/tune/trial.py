"""One trial of ``destiny.tune``: a ``Recommender`` fitted on the training split with early
stopping on the validation split, under a time limit and a pruner.

``fit_trial`` trains what ``Recommender.fit(train, validation=…)`` trains (``Recommender._run``)
(a test checks that both give the same network), without the validation loss when a
ranking metric is monitored (it changes no weight, and costs a forward pass over every user
an epoch), and adds two Trainer hooks:

- after each epoch (``Trainer.callbacks``): the monitored metric goes to ``report(epoch,
  value)`` (Optuna's ``trial.report`` and ``should_prune``; True stops the trial as pruned);
  the trial also stops when the next epoch, as long as the last one, would end after its
  deadline. Either way the Trainer ends on its best validated epoch's weights.
- after each batch (``Trainer.batch_callbacks``): past the deadline the epoch is abandoned
  (``_OutOfTime``) and the best validated epoch's weights are put back; a trial that has no
  validated epoch yet is then dropped — unless ``finish_first_epoch`` (the run has no model
  yet), which lets its first epoch end whatever the clock says.

A time check is a ``time.monotonic()`` call on the host: no device sync.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import asdict, dataclass, field
from typing import Callable

from destiny.errors import NumericalWarning


@dataclass
class Outcome:
    """What one trial did (a row of ``trials_``). state: Optuna's COMPLETE, PRUNED or FAIL;
    stopped: why training ended ("epochs", "patience", "pruned", "budget", "error"); value:
    the monitored metric at the best epoch; metrics: the validation metrics of that epoch;
    epochs: epochs trained; seconds: the trial's wall time, setup included."""

    number: int
    recipe: str
    params: dict
    state: str = "RUNNING"
    stopped: str = ""
    best_epoch: int | None = None
    epochs: int = 0
    value: float | None = None
    metrics: dict = field(default_factory=dict)
    seconds: float = 0.0
    error: str | None = None
    device: str = ""
    first_epoch_seconds: float | None = None
    device_error: str | None = None  # the device can run nothing more (``device_broken``)
    standard_error: float | None = None  # of ``value``, over the validation users

    def as_dict(self) -> dict:
        return asdict(self)


class _OutOfTime(Exception):
    """Raised by the batch hook past the deadline; caught by ``fit_trial``."""


class _Watch:
    """The Trainer hooks of one trial (module docstring)."""

    def __init__(self, deadline: float, report: Callable[[int, float], bool] | None, finish_first_epoch: bool):
        self.deadline, self.report, self.finish_first_epoch = deadline, report, finish_first_epoch
        self.start = self.last = time.monotonic()
        self.pruned = self.out_of_time = False
        self.first_epoch_s: float | None = None

    def after_epoch(self, result, trainer) -> None:
        now = time.monotonic()
        epoch_s, self.last = now - self.last, now
        if self.first_epoch_s is None and result.metrics:
            self.first_epoch_s = now - self.start
        value = trainer.stopping.value(result)
        if value is not None and self.report is not None and self.report(result.epoch, value):
            self.pruned = trainer.stopping.should_stop = True
        if now + epoch_s > self.deadline:  # the next epoch would end past the deadline
            self.out_of_time = trainer.stopping.should_stop = True

    def after_batch(self, trainer, epoch: int, batches: int) -> None:
        if time.monotonic() <= self.deadline:
            return
        if self.finish_first_epoch and trainer.stopping.best_epoch is None:
            return
        self.out_of_time = True
        raise _OutOfTime()


def _ranking_monitor(monitor: str) -> bool:
    """Whether early stopping follows a ranking metric (not the validation loss)."""
    from destiny.train.validation import LOSS_MONITOR, metric_name

    return metric_name(monitor) != LOSS_MONITOR


def fit_trial(params: dict, train, validation, *, number: int, recipe: str, values: dict, time_left: float,
              report: Callable[[int, float], bool] | None = None, finish_first_epoch: bool = False):
    """(fitted Recommender or None, Outcome) of ``Recommender(**params)`` trained on ``train``
    with early stopping on ``validation`` (SparseDatasets of the same users), for at most
    ``time_left`` seconds. The Recommender is None unless the trial has a validated epoch and
    was not pruned; it holds its best epoch's weights, ``history_`` and ``best_epoch_``."""
    from destiny.recommender import Recommender

    started = time.monotonic()
    outcome = Outcome(number, recipe, dict(values), device=str(params.get("device", "")))
    watch = _Watch(started + max(time_left, 0.0), report, finish_first_epoch)
    model = Recommender(**params)
    trainer = run = None
    try:  # Recommender.fit(train, validation=validation) with the watch's hooks
        # the validation loss, a forward pass over every user an epoch, is not needed
        run = model._run(train, validation, callbacks=[watch.after_epoch],
                         validation_loss=not _ranking_monitor(model.monitor))
        trainer = run.trainer
        trainer.batch_callbacks.append(watch.after_batch)
        try:
            with warnings.catch_warnings():  # a diverging trial scores low: the table says it, not a warning
                warnings.simplefilter("ignore", NumericalWarning)
                trainer.fit(run.sets, run.epochs, run.check)
        except _OutOfTime:
            trainer.stopping.restore(run.network)
    except Exception as exc:  # noqa: BLE001 — a failed trial is a result (NaN, out of memory, bad settings)
        outcome.state, outcome.stopped = "FAIL", "error"
        outcome.error = f"{type(exc).__name__}: {exc}"
        outcome.epochs = trainer.epoch if trainer is not None else 0
        outcome.seconds = time.monotonic() - started
        outcome.device_error = device_broken(outcome.device)
        return None, outcome
    stopping = trainer.stopping
    outcome.first_epoch_seconds = watch.first_epoch_s
    outcome.epochs = trainer.epoch
    outcome.best_epoch = stopping.best_epoch
    outcome.seconds = time.monotonic() - started
    if stopping.best_epoch is not None:
        outcome.value = float(stopping.best)
        if stopping.best_epoch == 0:
            outcome.metrics, errors = dict(trainer.start_metrics or {}), trainer.start_errors or {}
        else:
            best = next((r for r in trainer.history if r.epoch == stopping.best_epoch), None)
            outcome.metrics = dict(best.metrics) if best is not None else {}
            errors = best.extra.get("standard_errors", {}) if best is not None else {}
        outcome.standard_error = errors.get(stopping.monitor)
    if watch.pruned:
        outcome.state, outcome.stopped = "PRUNED", "pruned"
    elif outcome.value is None or not math.isfinite(outcome.value):
        outcome.state, outcome.stopped = "PRUNED", "budget" if watch.out_of_time else "epochs"
    else:
        outcome.state = "COMPLETE"
        outcome.stopped = "budget" if watch.out_of_time else "patience" if stopping.should_stop else "epochs"
    if outcome.state != "COMPLETE":
        return None, outcome
    return model._adopt(run), outcome


def device_broken(device: str) -> str | None:
    """Why ``device`` can run nothing more, or None: after some CUDA errors (an illegal memory
    access, a launch failure, "unknown error") every later call in the process fails with the
    same error, so a search that went on would record nothing but failed trials. A probe: one
    tiny kernel and a synchronisation (after a failed trial only)."""
    if not str(device).startswith("cuda"):
        return None
    import torch

    try:
        torch.ones(1, device=device).add_(1)
        torch.cuda.synchronize(device)
    except Exception as exc:  # noqa: BLE001 — whatever the device raises is the answer
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return None


def free_memory(device: str) -> None:
    """Give back what a finished trial held: its Trainer's reference cycles (step runner,
    captured CUDA graph, optimizer state) are collected, and the CUDA caching allocator
    returns their blocks, so that the next trial has the whole GPU."""
    import gc

    gc.collect()
    if str(device).startswith("cuda"):
        import torch

        torch.cuda.empty_cache()
