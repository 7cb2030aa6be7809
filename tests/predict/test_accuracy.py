"""Top-k classification accuracy: against a brute force over the network's scores (ties to the
lower class), from Python (arrays, datasets) and from ``destiny evaluate --accuracy``."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from destiny.cli.main import main
from destiny.config import loads_config
from destiny.data import images_to_datasets, labels_to_dataset, write_netcdf
from destiny.errors import DataError
from destiny.nn.network import Network
from destiny.predict.accuracy import label_array, top_k_accuracy
from destiny.train.checkpoint import save_network

CLASSES = 7


def classifier() -> Network:
    config = loads_config(json.dumps({"ErrorFunction": "CrossEntropy", "Layers": [
        {"Name": "in", "Kind": "Input", "Type": "Convolutional", "N": "auto", "DataSet": "input"},
        {"Name": "c", "Type": "Convolutional", "N": 4, "Kernel": [3, 3], "Activation": "Relu",
         "WeightInit": {"Scheme": "Gaussian", "Scale": 0.3}},
        {"Name": "p", "Type": "Pooling", "Function": "Max", "Kernel": [2, 2], "KernelStride": [2, 2]},
        {"Name": "out", "Kind": "Output", "N": "auto", "DataSet": "output", "Activation": "SoftMax",
         "WeightInit": {"Scheme": "Gaussian", "Scale": 0.3}}]}))
    return Network.from_config(config, {"input": (6, 6, 2), "output": (CLASSES,)}, seed=4)


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(50, 6, 6, 2), dtype=np.uint8)
    labels = rng.integers(0, CLASSES, size=50)
    return images_to_datasets(images, labels, n_classes=CLASSES)


def brute(net, inputs, labels, k):
    scores = net.predict(inputs)["out"].double().numpy()  # softmax keeps the pre-activation's order
    ranks = [sorted(range(CLASSES), key=lambda c: (-row[c], c)).index(y) for row, y in zip(scores, labels)]
    return float(np.mean(np.asarray(ranks) < k))


def test_top_k_accuracy_equals_a_brute_force(data):
    net = classifier()
    inputs, outputs = data
    result = top_k_accuracy(net, inputs, outputs, ks=(1, 3, 5, 20), batch_size=16)
    labels = outputs.indices
    assert result.examples == 50 and result.skipped == 0
    for k in (1, 3, 5):
        assert result.top[k] == pytest.approx(brute(net, inputs, labels, k))
    assert result.top[20] == 1.0  # k beyond the classes: every label
    again = top_k_accuracy(net, {"input": inputs}, labels.astype(np.int64), ks=(1, 3), batch_size=7)
    assert again.top == {1: result.top[1], 3: result.top[3]}


def test_rows_without_a_label_are_skipped_and_several_labels_refused():
    ds = labels_to_dataset([1, 2, 0], n_classes=3)
    ds = ds.replace(offsets=np.array([0, 1, 1, 3]))
    with pytest.raises(DataError, match="row 2 has 2 labels; accuracy needs one label per example"):
        label_array(ds)
    one = ds.replace(offsets=np.array([0, 1, 1, 2]), indices=np.array([1, 2], np.int32))
    assert label_array(one).tolist() == [1, -1, 2]


def test_evaluate_accuracy_cli(tmp_path, data, capsys):
    net = classifier()
    inputs, outputs = data
    write_netcdf(tmp_path / "test.nc", [inputs, outputs])
    save_network(net, tmp_path / "net.nc")
    assert main(["evaluate", "--accuracy", "-n", str(tmp_path / "net.nc"), "--input-nc", str(tmp_path / "test.nc"),
                 "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    expected = top_k_accuracy(net, inputs, outputs, ks=(1, 5))
    assert document["examples"] == 50
    assert document["accuracy"] == {"top1": pytest.approx(expected.top[1]), "top5": pytest.approx(expected.top[5])}
    write_netcdf(tmp_path / "labels.nc", [outputs.replace(name="truth")])
    assert main(["evaluate", "--accuracy", "-n", str(tmp_path / "net.nc"), "--input-nc", str(tmp_path / "test.nc"),
                 "-t", str(tmp_path / "labels.nc"), "--held-out-dataset", "truth", "-k", "2"]) == 0
    out = capsys.readouterr().out
    assert "Top-K accuracy" in out and "50 labelled examples" in out


@pytest.mark.parametrize("argv,message", [
    (["--accuracy"], "--accuracy scores a network on a NetCDF input"),
    (["--accuracy", "-t", "{d}/test.nc", "--held-out-dataset", "nope"], "holds no dataset 'nope'"),
    ([], "give the held-out items with -t HELD_OUT"),
])
def test_evaluate_accuracy_errors(tmp_path, data, capsys, argv, message):
    write_netcdf(tmp_path / "test.nc", list(data))
    save_network(classifier(), tmp_path / "net.nc")
    common = ["-n", str(tmp_path / "net.nc")] + (["--input-nc", str(tmp_path / "test.nc")] if argv[1:] else [])
    assert main(["evaluate", *common, *[a.format(d=tmp_path) for a in argv]]) == 2
    assert message in capsys.readouterr().err


def test_network_predict_takes_an_image_dataset(data):
    net = classifier()
    inputs, _ = data
    from_dataset = net.predict(inputs)["out"]
    x = torch.from_numpy(inputs.data.reshape(50, -1)).double() / 256 - 0.5
    torch.testing.assert_close(from_dataset, net.predict({"in": x.float()})["out"])
