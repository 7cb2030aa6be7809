"""Normalize and Denoising.Rescale in a Network: what the first layer reads, in training and in
prediction, against a dense reference written from the definitions (Mult-VAE's input:
x/‖x‖, then dropout of the nonzeros with or without 1/(1 − p))."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from destiny.nn.network import Network
from destiny.nn.noise import Noise
from destiny.ops import reference as ref
from destiny.ops.random import stream_seed
from destiny.ops.sparse import SparseBatch
from tests.helpers import config, random_batch

ITEMS = 23


def linear_net(normalize=None, p=0.0, rescale=True, values=False):
    """Input (sparse) → Output (Linear): the output's pre-activations are what the input layer reads × W + b."""
    cfg = config([
        {"Name": "In", "N": ITEMS, "DataSet": "in", "Sparse": True, **({"Normalize": normalize} if normalize else {})},
        {"Name": "Out", "N": 5, "DataSet": "out", "Activation": "Linear",
         "WeightInit": {"Scheme": "Gaussian", "Scale": 0.5, "Bias": 0.25}},
    ], ErrorFunction="L2", Denoising={"p": p, "Rescale": rescale})
    return Network.from_config(cfg, {}, seed=4, dtype=torch.float64)


def batch(values: bool, seed=1) -> SparseBatch:
    b = random_batch(9, ITEMS, 7, values=values, seed=seed)
    if values:  # one example whose values are all zero: its norm is 0
        b.values[int(b.offsets[0]):int(b.offsets[1])] = 0.0
    return b


def dense_normalised(b: SparseBatch, norm: str | None) -> torch.Tensor:
    x = b.to_dense(torch.float64)
    if norm is None:
        return x
    size = x.norm(dim=1, keepdim=True) if norm == "L2" else x.abs().sum(1, keepdim=True)
    return torch.where(size > 0, x / torch.where(size > 0, size, 1.0), 0.0)


@pytest.mark.parametrize("norm", ["L2", "L1"])
@pytest.mark.parametrize("values", [False, True], ids=["indicator", "values"])
def test_prediction_reads_normalised_rows(norm, values):
    net = linear_net(norm)
    b = batch(values)
    w, bias = net.weights["w0"].detach(), net.biases["b0"].detach()
    expected = dense_normalised(b, norm) @ w + bias
    got = net.predict({"In": b})["Out"]
    assert torch.allclose(got, expected, rtol=1e-12, atol=1e-12)
    rows = dense_normalised(b, norm)
    size = rows.norm(dim=1) if norm == "L2" else rows.abs().sum(1)
    empty = b.to_dense().abs().sum(1) == 0
    assert torch.allclose(size[~empty], torch.ones(int((~empty).sum()), dtype=torch.float64))
    assert torch.equal(got[empty], bias.expand(int(empty.sum()), -1))  # an empty row reads nothing, no NaN


@pytest.mark.parametrize("rescale", [True, False])
@pytest.mark.parametrize("norm", [None, "L2"])
def test_training_reads_normalised_then_denoised_rows(norm, rescale):
    net = linear_net(norm, p=0.4, rescale=rescale)
    b = batch(values=False, seed=3)
    noise = Noise(seed=77, epoch=2, step=5)
    seed = stream_seed(77, "denoise", 2, 5, "In")
    keep = ref.denoise_ref(b, 0.4, seed).values != 0  # the mask: the stream DSSTNE's p draws from
    mask = SparseBatch(b.offsets, b.indices, keep.double(), ITEMS).to_dense(torch.float64)
    x = dense_normalised(b, norm) * mask * (1 / 0.6 if rescale else 1.0)
    z = net.forward({"In": b}, noise)["Out"]
    w, bias = net.weights["w0"].detach(), net.biases["b0"].detach()
    assert torch.allclose(z, x @ w + bias, rtol=1e-6, atol=1e-7)  # float32 values of the denoised batch
    assert 0 < int(keep.sum()) < b.nnz


def test_the_same_mask_with_and_without_rescale_and_no_new_stream():
    """Rescale changes values, never which nonzeros drop: the streams are those of DSSTNE's Denoising."""
    a, b = linear_net("L2", p=0.4, rescale=True), linear_net("L2", p=0.4, rescale=False)
    assert a.noise_streams() == b.noise_streams() == [("denoise", "In")]
    x = batch(values=True, seed=5)
    noise = Noise(seed=3, epoch=1, step=0)
    xa, xb = a.forward({"In": x}, noise)["In"], b.forward({"In": x}, noise)["In"]
    assert torch.equal(xa.values != 0, xb.values != 0)
    kept = xb.values != 0
    assert torch.allclose(xa.values[kept], xb.values[kept] / 0.6)


def test_normalised_training_learns():
    from destiny.train.optimizers import Hyperparameters
    from destiny.train.trainer import Trainer
    from tests.helpers import clustered_dataset

    cfg = config([
        {"Name": "In", "N": "auto", "DataSet": "in", "Sparse": True, "Normalize": "L2"},
        {"Name": "H", "N": 16, "Activation": "Tanh"},
        {"Name": "Out", "N": "auto", "DataSet": "in", "Sparse": True, "Activation": "SoftMax"},
    ], ErrorFunction="CrossEntropy", Denoising={"p": 0.5})
    net = Network.from_config(cfg, {"in": (40,)}, seed=2)
    data = clustered_dataset(120, 40, seed=1)
    trainer = Trainer(net, "adam", Hyperparameters(alpha=0.01), batch_size=30, progress=False)
    errors = [r.training_error for r in trainer.fit({"in": data}, 6)]
    assert errors[-1] < 0.9 * errors[0] and np.isfinite(errors).all()
