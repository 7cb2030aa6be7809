"""destiny tune: the command's files, and its errors (one line, exit status 2)."""

from __future__ import annotations

import json

import pytest

import destiny
from destiny.cli.main import main
from destiny.config import load_config
from destiny.data import read_netcdf, write_netcdf
from destiny.data.interop import from_scipy
from destiny.io.network_file import read_network

from .conftest import fingerprint, split

pytest.importorskip("optuna")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    train, validation = split(users=200, items=120)
    root = tmp_path_factory.mktemp("tune")
    write_netcdf(root / "train.nc", from_scipy(train, name="input"))
    write_netcdf(root / "val.nc", from_scipy(validation, name="output"))
    write_netcdf(root / "narrow.nc", from_scipy(split(users=200, items=100)[1], name="output"))
    write_netcdf(root / "few.nc", from_scipy(validation[:150], name="output"))
    return root, train, validation


def _args(root, *extra):
    return ["tune", "-i", str(root / "train.nc"), "--validation", str(root / "val.nc"), "-o", str(root / "best.json"),
            "-n", str(root / "best.nc"), *extra]


def test_tune_writes_the_best_network(files, capsys):
    root, train, _ = files
    status = main(_args(root, "--budget", "120", "--trials", "12", "--max-epochs", "4", "--patience", "1",
                        "--recipes", "ease_network,sigmoid_autoencoder", "--device", "cpu",
                        "--history", str(root / "trials.json"), "--quiet", "--force"))
    assert status == 0
    out = capsys.readouterr().out
    assert "12 trials (12 complete, 0 pruned, 0 failed). Best: trial" in out
    history = json.loads((root / "trials.json").read_text())
    recipes = [t["recipe"] for t in history["trials"]]
    first = recipes.index("sigmoid_autoencoder")  # START's order: the closed forms' line search, then the rest
    assert first >= 7 and recipes[:first] == ["ease_network"] * first
    best = history["trials"][history["best_trial"]]
    assert history["best_score"] == best["value"] and history["best_params"]["epochs"] == best["best_epoch"]
    config = load_config(root / "best.json")  # valid DSSTNE JSON
    assert json.loads((root / "best.json").read_text()) == history["best_params"]["config"]
    assert config.name == {"ease_network": "EASE", "sigmoid_autoencoder": "Autoencoder"}[best["recipe"]]
    network = read_network(root / "best.nc")
    assert int(network.info["best_epoch"]) == best["best_epoch"]
    assert f"fingerprint {network.info['fingerprint']}" in out
    # the written settings train the written network again
    again = destiny.Recommender(**history["best_params"]).fit(train)
    assert fingerprint(again) == network.info["fingerprint"]
    loaded = destiny.Recommender.load(root / "best.nc")
    assert loaded.best_epoch_ == best["best_epoch"]


@pytest.mark.parametrize("change, message", [
    ({"--budget": "0"}, "--budget 0: give a positive number of seconds"),
    ({"--budget": "-5"}, "--budget -5: give a positive number of seconds"),
    ({"-i": "missing.nc"}, "missing.nc: no such file"),
    ({"--validation": "missing.nc"}, "/missing.nc: no such file"),
    ({"--validation": "narrow.nc"}, "is 100 items wide but"),
    ({"--validation": "few.nc"}, "has 150 users but"),
    ({"--trials": "0"}, "--trials 0: give a positive number"),
])
def test_bad_input(files, capsys, change, message):
    root, _, _ = files
    args = _args(root, "--budget", "5", "--force")
    for flag, value in change.items():
        value = value if value.lstrip("-").replace(".", "").isdigit() else str(root / value)
        if flag in args:
            args[args.index(flag) + 1] = value
        else:
            args += [flag, value]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("destiny tune: error: ") and message in err and len(err.strip().splitlines()) == 1


def test_refuses_to_overwrite_a_network(files, capsys):
    root, _, _ = files
    (root / "taken.nc").write_bytes(b"x")
    args = _args(root, "--budget", "5")
    args[args.index("-n") + 1] = str(root / "taken.nc")
    assert main(args) == 2
    assert "taken.nc exists" in capsys.readouterr().err


def test_datasets_by_name(files, tmp_path, capsys):
    _, train, validation = files
    write_netcdf(tmp_path / "both.nc", [from_scipy(train, name="a"), from_scipy(train, name="b")])
    args = ["tune", "-i", str(tmp_path / "both.nc"), "--validation", str(files[0] / "val.nc"), "--budget", "5",
            "-o", str(tmp_path / "x.json"), "-n", str(tmp_path / "x.nc")]
    assert main(args) == 2
    assert "holds the datasets a, b; name the one to use with --dataset" in capsys.readouterr().err
    assert read_netcdf(tmp_path / "both.nc")[1].name == "b"
