"""`destiny train` and `destiny quickstart` end to end on small data."""

from __future__ import annotations

import json

import numpy as np

from destiny.cli.main import main
from destiny.data import SparseDataset, read_netcdf, write_netcdf
from destiny.io.network_file import read_network
from tests.helpers import clustered_dataset

CONFIG = {"Version": 0.8, "ErrorFunction": "ScaledMarginalCrossEntropy",
          "Layers": [{"Name": "Input", "N": "auto", "DataSet": "input", "Sparse": True},
                     {"Name": "Hidden", "N": 16, "Activation": "Relu"},
                     {"Name": "Output", "N": "auto", "DataSet": "output", "Sparse": True}]}


def write_data(tmp_path, users=120, items=30):
    d = clustered_dataset(users, items, seed=1)
    for name in ("input", "output"):
        write_netcdf(tmp_path / f"{name}.nc", SparseDataset(name, (items,), d.offsets, d.indices))
    (tmp_path / "net.json").write_text(json.dumps(CONFIG))


def test_train_writes_a_network_and_reports_each_epoch(tmp_path, capsys):
    write_data(tmp_path)
    args = ["train", "-c", str(tmp_path / "net.json"), "-i", str(tmp_path / "input.nc"), "-o", str(tmp_path / "output.nc"),
            "-n", str(tmp_path / "net.nc"), "-b", "32", "-e", "3", "--optimizer", "adam", "--alpha", "0.01",
            "--checkpoint-every", "2", "--quiet"]
    assert main(args) == 0
    out = capsys.readouterr().out
    errors = [float(line.split("training error ")[1].split()[0].rstrip(",")) for line in out.splitlines()
              if line.startswith("Epoch")]
    assert len(errors) == 3 and errors[-1] < errors[0]
    network = read_network(tmp_path / "net.nc")
    assert network.info["epoch"] == 3 and network.info["fingerprint"] in out
    assert read_network(tmp_path / "net.epoch2.nc").info["epoch"] == 2
    assert main(args) == 2  # refuses to overwrite
    assert "exists; DSSTNE's train refuses to overwrite" in capsys.readouterr().err


def test_train_errors_are_one_line(tmp_path, capsys):
    write_data(tmp_path)
    bad = dict(CONFIG, Layers=[dict(CONFIG["Layers"][0], DataSet="nothere")] + CONFIG["Layers"][1:])
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    status = main(["train", "-c", str(tmp_path / "bad.json"), "-i", str(tmp_path / "input.nc"),
                   "-o", str(tmp_path / "output.nc"), "-n", str(tmp_path / "x.nc"), "--quiet"])
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1
    assert "dataset 'nothere'" in err
    assert main(["train", "-c", str(tmp_path / "net.json"), "-i", str(tmp_path / "input.nc"), "-o",
                 str(tmp_path / "output.nc"), "-n", str(tmp_path / "y.nc"), "--optimizer", "lbfgs"]) == 2
    assert "unknown optimizer 'lbfgs'" in capsys.readouterr().err
    assert not (tmp_path / "x.nc").exists() and not (tmp_path / "y.nc").exists()


def test_quickstart_runs_and_beats_nothing_less_than_itself(tmp_path, capsys):
    status = main(["quickstart", "--users", "300", "--items", "200", "--epochs", "1", "--workdir", str(tmp_path),
                   "--quiet"])
    out = capsys.readouterr().out
    assert status == 0
    for text in ("Recommendations", "Most popular", "P@10", "epoch 1"):
        assert text in out
    assert {p.name for p in tmp_path.iterdir()} >= {"train_input.nc", "train_output.nc", "test.nc", "network.nc",
                                                      "network.json"}
    test = read_netcdf(tmp_path / "test.nc")[0]
    assert test.n_examples == 300 and np.all(np.diff(test.offsets) >= 0)
