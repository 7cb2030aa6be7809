"""Training history to JSON (`destiny train --history`, write/read_history) and `destiny plot`."""

from __future__ import annotations

import importlib.util
import json
import math

import pytest

from destiny.cli.main import main
from destiny.data import SparseDataset, write_netcdf
from destiny.errors import DataError
from destiny.train.history import read_history, write_history
from destiny.train.trainer import EpochResult
from tests.helpers import clustered_dataset

CONFIG = {"Name": "tiny", "ErrorFunction": "ScaledMarginalCrossEntropy",
          "Layers": [{"Name": "Input", "N": "auto", "DataSet": "input", "Sparse": True},
                     {"Name": "Hidden", "N": 8, "Activation": "Relu"},
                     {"Name": "Output", "N": "auto", "DataSet": "output", "Sparse": True}]}

needs_matplotlib = pytest.mark.skipif(importlib.util.find_spec("matplotlib") is None,
                                      reason="matplotlib is not installed (pip install destiny[plot])")


def results(n: int = 3) -> list[EpochResult]:
    return [EpochResult(e, 1.0 / e, 0.0, 1.2 / e if e > 1 else None, 0.01, 0.5, 200.0, {"P@10": 0.1 * e})
            for e in range(1, n + 1)]


def test_write_and_read_back(tmp_path):
    rows = results()
    rows.append(EpochResult(4, math.nan, 0.0, math.inf, 0.01, 0.5, 200.0))  # a diverged epoch
    write_history(tmp_path / "h.json", rows, {"note": "test"})
    text = (tmp_path / "h.json").read_text()
    assert "NaN" not in text and "Infinity" not in text  # standard JSON
    history = read_history(tmp_path / "h.json")
    assert history.meta["note"] == "test" and "destiny" in history.meta
    assert [e["epoch"] for e in history.epochs] == [1, 2, 3, 4]
    assert history.epochs[1]["extra"] == {"P@10": pytest.approx(0.2)}
    assert history.epochs[0]["validation_error"] is None and history.epochs[3]["training_error"] is None
    (tmp_path / "list.json").write_text(json.dumps([r.as_dict() for r in results(2)]))  # a bare list
    assert len(read_history(tmp_path / "list.json").epochs) == 2
    (tmp_path / "bad.json").write_text('{"epochs": 3}')
    with pytest.raises(DataError, match="not a training history"):
        read_history(tmp_path / "bad.json")


def test_train_history_option_writes_every_epoch(tmp_path):
    d = clustered_dataset(64, 24, seed=1)
    for name in ("input", "output"):
        write_netcdf(tmp_path / f"{name}.nc", SparseDataset(name, (24,), d.offsets, d.indices))
    (tmp_path / "net.json").write_text(json.dumps(CONFIG))
    status = main(["train", "-c", str(tmp_path / "net.json"), "-i", str(tmp_path / "input.nc"),
                   "-o", str(tmp_path / "output.nc"), "-n", str(tmp_path / "net.nc"), "-b", "16", "-e", "2",
                   "--optimizer", "adam", "--alpha", "0.01", "--validation", str(tmp_path / "input.nc"),
                   "--validation", str(tmp_path / "output.nc"), "--history", str(tmp_path / "h.json"), "--quiet"])
    assert status == 0
    history = read_history(tmp_path / "h.json")
    assert [e["epoch"] for e in history.epochs] == [1, 2]
    assert all(e["validation_error"] is not None for e in history.epochs)
    assert history.meta["optimizer"] == "adam" and history.meta["batch_size"] == 16
    assert history.meta["network"] == "tiny" and history.meta["config"].endswith("net.json")


@needs_matplotlib
def test_plot_draws_errors_and_extra_metrics(tmp_path, capsys):
    write_history(tmp_path / "a.json", results(4), {"network": "tiny"})
    write_history(tmp_path / "b.json", results(3))
    assert main(["plot", str(tmp_path / "a.json"), "-o", str(tmp_path / "curves.png")]) == 0
    png = (tmp_path / "curves.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    assert "2 panel(s)" in capsys.readouterr().out  # errors, P@10
    assert main(["plot", str(tmp_path / "a.json"), str(tmp_path / "b.json"), "-o", str(tmp_path / "c.svg"),
                 "--log"]) == 0
    assert (tmp_path / "c.svg").read_text().lstrip().startswith("<?xml")
    assert main(["plot", str(tmp_path / "a.json"), "-o", str(tmp_path / "c.txt")]) == 2
    assert ".png, .svg" in capsys.readouterr().err


def test_plot_without_matplotlib_names_the_extra(tmp_path, capsys, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError("No module named 'matplotlib'")
        return real_import(name, *args, **kwargs)

    write_history(tmp_path / "a.json", results(2))
    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    assert main(["plot", str(tmp_path / "a.json"), "-o", str(tmp_path / "curves.png")]) == 2
    assert "pip install destiny[plot]" in capsys.readouterr().err
    assert not (tmp_path / "curves.png").exists()
