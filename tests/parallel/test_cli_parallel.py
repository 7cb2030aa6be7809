"""The same command lines under torchrun: ``destiny train`` on 2 processes writes the network one
process writes (within float32 rounding: see test_model_parallel) and prints once;
``destiny predict`` on 3 processes writes the very recommendations one process writes."""

from __future__ import annotations

import json

import numpy as np

from destiny.cli.main import main
from destiny.data import SparseDataset, write_netcdf
from destiny.io.network_file import read_network
from tests.helpers import clustered_dataset
from tests.parallel.launch import torchrun

CONFIG = {"Version": 0.8, "ErrorFunction": "ScaledMarginalCrossEntropy", "Denoising": {"p": 0.1},
          "Layers": [{"Name": "Input", "N": "auto", "DataSet": "input", "Sparse": True},
                     {"Name": "Hidden", "N": 19, "Activation": "Relu", "pDropout": 0.2},
                     {"Name": "Output", "N": "auto", "DataSet": "output", "Sparse": True}]}


def test_train_and_predict_under_torchrun_match_one_process(tmp_path, capsys):
    d = clustered_dataset(90, 47, seed=1)
    for name in ("input", "output"):
        write_netcdf(tmp_path / f"{name}.nc", SparseDataset(name, (47,), d.offsets, d.indices))
    (tmp_path / "net.json").write_text(json.dumps(CONFIG))
    (tmp_path / "items.idx").write_text("".join(f"item{i}\t{i}\n" for i in range(47)))
    train = ["train", "-c", str(tmp_path / "net.json"), "-i", str(tmp_path / "input.nc"), "-o",
             str(tmp_path / "output.nc"), "-b", "16", "-e", "2", "--optimizer", "adam", "--alpha", "0.01",
             "--quiet", "--device", "cpu"]
    assert main([*train, "-n", str(tmp_path / "net1.nc")]) == 0
    done = torchrun(2, "-m", "destiny", *train, "-n", str(tmp_path / "net2.nc"))
    assert done.stdout.count("Saved ") == 1 and done.stdout.count("Epoch 2:") == 1  # rank 0 alone prints
    assert "× 2 processes (model parallel)" in done.stdout
    one, two = read_network(tmp_path / "net1.nc"), read_network(tmp_path / "net2.nc")
    assert two.info["epoch"] == 2
    for a, b in zip(one.weights, two.weights):
        np.testing.assert_allclose(b.weights, a.weights, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(b.bias, a.bias, rtol=1e-5, atol=1e-6)

    predict = ["predict", "-n", str(tmp_path / "net1.nc"), "--input-nc", str(tmp_path / "input.nc"), "-o",
               str(tmp_path / "items.idx"), "-k", "5", "-b", "20", "--device", "cpu"]
    capsys.readouterr()
    assert main([*predict, "-s", str(tmp_path / "recs1.txt")]) == 0
    done = torchrun(3, "-m", "destiny", *predict, "-s", str(tmp_path / "recs3.txt"))
    assert done.stdout.count("Wrote ") == 1
    assert (tmp_path / "recs3.txt").read_text() == (tmp_path / "recs1.txt").read_text()
