"""The live table of ``destiny.tune``: one row a trial (number, recipe, key parameters,
epochs, NDCG@100, P@10, seconds, best so far), redrawn as trials start, report and end.

Drawn with rich on stderr, only when asked (``progress=True``) or when stderr is a terminal
(``progress=None``); otherwise every method does nothing.
"""

from __future__ import annotations

import sys

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

    def __init__(self, progress: bool | None, monitor: str = "ndcg@100", console=None, max_rows: int = 30):
        self.enabled = sys.stderr.isatty() if progress is None else bool(progress)
        self.monitor, self.max_rows = monitor, max_rows
        self.rows: dict[int, dict] = {}
        self.best: float | None = None
        self._console = console
        self._live = None

    def __enter__(self) -> "TrialTable":
        if self.enabled:
            from rich.console import Console
            from rich.live import Live

            console = self._console or Console(stderr=True, highlight=False)
            self._live = Live(self._render(), console=console, refresh_per_second=4, transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc) -> bool:
        if self._live is not None:
            self._live.update(self._render())
            self._live.__exit__(*exc)
            if not self._live.console.is_terminal:  # Live leaves its last line open there
                self._live.console.line()
            self._live = None
        return False

    def start(self, number: int, recipe: str, values: dict, device: str = "") -> None:
        self.rows[number] = {"recipe": recipe, "params": short(values), "epochs": "", "value": None,
                             "p10": None, "seconds": None, "state": "running", "device": device}
        self._refresh()

    def epoch(self, number: int, epoch: int, value: float) -> None:
        row = self.rows.get(number)
        if row is not None:
            row["epochs"], row["value"] = str(epoch), value if row["value"] is None else max(row["value"], value)
            self._refresh()

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
