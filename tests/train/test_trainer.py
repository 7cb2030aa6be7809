"""The training loop: the loss falls, runs are reproducible bit for bit, seeds matter."""

from __future__ import annotations

import torch

from destiny.nn.network import Network
from destiny.train.trainer import Trainer
from tests.helpers import clustered_dataset, config


def autoencoder(items: int, seed: int = 1, dropout: float = 0.2, denoise: float = 0.1) -> Network:
    cfg = config([
        {"Name": "in", "N": "auto", "DataSet": "in", "Sparse": True},
        {"Name": "h", "N": 16, "Activation": "Relu", "pDropout": dropout,
         "WeightInit": {"Scheme": "Gaussian", "Scale": 0.1}},
        {"Name": "out", "N": "auto", "DataSet": "out", "Sparse": True, "Activation": "Sigmoid"},
    ], ErrorFunction="ScaledMarginalCrossEntropy", Denoising={"p": denoise},
        ScaledMarginalCrossEntropy={"oneTarget": 1.0, "zeroTarget": 0.0})
    return Network.from_config(cfg, {"in": (items,), "out": (items,)}, seed=seed)


def train(net: Network, optimizer="sgd", epochs=3, **hyper):
    from destiny.train.optimizers import Hyperparameters

    data = clustered_dataset(300, 40, seed=2)
    trainer = Trainer(net, optimizer, Hyperparameters(**hyper), batch_size=32, progress=False)
    return trainer.fit({"in": data, "out": data}, epochs), trainer


def weights(net: Network) -> list[torch.Tensor]:
    return [p.detach().clone() for p in net.parameters()]


def test_training_error_falls_every_epoch():
    results, trainer = train(autoencoder(40), "momentum", epochs=5, alpha=0.05)
    errors = [r.training_error for r in results]
    assert all(b < a for a, b in zip(errors, errors[1:])), errors
    assert results[-1].examples_per_second > 0 and trainer.epoch == 5


def test_same_seed_gives_bitwise_identical_weights_and_another_seed_does_not():
    a, b, c = autoencoder(40, seed=1), autoencoder(40, seed=1), autoencoder(40, seed=2)
    for net in (a, b, c):
        train(net, "adam", epochs=2)
    assert all(torch.equal(x, y) for x, y in zip(weights(a), weights(b)))
    assert not all(torch.equal(x, y) for x, y in zip(weights(a), weights(c)))


def test_validation_error_is_reported():
    net = autoencoder(40)
    data = clustered_dataset(100, 40, seed=3)
    trainer = Trainer(net, "sgd", batch_size=50, progress=False)
    result = trainer.fit({"in": data, "out": data}, 1, validation={"in": data, "out": data})[0]
    assert result.validation_error is not None and result.validation_error > 0
    assert trainer.evaluate({"in": data, "out": data}) == result.validation_error
