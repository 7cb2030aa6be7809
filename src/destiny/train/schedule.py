"""Learning-rate schedules (the JSON's ``LearningRateSchedule``, a Destiny extension): warmup,
then Constant, Linear, Cosine or Step, on top of DSSTNE's ``Decay``.

With s the updates done so far, W the warmup, U the run's number of updates and r the final
ratio, the rate of update s + 1 is α·w(s)·f(s) / (1 + Decay·s):

    w(s) = (s + 1)/W for s < W, else 1
    p    = min(1, max(0, s − W) / max(1, U − W))
    f(s) = 1                                  Constant (DSSTNE's schedule)
           1 − (1 − r)·p                      Linear
           r + (1 − r)·½(1 + cos πp)          Cosine
           γ^⌊max(0, s − W) / E⌋              Step, E = Every in updates

``Schedule.factor`` is the spec (host, float64) and the torch optimizers' path; the fused
optimizer computes the same w·f on the device from its step counter
(``destiny.ops.triton.optimizer.scalars_kernel``, ``Schedule.constants``), so a training step
captured in a CUDA graph follows the schedule without the host. U (and E for a Step schedule
counted in epochs) is known only when training starts: ``Trainer.fit`` calls
``DsstneOptimizer.plan(updates, updates_per_epoch)``; a custom loop does the same.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from destiny.config.enums import ScheduleKind, ScheduleUnit
from destiny.errors import UsageError


@dataclass(frozen=True)
class Schedule:
    """A learning-rate schedule and, once planned, the run's length.

    kind, warmup (updates), final_ratio, every (in ``unit``), unit, gamma: the JSON's
    ``LearningRateSchedule``. total: the run's updates U; per_epoch: updates an epoch (None
    until ``planned``)."""

    kind: ScheduleKind = ScheduleKind.CONSTANT
    warmup: float = 0.0
    final_ratio: float = 0.0
    every: float = 1.0
    unit: ScheduleUnit = ScheduleUnit.EPOCHS
    gamma: float = 0.1
    total: int | None = None
    per_epoch: int | None = None

    @classmethod
    def of(cls, config) -> "Schedule":
        """From a ``config.schema.LearningRateSchedule`` (None: Constant), or a Schedule as is."""
        if config is None:
            return cls()
        if isinstance(config, Schedule):
            return config
        return cls(config.kind, float(config.warmup_steps), float(config.final_ratio), float(config.every),
                   config.unit, float(config.gamma))

    def planned(self, total: int, per_epoch: int | None = None) -> "Schedule":
        """The same schedule for a run of ``total`` updates of ``per_epoch`` an epoch."""
        if total < 0 or (per_epoch is not None and per_epoch < 1):
            raise UsageError(f"a run of {total} updates, {per_epoch} an epoch: both must be positive")
        return dataclasses.replace(self, total=int(total), per_epoch=None if per_epoch is None else int(per_epoch))

    @property
    def constant(self) -> bool:
        """Whether every factor is 1 (DSSTNE's own schedule: only Decay changes α)."""
        return self.kind == ScheduleKind.CONSTANT and self.warmup == 0

    def _needs(self) -> None:
        if self.kind in (ScheduleKind.LINEAR, ScheduleKind.COSINE) and self.total is None:
            raise UsageError(f"the {self.kind.json} learning-rate schedule needs the run's number of updates: "
                             "Trainer.fit plans it; a custom loop calls optimizer.plan(total_updates, "
                             "updates_per_epoch) before its first step")
        if self.kind == ScheduleKind.STEP and self.unit == ScheduleUnit.EPOCHS and self.per_epoch is None:
            raise UsageError("a Step learning-rate schedule counted in Epochs needs the updates an epoch: "
                             "Trainer.fit plans it; a custom loop calls optimizer.plan(total_updates, "
                             "updates_per_epoch), or use \"Unit\": \"Updates\"")

    def every_updates(self) -> float:
        """E: Every in updates."""
        self._needs()
        return self.every * self.per_epoch if self.unit == ScheduleUnit.EPOCHS else self.every

    def factor(self, step: int) -> float:
        """w(s)·f(s) for s = step updates done (float64): the spec of the device's factor."""
        if self.constant:
            return 1.0
        self._needs()
        s, warm = float(step), self.warmup
        if self.kind == ScheduleKind.STEP:
            f = self.gamma ** math.floor(max(0.0, s - warm) / self.every_updates())
        elif self.kind == ScheduleKind.CONSTANT:
            f = 1.0
        else:
            p = min(1.0, max(0.0, s - warm) / max(1.0, self.total - warm))
            r = self.final_ratio
            if self.kind == ScheduleKind.LINEAR:
                f = 1.0 - (1.0 - r) * p
            else:
                f = r + (1.0 - r) * 0.5 * (1.0 + math.cos(math.pi * p))
        return f * (s + 1.0) / warm if s < warm else f

    def constants(self) -> list[float]:
        """(W, U, r, E, γ): what the device's factor reads besides the step counter (U and E
        are 0 where the kind does not use them)."""
        if self.constant:
            return [0.0, 0.0, 0.0, 0.0, 1.0]
        self._needs()
        total = float(self.total) if self.kind in (ScheduleKind.LINEAR, ScheduleKind.COSINE) else 0.0
        every = self.every_updates() if self.kind == ScheduleKind.STEP else 0.0
        return [self.warmup, total, self.final_ratio, every, self.gamma]
