"""Progress of long work wherever its output goes: a live bar on a terminal (rich), a line every
few seconds anywhere else (a log file, a pipe, CI, a notebook).

    with Progress(n_examples, "Epoch 3") as progress:
        for batch in batches:
            ...
            progress.advance(len(batch), loss=lambda: f"{float(loss_sum) / seen:.5g}")

Off a terminal a line reads ``Epoch 3: 40,960/138,493 examples (30%), 3,412 examples/s, loss
0.12345, 29 s left``, the first after ``every`` seconds and then one every ``every`` seconds
(default: $DESTINY_PROGRESS_SECONDS, else 10); work shorter than that prints none. Extra
fields (``loss=``) are functions, called only when a line or the bar is drawn: reading a loss
from the GPU is a host sync, so it happens at most twice a second on the bar and once a line.

The terminal test is the console's (``console.is_terminal``), else stderr's ``isatty``: a
notebook's stderr is not a terminal, so a notebook gets lines, which it shows as they come.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Callable

ENV = "DESTINY_PROGRESS_SECONDS"
DEFAULT_SECONDS = 10.0
BAR_REFRESH_SECONDS = 0.5  # fields of the bar (rate, loss) are recomputed at most this often


def line_interval() -> float:
    """Seconds between progress lines off a terminal: $DESTINY_PROGRESS_SECONDS, else 10."""
    text = os.environ.get(ENV, "").strip()
    if not text:
        return DEFAULT_SECONDS
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not seconds >= 0:  # also NaN
        from destiny.errors import UsageError

        raise UsageError(f"${ENV}={text!r}: give the seconds between progress lines as a number ≥ 0 "
                         f"(default {DEFAULT_SECONDS:g})")
    return seconds


def duration(seconds: float) -> str:
    """'42 s', '3 min 05 s', '2 h 07 min'."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


class Progress:
    """A unit of long work of ``total`` items (examples, samples, trials) named ``label``.

    enabled: False shows nothing. console: a rich Console (or a function returning one) the
    bar draws on and whose file the lines go to (default: stderr). every: seconds between
    lines off a terminal (default ``line_interval()``). clock: seconds as a float (tests give a
    fake one). terminal: force the bar (True) or the lines (False); None asks the console."""

    def __init__(self, total: int, label: str, *, unit: str = "examples", enabled: bool = True, console=None,
                 every: float | None = None, clock: Callable[[], float] = time.perf_counter,
                 terminal: bool | None = None):
        self.total, self.label, self.unit, self.enabled = int(total), label, unit, enabled
        self.console, self.clock, self.terminal = console, clock, terminal
        self.every = line_interval() if every is None and enabled else every
        self.done = 0
        self.lines = 0  # lines written (off a terminal)
        self._bar = None
        self._stream = None

    # -- context ------------------------------------------------------------------------------

    def __enter__(self) -> "Progress":
        if not self.enabled:
            return self
        console = self.console() if callable(self.console) else self.console
        terminal = self.terminal
        if terminal is None:
            terminal = console.is_terminal if console is not None else _isatty(sys.stderr)
        self._start = self._last = self._drawn = self.clock()
        self._first = self.done  # a resumed epoch starts part way: the rate counts this run's items only
        if terminal:
            self._open_bar(console)
        else:
            self._stream = console.file if console is not None else sys.stderr
        return self

    def __exit__(self, *exc) -> bool:
        if self._bar is not None:
            self._bar.__exit__(*exc)
            self._bar = None
        return False

    def _open_bar(self, console) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
        from rich.progress import Progress as Bar

        self._bar = Bar(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[status]}"), TimeRemainingColumn(),
                        console=console or Console(stderr=True, highlight=False), transient=True)
        self._bar.__enter__()
        self._task = self._bar.add_task(self.label, total=self.total, completed=self.done, status="")

    # -- reporting ----------------------------------------------------------------------------

    def start_at(self, done: int) -> "Progress":
        """Items already done before this run (a resumed epoch); call before entering."""
        self.done = int(done)
        return self

    def advance(self, count: int, **fields: Callable[[], str]) -> None:
        """``count`` more items done; ``fields``: name → function giving its text (called only
        when drawn)."""
        self.done += int(count)
        if not self.enabled or (self._bar is None and self._stream is None):
            return
        now = self.clock()
        if self._bar is not None:
            status = None
            if now - self._drawn >= BAR_REFRESH_SECONDS or self.done >= self.total:
                self._drawn = now
                status = self._status(now, fields, unit="ex" if self.unit == "examples" else self.unit)
            self._bar.update(self._task, completed=self.done, **({} if status is None else {"status": status}))
        elif now - self._last >= self.every and self.done < self.total:
            self._last = now
            self.write(self.line(now, fields))

    def line(self, now: float, fields: dict) -> str:
        """``label: done/total unit (p%), rate unit/s, fields…, T left``."""
        share = f" ({self.done / self.total:.0%})" if self.total else ""
        text = f"{self.label}: {self.done:,}/{self.total:,} {self.unit}{share}, {self._status(now, fields)}"
        rate = self._rate(now)
        if rate > 0 and self.total > self.done:
            text += f", {duration((self.total - self.done) / rate)} left"
        return text

    def write(self, text: str) -> None:
        print(text, file=self._stream, flush=True)
        self.lines += 1

    def _rate(self, now: float) -> float:
        return (self.done - self._first) / max(now - self._start, 1e-9)

    def _status(self, now: float, fields: dict, unit: str | None = None) -> str:
        parts = [f"{self._rate(now):,.0f} {unit or self.unit}/s"]
        parts += [f"{name} {value()}" for name, value in fields.items()]
        return ", ".join(parts)


def _isatty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False
