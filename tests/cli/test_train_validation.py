"""`destiny train --validation held.nc --monitor/--patience/--validate-every`: ranking metrics
each epoch, early stopping, the best epoch's weights written; `destiny plot` draws them."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

from destiny.cli.main import main
from destiny.data import SparseDataset, write_netcdf
from destiny.data.synth import synthesize
from destiny.io.network_file import read_network
from destiny.train.history import read_history

USERS, ITEMS = 200, 90
CONFIG = {"Version": 0.8, "Name": "planted", "ErrorFunction": "ScaledMarginalCrossEntropy",
          "Layers": [{"Name": "Input", "N": "auto", "DataSet": "input", "Sparse": True},
                     {"Name": "Hidden", "N": 16, "Activation": "Sigmoid"},
                     {"Name": "Output", "N": "auto", "DataSet": "output", "Sparse": True}]}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """input.nc / output.nc: the training rows; held.nc: 20% of each user's items as 'output'."""
    path = tmp_path_factory.mktemp("validation")
    d = synthesize(USERS, ITEMS, seed=1, mean_items=14)
    users = np.repeat(np.arange(USERS), np.diff(d.offsets))
    held = np.random.default_rng(0).random(len(d.indices)) < 0.2

    def rows(mask, name, n=USERS, width=ITEMS):
        counts = np.bincount(users[mask], minlength=USERS)[:n]
        offsets = np.concatenate([[0], np.cumsum(counts)])
        return SparseDataset(name, (width,), offsets, d.indices[mask][:offsets[-1]])

    write_netcdf(path / "input.nc", rows(~held, "input"))
    write_netcdf(path / "output.nc", rows(~held, "output"))
    write_netcdf(path / "held.nc", rows(held, "output"))
    write_netcdf(path / "short.nc", rows(held, "output", n=USERS - 10))
    write_netcdf(path / "wide.nc", rows(held, "output", width=ITEMS + 5))
    (path / "net.json").write_text(json.dumps(CONFIG))
    return path


def train(files, name, *extra, epochs=20):
    return main(["train", "-c", str(files / "net.json"), "-i", str(files / "input.nc"), "-o",
                 str(files / "output.nc"), "-n", str(files / name), "-b", "32", "-e", str(epochs), "--optimizer",
                 "adam", "--alpha", "0.02", "--quiet", "--force", *extra])


def test_early_stopping_writes_the_best_epoch_and_plot_draws_the_metrics(files, capsys, tmp_path):
    status = train(files, "es.nc", "--validation", str(files / "held.nc"), "--monitor", "NDCG@20", "--patience",
                   "2", "--history", str(tmp_path / "h.json"))
    out = capsys.readouterr().out
    assert status == 0
    lines = [line for line in out.splitlines() if line.startswith("Epoch")]
    assert all(", ndcg@20 " in line and "precision@10" in line and "validation error" in line for line in lines)
    history = read_history(tmp_path / "h.json")
    scores = [e["metrics"]["ndcg@20"] for e in history.epochs]
    best = 1 + int(np.argmax(scores))
    assert history.meta["monitor"] == "ndcg@20" and history.meta["best_epoch"] == best
    assert history.meta["stopped_early"] and len(scores) == best + 2 < 20
    assert f"Best ndcg@20 {max(scores):.6g} at epoch {best} (stopped early after epoch {best + 2})" in out
    written = read_network(files / "es.nc")
    assert written.info["best_epoch"] == best and written.info["epoch"] == best + 2
    # the file holds the best epoch's weights: those of a plain run of that many epochs
    assert train(files, "plain.nc", epochs=best) == 0
    assert read_network(files / "plain.nc").info["fingerprint"] == written.info["fingerprint"]

    if importlib.util.find_spec("matplotlib") is None:
        pytest.skip("matplotlib is not installed")
    assert main(["plot", str(tmp_path / "h.json"), "-o", str(tmp_path / "curves.png")]) == 0
    said = capsys.readouterr().out
    assert "ranking metrics ndcg@100, recall@100, recall_min@100, precision@10, ndcg@20" in said
    assert f"best epoch {best}" in said and "3 panel(s)" in said  # errors, ranking metrics, regularization
    assert (tmp_path / "curves.png").stat().st_size > 10_000


def test_validate_every_and_the_loss_as_monitor(files, capsys, tmp_path):
    status = train(files, "every.nc", "--validation", str(files / "held.nc"), "--validate-every", "2",
                   "--history", str(tmp_path / "h.json"), epochs=5)
    assert status == 0
    epochs = read_history(tmp_path / "h.json").epochs
    assert [bool(e["metrics"]) for e in epochs] == [False, True, False, True, True]  # and after the last
    assert read_network(files / "every.nc").info["best_epoch"] in (2, 4, 5)
    assert train(files, "loss.nc", "--validation", str(files / "held.nc"), "--monitor", "validation_error",
                 epochs=3) == 0
    assert "Best validation_error" in capsys.readouterr().out


@pytest.mark.parametrize("extra,message", [
    (["--monitor", "ndgc@10"], "unknown ranking metric 'ndgc@10'"),
    (["--monitor", "ndcg@0"], "must be a positive integer"),
    (["--patience", "-1"], "--patience -1: give a number of validations"),
    (["--validate-every", "0"], "--validate-every 0: give a positive number"),
    (["--validation", "short.nc", "--patience", "1"], "different numbers of examples ('output' 190, 'input' 200 "
                                                      "(training))"),
    (["--validation", "wide.nc", "--patience", "1"], "is 95 wide but the training dataset 'output' is 90"),
])
def test_bad_validation_options_exit_2_with_a_clear_message(files, capsys, extra, message):
    extra = [str(files / e) if e.endswith(".nc") else e for e in extra]
    if "--validation" not in extra:
        extra += ["--validation", str(files / "held.nc")]
    assert train(files, "bad.nc", *extra, epochs=1) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (files / "bad.nc").exists()


def test_ranking_flags_need_validation_data(files, capsys):
    assert train(files, "bad.nc", "--patience", "3", epochs=1) == 2
    assert "give them with --validation FILE.nc" in capsys.readouterr().err
