"""WeightInit.FrequencyBias: output biases from the target dataset's column counts (log-odds
for Sigmoid, log-frequencies for SoftMax, means for Linear) when training starts from a freshly
initialised network — not for a network read from a file or a checkpoint, not twice — and the
warning about a wide sparse Sigmoid output starting at bias 0 (Trainer.fit, destiny train,
Recommender.fit)."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch

from destiny.errors import ConfigWarning
from destiny.nn.network import Network
from destiny.nn.recipes import bias_warnings, column_counts, frequency_bias
from destiny.train.optimizers import Hyperparameters
from destiny.train.trainer import Trainer
from tests.helpers import config, sparse_dataset

ROWS = [[0, 1], [1, 4], [1], [0, 1, 4], [], [4]]  # 6 examples of 5 items: counts 2, 4, 0, 0, 3
COUNTS = np.array([2.0, 4.0, 0.0, 0.0, 3.0])


def data(values=None):
    return sparse_dataset([np.asarray(r) for r in ROWS], 5, values)


def net(activation="Sigmoid", error="CrossEntropy", sources=("In",), frequency=True, n_out="auto", bias=0.0,
        dtype=torch.float64):
    cfg = config([
        {"Name": "In", "N": "auto", "DataSet": "in", "Sparse": True},
        {"Name": "H", "N": 3, "Source": "In"},
        {"Name": "Out", "N": n_out, "DataSet": "out", "Sparse": True, "Activation": activation,
         "Source": list(sources), "WeightInit": {"Bias": bias, "FrequencyBias": frequency}},
    ], ErrorFunction=error)
    return Network.from_config(cfg, {"in": (5,), "out": (5,)}, seed=3, dtype=dtype)


def start(network, targets=None, epochs=0):
    trainer = Trainer(network, "sgd", Hyperparameters(alpha=0.1), batch_size=4, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConfigWarning)
        trainer.fit({"in": data(), "out": targets or data()}, epochs)
    return trainer


def bias_of(network, source="In"):
    spec = next(s for s in network.specs if s.output_layer == "Out" and s.input_layer == source)
    return network.bias(spec).detach().numpy()


def test_column_counts_of_sparse_dense_and_analog_data():
    counts, n = column_counts(data(), 5)
    assert n == 6 and np.array_equal(counts, COUNTS)
    values = [np.full(len(r), 0.5) for r in ROWS]
    assert np.array_equal(column_counts(data(values), 5)[0], COUNTS / 2)
    dense = type("Dense", (), {"data": np.eye(5, dtype=np.float32)[[0, 1, 1]]})()
    assert np.array_equal(column_counts(dense, 5)[0], [1, 2, 0, 0, 0]) and column_counts(dense, 5)[1] == 3


def test_sigmoid_biases_are_smoothed_log_odds():
    network = net()
    start(network)
    expected = np.log((COUNTS + 1) / (6 - COUNTS + 1))  # log((c+1)/(n−c+1))
    np.testing.assert_allclose(bias_of(network), expected, rtol=1e-15)
    assert bias_of(network)[2] == pytest.approx(np.log(1 / 7))  # an item nobody has: low, finite


def test_softmax_biases_are_smoothed_log_frequencies():
    network = net("SoftMax")
    start(network)
    np.testing.assert_allclose(bias_of(network), np.log((COUNTS + 1) / (COUNTS.sum() + 5)), rtol=1e-15)
    assert np.exp(bias_of(network)).sum() == pytest.approx(1.0)


def test_linear_biases_are_the_mean_targets_of_analog_data():
    network = net("Linear", "L2")
    values = [np.arange(1, len(r) + 1, dtype=np.float32) for r in ROWS]  # 1, 2, ... along each row
    start(network, targets=data(values))
    sums = np.zeros(5)
    for r, v in zip(ROWS, values):
        sums[r] += v
    np.testing.assert_allclose(bias_of(network), sums / 6, rtol=1e-15)


def test_with_several_sources_the_first_takes_the_bias_and_the_sum_is_the_formula():
    network = net(sources=("H", "In"), bias=-2.0)
    start(network)
    np.testing.assert_allclose(bias_of(network, "H") + bias_of(network, "In"),
                               np.log((COUNTS + 1) / (6 - COUNTS + 1)), rtol=1e-15)
    assert not bias_of(network, "In").any()


def test_float32_networks_and_a_direct_call():
    network = net(dtype=torch.float32)
    assert network.init_biases_from({"out": data()}) == ["Out"]
    assert bias_of(network).dtype == np.float32
    np.testing.assert_allclose(bias_of(network), np.log((COUNTS + 1) / (7 - COUNTS)), rtol=1e-6)


def test_only_a_fresh_network_and_only_once():
    network = net()
    trainer = start(network, epochs=2)
    trained = bias_of(network).copy()
    assert not np.allclose(trained, np.log((COUNTS + 1) / (7 - COUNTS)))  # training moved them
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConfigWarning)
        trainer.fit({"in": data(), "out": data()}, 0)  # a second fit: no reset
    assert np.array_equal(bias_of(network), trained)


def test_a_network_from_a_file_keeps_its_biases(tmp_path):
    from destiny.train.checkpoint import load_network

    network = net(bias=-1.5)  # saved before training: the file's biases are Bias
    network.save(tmp_path / "fresh.nc")
    loaded = load_network(tmp_path / "fresh.nc")
    assert loaded.config.layer("Out").weight_init.frequency_bias
    start(loaded, epochs=0)
    assert np.array_equal(bias_of(loaded), np.full(5, -1.5, np.float32))


def test_a_resumed_checkpoint_keeps_its_biases(tmp_path):
    from destiny.io.network_file import read_network
    from destiny.train.checkpoint import network_from_file, restore_trainer, save_network, trainer_state

    network = net(dtype=torch.float32)
    trainer = start(network, epochs=1)
    save_network(network, tmp_path / "ck.nc", *trainer_state(trainer))
    nf = read_network(tmp_path / "ck.nc")
    resumed = network_from_file(nf)
    again = Trainer(resumed, "sgd", Hyperparameters(alpha=0.1), batch_size=4, progress=False)
    restore_trainer(again, nf)
    before = bias_of(resumed).copy()
    again.fit({"in": data(), "out": data()}, 0)
    assert np.array_equal(bias_of(resumed), before) and np.array_equal(before, bias_of(network))


# -- the warning -----------------------------------------------------------------------------

def wide(frequency=False, bias=0.0, items=1200):
    cfg = config([
        {"Name": "In", "N": "auto", "DataSet": "in", "Sparse": True},
        {"Name": "Out", "N": "auto", "DataSet": "in", "Sparse": True, "Activation": "Sigmoid",
         "WeightInit": {"Bias": bias, "FrequencyBias": frequency}},
    ], ErrorFunction="CrossEntropy")
    return Network.from_config(cfg, {"in": (items,)}, seed=1)


def wide_data(items=1200, users=8):
    rng = np.random.default_rng(0)
    return sparse_dataset([np.sort(rng.choice(items, 5, replace=False)) for _ in range(users)], items)


def test_training_a_fresh_wide_sigmoid_output_at_bias_zero_warns():
    trainer = Trainer(wide(), "sgd", batch_size=8, progress=False)
    with pytest.warns(ConfigWarning) as caught:
        trainer.fit({"in": wide_data()}, 1)
    text = str(caught[0].message)
    assert "Layers[1] (layer 'Out'): a sparse Sigmoid output of 1,200 units starts at bias 0, so every output starts " \
           "at probability 0.5; on real data this halves recommendation quality" in text
    assert "\"WeightInit\": {\"FrequencyBias\": true}" in text and "negative \"Bias\"" in text


@pytest.mark.parametrize("kwargs", [dict(frequency=True), dict(bias=-5.0), dict(items=1000)],
                         ids=["frequency", "negative-bias", "narrow"])
def test_no_warning_when_the_output_starts_well(kwargs):
    items = kwargs.get("items", 1200)
    trainer = Trainer(wide(**kwargs), "sgd", batch_size=8, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConfigWarning)
        trainer.fit({"in": wide_data(items)}, 0)
    if kwargs.get("frequency"):  # 8 users: an item of c users starts at log((c+1)/(9−c))
        b = trainer.network.biases["b0"].detach()
        assert float(b.min()) == pytest.approx(np.log(1 / 9)) and float(b.max()) >= np.log(2 / 8) - 1e-6


def test_no_warning_for_a_network_from_a_file(tmp_path):
    from destiny.train.checkpoint import load_network

    wide().save(tmp_path / "w.nc")
    trainer = Trainer(load_network(tmp_path / "w.nc"), "sgd", batch_size=8, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConfigWarning)
        trainer.fit({"in": wide_data()}, 1)


def test_bias_warnings_by_width():
    cfg = wide().config
    assert bias_warnings(cfg, {"Out": (1001,)}) and not bias_warnings(cfg, {"Out": (1000,)})
    assert "of \"auto\" units (if its dataset is wider than 1,000)" in bias_warnings(cfg, {})[0]


def test_destiny_train_warns_and_succeeds(tmp_path, capsys):
    from destiny.cli.main import main
    from destiny.data import SparseDataset, write_netcdf

    d = wide_data(1500, 40)
    for name in ("input", "output"):
        write_netcdf(tmp_path / f"{name}.nc", SparseDataset(name, (1500,), d.offsets, d.indices))
    (tmp_path / "net.json").write_text(json.dumps({"ErrorFunction": "CrossEntropy", "Layers": [
        {"Name": "Input", "N": "auto", "DataSet": "input", "Sparse": True},
        {"Name": "Hidden", "N": 8, "Activation": "Relu"},
        {"Name": "Output", "N": "auto", "DataSet": "output", "Sparse": True, "Activation": "Sigmoid"}]}))
    status = main(["train", "-c", str(tmp_path / "net.json"), "-i", str(tmp_path / "input.nc"), "-o",
                   str(tmp_path / "output.nc"), "-n", str(tmp_path / "net.nc"), "-b", "16", "-e", "1", "--quiet"])
    err = capsys.readouterr().err
    assert status == 0 and (tmp_path / "net.nc").exists()
    assert "destiny: warning: Layers[2] (layer 'Output'): a sparse Sigmoid output of 1,500 units starts at bias 0" in err


def test_recommender_fit_warns():
    import scipy.sparse as sp

    from destiny import Recommender

    d = wide_data(1100, 12)
    matrix = sp.csr_matrix((np.ones(len(d.indices), np.float32), d.indices, d.offsets), shape=(12, 1100))
    cfg = {"ErrorFunction": "CrossEntropy", "Layers": [
        {"Name": "Input", "N": "auto", "DataSet": "input", "Sparse": True},
        {"Name": "Hidden", "N": 4, "Activation": "Relu"},
        {"Name": "Output", "N": "auto", "DataSet": "output", "Sparse": True, "Activation": "Sigmoid"}]}
    with pytest.warns(ConfigWarning, match="a sparse Sigmoid output of 1,100 units starts at bias 0"):
        Recommender(cfg, epochs=1, batch_size=6, device="cpu").fit(matrix)
