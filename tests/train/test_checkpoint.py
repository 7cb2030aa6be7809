"""Networks to files and back: DSSTNE-written files predict as expected, save → load → predict
is identical, and a run resumed from a checkpoint ends where the uninterrupted run ends."""

from __future__ import annotations

import numpy as np
import torch

from destiny.io.network_file import read_network
from destiny.ops.sparse import SparseBatch
from destiny.train.checkpoint import (
    load_network,
    network_from_file,
    restore_trainer,
    save_network,
    trainer_state,
)
from destiny.train.trainer import Trainer
from tests.helpers import clustered_dataset, random_batch
from tests.io.dsstne_writer import B0, B1, W0, W1, tiny_network, write_dsstne
from tests.train.test_trainer import autoencoder


def test_a_network_file_written_from_the_fact_sheet_predicts_as_expected(tmp_path):
    path = tmp_path / "dsstne.nc"
    write_dsstne(path, *tiny_network())
    net = load_network(path)
    # examples: {0, 2} and {5} of the 6 sparse inputs
    x = SparseBatch(torch.tensor([0, 2, 3]), torch.tensor([0, 2, 5]), None, 6)
    out = net.predict({"Input": x})["Output"].numpy()
    dense = np.zeros((2, 6), np.float32)
    dense[0, [0, 2]] = 1
    dense[1, 5] = 1
    hidden = np.maximum(dense @ W0.reshape(6, 3) + B0, 0)  # Relu
    expected = 1 / (1 + np.exp(-(hidden @ W1.reshape(3, 6) + B1)))  # Sigmoid
    np.testing.assert_allclose(out, expected, rtol=1e-6)


def test_save_load_predict_is_identical(tmp_path):
    net = autoencoder(40)
    data = clustered_dataset(64, 40)
    Trainer(net, "adam", batch_size=16, progress=False).fit({"in": data, "out": data}, 1)
    fingerprint = save_network(net, tmp_path / "n.nc")
    again = load_network(tmp_path / "n.nc")
    x = random_batch(10, 40, 8, dtype=torch.float32)
    assert torch.equal(net.predict({"in": x})["out"], again.predict({"in": x})["out"])
    assert read_network(tmp_path / "n.nc").info["fingerprint"] == fingerprint


def test_resumed_run_equals_the_uninterrupted_run(tmp_path):
    data = clustered_dataset(100, 40, seed=4)
    sets = {"in": data, "out": data}
    whole = Trainer(autoencoder(40), "momentum", batch_size=16, progress=False)
    whole.fit(sets, 4)

    first = Trainer(autoencoder(40), "momentum", batch_size=16, progress=False)
    first.fit(sets, 2)
    info, extras = trainer_state(first)
    save_network(first.network, tmp_path / "ck.nc", info, extras)

    nf = read_network(tmp_path / "ck.nc")
    second = Trainer(network_from_file(nf), "momentum", batch_size=16, progress=False)
    restore_trainer(second, nf)
    second.fit(sets, 2)
    assert second.epoch == 4
    for a, b in zip(whole.network.parameters(), second.network.parameters()):
        assert torch.equal(a, b)
