"""The same data, config and seed give bitwise-identical networks (fingerprints), run after run,
for every optimizer, with dropout and denoising on; another seed gives another network; a run
stopped after epoch 2 and resumed from its checkpoint ends where the uninterrupted run ends."""

from __future__ import annotations

import pytest

from destiny.io.network_file import read_network
from destiny.train.checkpoint import network_from_file, network_to_file, restore_trainer, save_network, trainer_state
from destiny.train.optimizers import Hyperparameters, Optimizer
from destiny.train.trainer import Trainer
from tests.helpers import clustered_dataset
from tests.train.test_trainer import autoencoder

DATA = clustered_dataset(160, 48, seed=7, clusters=3)
SETS = {"in": DATA, "out": DATA}


def fingerprint(optimizer: Optimizer, seed: int, epochs: int = 3) -> str:
    net = autoencoder(48, seed=seed, dropout=0.3, denoise=0.2)
    trainer = Trainer(net, optimizer, Hyperparameters(lam=0.001, lam1=0.0001), batch_size=24, progress=False)
    trainer.fit(SETS, epochs)
    return network_to_file(net).info["fingerprint"]


@pytest.mark.parametrize("optimizer", list(Optimizer), ids=lambda o: o.value)
def test_two_runs_give_the_same_fingerprint_and_another_seed_does_not(optimizer):
    first, second = fingerprint(optimizer, seed=11), fingerprint(optimizer, seed=11)
    assert first == second
    assert fingerprint(optimizer, seed=12) != first


def test_stopped_and_resumed_run_ends_identical(tmp_path):
    whole = Trainer(autoencoder(48, dropout=0.3, denoise=0.2), "adam", batch_size=24, progress=False)
    whole.fit(SETS, 4)

    first = Trainer(autoencoder(48, dropout=0.3, denoise=0.2), "adam", batch_size=24, progress=False)
    first.fit(SETS, 2)
    save_network(first.network, tmp_path / "epoch2.nc", *trainer_state(first))
    del first

    nf = read_network(tmp_path / "epoch2.nc")
    resumed = Trainer(network_from_file(nf), "adam", batch_size=24, progress=False)
    restore_trainer(resumed, nf)
    resumed.fit(SETS, 2)
    assert network_to_file(resumed.network).info["fingerprint"] == network_to_file(whole.network).info["fingerprint"]


def test_resumed_batch_norm_network_ends_identical(tmp_path):
    """Batch norm's running averages use a cumulative momentum 1 / (1 + calls): the call count
    travels in the checkpoint, or the resumed averages would restart."""
    from tests.helpers import config

    def network():
        from destiny.nn.network import Network

        cfg = config([{"Name": "in", "Kind": "Input", "N": "auto", "DataSet": "in", "Sparse": True},
                      {"Name": "h", "N": 12, "Activation": "Relu", "BatchNormalization": True},
                      {"Name": "out", "Kind": "Output", "N": "auto", "DataSet": "out", "Sparse": True,
                       "Activation": "Sigmoid"}])
        return Network.from_config(cfg, {"in": DATA.dims, "out": DATA.dims}, seed=3)

    whole = Trainer(network(), "adam", batch_size=24, progress=False)
    whole.fit(SETS, 3)
    first = Trainer(network(), "adam", batch_size=24, progress=False)
    first.fit(SETS, 1)
    save_network(first.network, tmp_path / "epoch1.nc", *trainer_state(first))
    nf = read_network(tmp_path / "epoch1.nc")
    resumed = Trainer(network_from_file(nf), "adam", batch_size=24, progress=False)
    restore_trainer(resumed, nf)
    resumed.fit(SETS, 2)
    assert network_to_file(resumed.network).info["fingerprint"] == network_to_file(whole.network).info["fingerprint"]
