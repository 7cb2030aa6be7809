"""The live table of ``destiny.tune``: one row a trial (number, recipe, key parameters,
epochs, NDCG@100, P@10, seconds, best so far), redrawn as trials start, report and end.

Shown when asked (``progress=True``) or by default (``progress=None``); ``progress=False``
shows nothing. On a terminal the table is redrawn live (rich, on stderr); anywhere else (a log,
a pipe, CI, a notebook) each trial's end is a line, a trial starting or validating an epoch is a
line when nothing was printed for 10 s (``destiny.progress.line_interval``), and the final
table is printed at the end.
"""

from __future__ import annotations

import sys
import time

_STATE = {"COMPLETE": "", "PRUNED": " (pruned)", "FAIL": " (failed)"}
_SHORT = {"hidden": "H", "latent": "L", "dropout": "p", "denoising": "p", "beta": "β", "anneal_epochs": "anneal",
          "alpha": "α", "batch_size": "b", "lam": "λ", "lam_n": "λn", "weight_decay": "wd", "hidden_dropout": "ph"}


def short(values: dict) -> str:
    """The key parameters in a table cell: "H 600 p .5 α 1e-03 b 512"."""
    def fmt(v):
        if isinstance(v, float):
            return f"{v:.0e}" if v and abs(v) < 0.01 else f"{v:.3g}".replace("0.", ".", 1)
        return str(v)

    return " ".join(f"{_SHORT.get(k, k)} {fmt(v)}" for k, v in values.items())


class TrialTable:
    """Rows of trials, redrawn in a rich ``Live`` display while the search runs."""

    def __init__(self, progress: bool | None, monitor: str = "ndcg@100", console=None, max_rows: int = 30,
                 every: float | None = None, clock=time.perf_counter):
        self.enabled = progress is None or bool(progress)
        self.monitor, self.max_rows = monitor, max_rows
        self.rows: dict[int, dict] = {}
        self.best: float | None = None
        self._console = console
        self._live = None
        self._lines = None  # the console lines go to, off a terminal
        self.every, self.clock = every, clock

    def __enter__(self) -> "TrialTable":
        if self.enabled:
            from rich.console import Console

            console = self._console or Console(stderr=True, highlight=False)
            if console.is_terminal:
                from rich.live import Live

                self._live = Live(self._render(), console=console, refresh_per_second=4, transient=False)
                self._live.__enter__()
            else:
                from destiny.progress import line_interval

                self._lines, self._last = console, float("-inf")  # the first event is a line
                self.every = line_interval() if self.every is None else self.every
        return self

    def __exit__(self, *exc) -> bool:
        if self._live is not None:
            self._live.update(self._render())
            self._live.__exit__(*exc)
            self._live = None
        if self._lines is not None:
            if self.rows:
                self._lines.print(self._render())
            self._lines = None
        return False

    def start(self, number: int, recipe: str, values: dict, device: str = "") -> None:
        self.rows[number] = {"recipe": recipe, "params": short(values), "epochs": "", "value": None,
                             "p10": None, "seconds": None, "state": "running", "device": device}
        self._refresh()
        self._say(f"trial {number}: {recipe} ({self.rows[number]['params']}) started"
                  + (f" on {device}" if device else ""), always=False)

    def epoch(self, number: int, epoch: int, value: float) -> None:
        row = self.rows.get(number)
        if row is not None:
            row["epochs"], row["value"] = str(epoch), value if row["value"] is None else max(row["value"], value)
            self._refresh()
            self._say(f"trial {number}: {row['recipe']}, epoch {epoch}, {self.monitor} {value:.4f}", always=False)

    def finish(self, outcome) -> None:
        row = self.rows.setdefault(outcome.number, {"recipe": outcome.recipe, "params": short(outcome.params),
                                                    "device": outcome.device})
        best = f"{outcome.best_epoch}/" if outcome.best_epoch is not None else ""
        row.update(epochs=f"{best}{outcome.epochs}", value=outcome.value, p10=outcome.metrics.get("precision@10"),
                   seconds=outcome.seconds, state=outcome.state)
        if outcome.state == "COMPLETE" and outcome.value is not None and (self.best is None or outcome.value > self.best):
            self.best = outcome.value
        row["best"] = self.best
        self._refresh()
        if self._lines is not None:
            state = _STATE.get(outcome.state, f" ({outcome.state.lower()})")
            value = "" if outcome.value is None else f", {self.monitor} {outcome.value:.4f}"
            p10 = "" if row["p10"] is None else f", P@10 {row['p10']:.4f}"
            best_so_far = "" if self.best is None else f"; best so far {self.best:.4f}"
            self._say(f"trial {outcome.number}: {row['recipe']}{state} ({row['params']}){value}{p10}, epochs "
                      f"{row['epochs']}, {outcome.seconds:.1f} s{best_so_far}", always=True)

    def _say(self, text: str, always: bool) -> None:
        """A line off a terminal: always, or when nothing was printed for ``every`` seconds."""
        if self._lines is None:
            return
        now = self.clock()
        if always or now - self._last >= self.every:
            self._last = now
            self._lines.print(text, markup=False, highlight=False, soft_wrap=True)

    def _refresh(self) -> None:
        if self._live is not None:
            self._live.update(self._render())

    def _render(self):
        from rich.table import Table

        table = Table(title="destiny tune", title_justify="left", expand=False)
        for name, justify in (("trial", "right"), ("recipe", "left"), ("parameters", "left"),
                              ("epochs", "right"), (self.monitor, "right"), ("P@10", "right"),
                              ("s", "right"), ("best", "right")):
            table.add_column(name, justify=justify, overflow="fold" if name == "parameters" else "ellipsis",
                             no_wrap=name != "parameters")

        def num(v, digits=4):
            return "" if v is None else f"{v:.{digits}f}"

        for number in sorted(self.rows)[-self.max_rows:]:
            row = self.rows[number]
            state = row.get("state", "")
            recipe = row["recipe"] + (_STATE.get(state, "") if state != "running" else " …")
            table.add_row(str(number), recipe, row["params"], row.get("epochs", ""), num(row.get("value")),
                          num(row.get("p10")), num(row.get("seconds"), 1), num(row.get("best")))
        return table
