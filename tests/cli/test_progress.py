"""Progress wherever the output goes (destiny.progress): a line every few seconds off a
terminal (logs, pipes, CI, notebooks), the live bar on one; train, predict, evaluate, tune and
the Python API all report through it."""

from __future__ import annotations

import io

import numpy as np
import pytest
from rich.console import Console

from destiny.cli.main import main
from destiny.errors import UsageError
from destiny.progress import Progress, duration, line_interval
from tests.hardening.helpers import train_args, write_problem


class Clock:
    """A fake clock: advanced by hand."""

    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _log() -> tuple[Console, io.StringIO]:
    stream = io.StringIO()
    return Console(file=stream, width=200, force_terminal=False), stream


def test_lines_every_interval_with_rate_fields_and_time_left():
    console, stream = _log()
    clock, calls = Clock(), []

    def loss():
        calls.append(1)
        return "0.25"

    with Progress(1000, "Epoch 2", console=console, every=10, clock=clock) as progress:
        for _ in range(9):
            clock.now += 4
            progress.advance(100, loss=loss)
    lines = stream.getvalue().splitlines()
    # at 12 s (300 done), 24 s (600 done), 36 s (900 done): one line each 10 s, none after the last item
    assert lines == ["Epoch 2: 300/1,000 examples (30%), 25 examples/s, loss 0.25, 28 s left",
                     "Epoch 2: 600/1,000 examples (60%), 25 examples/s, loss 0.25, 16 s left",
                     "Epoch 2: 900/1,000 examples (90%), 25 examples/s, loss 0.25, 4 s left"]
    assert len(calls) == 3  # a field (a host sync in training) is read only when a line is written


def test_short_work_prints_no_line_and_disabled_prints_nothing():
    console, stream = _log()
    clock = Clock()
    with Progress(10, "Scoring", unit="samples", console=console, every=10, clock=clock) as progress:
        clock.now += 9
        progress.advance(10)
    with Progress(10, "Scoring", console=console, every=0, clock=clock, enabled=False) as progress:
        clock.now += 60
        progress.advance(5)
    assert stream.getvalue() == ""


def test_a_resumed_epoch_counts_from_where_it_stopped():
    console, stream = _log()
    clock = Clock()
    with Progress(1000, "Epoch 1", console=console, every=1, clock=clock).start_at(500) as progress:
        clock.now += 2
        progress.advance(100)
    assert stream.getvalue().splitlines() == ["Epoch 1: 600/1,000 examples (60%), 50 examples/s, 8 s left"]


def test_the_bar_on_a_terminal():
    stream = io.StringIO()
    console = Console(file=stream, width=120, force_terminal=True)
    with Progress(100, "Epoch 1", console=console, every=0) as progress:
        for _ in range(4):
            progress.advance(25, loss=lambda: "0.5")
    assert progress.lines == 0 and "Epoch 1" in stream.getvalue()


def test_the_interval_from_the_environment(monkeypatch):
    monkeypatch.delenv("DESTINY_PROGRESS_SECONDS", raising=False)
    assert line_interval() == 10
    monkeypatch.setenv("DESTINY_PROGRESS_SECONDS", "2.5")
    assert line_interval() == 2.5
    monkeypatch.setenv("DESTINY_PROGRESS_SECONDS", "soon")
    with pytest.raises(UsageError, match="DESTINY_PROGRESS_SECONDS='soon'"):
        line_interval()
    assert [duration(s) for s in (4.4, 185, 7620)] == ["4 s", "3 min 05 s", "2 h 07 min"]


def test_train_reports_inside_epochs_when_stderr_is_not_a_terminal(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("DESTINY_PROGRESS_SECONDS", "0")  # every minibatch
    write_problem(tmp_path, users=64)
    args = [a for a in train_args(tmp_path, "net.nc", "-e", "2") if a != "--quiet"]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "Epoch 1: 8/64 examples (12%)" in err and "Epoch 2: 56/64 examples (88%)" in err
    assert "examples/s, loss " in err and "left" in err
    assert main(train_args(tmp_path, "quiet.nc", "-e", "1")) == 0  # --quiet: no progress
    assert "examples/s" not in capsys.readouterr().err


def test_predict_and_evaluate_report_progress(tmp_path, capsys, monkeypatch):
    from destiny.data import SparseDataset, write_index, write_netcdf

    monkeypatch.setenv("DESTINY_PROGRESS_SECONDS", "0")
    write_problem(tmp_path, users=64)
    assert main(train_args(tmp_path, "net.nc", "-e", "1")) == 0
    write_index(tmp_path / "items", {f"i{j}": j for j in range(64)})
    common = ["-n", str(tmp_path / "net.nc"), "--input-nc", str(tmp_path / "input.nc"), "-o", str(tmp_path / "items"),
              "-b", "16"]
    capsys.readouterr()
    assert main(["predict", *common, "-s", str(tmp_path / "recs"), "-k", "5"]) == 0
    assert "Scoring: 16/64 samples (25%)" in capsys.readouterr().err
    held = SparseDataset("output", (64,), np.arange(65, dtype=np.int64), np.arange(64, dtype=np.int32))
    write_netcdf(tmp_path / "held.nc", held)
    assert main(["evaluate", *common, "-t", str(tmp_path / "held.nc"), "-k", "5"]) == 0
    assert "Scoring: 48/64 samples (75%)" in capsys.readouterr().err


def test_recommender_fit_reports_progress_off_a_terminal(capsys, monkeypatch):
    import scipy.sparse as sp

    from destiny import Recommender

    monkeypatch.setenv("DESTINY_PROGRESS_SECONDS", "0")
    rng = np.random.default_rng(0)
    items = sp.random(40, 30, density=0.2, format="csr", random_state=rng, dtype=np.float32)
    items.data[:] = 1
    Recommender(epochs=1, batch_size=10, device="cpu").fit(items)  # progress=True, the default (as implicit's)
    assert "Epoch 1: 10/40 examples (25%)" in capsys.readouterr().err
    Recommender(epochs=1, batch_size=10, device="cpu", progress=False).fit(items)
    assert capsys.readouterr().err == ""


def test_tune_prints_a_line_a_trial_off_a_terminal():
    from destiny.tune.table import TrialTable
    from destiny.tune.trial import Outcome

    console, stream = _log()
    clock = Clock()
    with TrialTable(None, console=console, every=10, clock=clock) as table:
        table.start(0, "mult_dae", {"hidden": 16}, "cpu")  # nothing printed for 10 s: a line
        clock.now += 3
        table.epoch(0, 1, 0.2)  # 3 s after the last line: none
        clock.now += 30
        table.epoch(0, 2, 0.3)
        table.finish(Outcome(0, "mult_dae", {"hidden": 16}, state="COMPLETE", best_epoch=2, epochs=2, value=0.3,
                             metrics={"precision@10": 0.1}, seconds=33.0))
    lines = stream.getvalue().splitlines()
    assert lines[:3] == ["trial 0: mult_dae (H 16) started on cpu",
                         "trial 0: mult_dae, epoch 2, ndcg@100 0.3000",
                         "trial 0: mult_dae (H 16), ndcg@100 0.3000, P@10 0.1000, epochs 2/2, 33.0 s; best so far 0.3000"]
    assert "destiny tune" in stream.getvalue()  # the final table
    console, stream = _log()
    with TrialTable(False, console=console) as table:
        table.start(0, "mult_dae", {"hidden": 16})
    assert stream.getvalue() == ""
