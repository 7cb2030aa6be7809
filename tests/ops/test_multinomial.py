"""The multinomial log-likelihood (``"ErrorFunction": "Multinomial"``, Liang et al. 2018) on the
reference path: its value and delta against the formula written densely, the difference from
SoftMax + CrossEntropy (which spreads indicator targets as 1/#targets), a layer split by columns
(the log-sum-exp of whole rows), and the config checks."""

from __future__ import annotations

import json
import math

import pytest
import torch

from destiny.config import Activation, ErrorFunction, loads_config
from destiny.errors import ConfigError
from destiny.nn.activations import ActivationSpec
from destiny.nn.losses import LossSpec
from destiny.ops import reference as ref
from tests.helpers import config, random_batch

MULT = LossSpec(ErrorFunction.MULTINOMIAL, ActivationSpec(Activation.SOFTMAX))
CE = LossSpec(ErrorFunction.CROSS_ENTROPY, ActivationSpec(Activation.SOFTMAX))


def dense_targets(batch) -> torch.Tensor:
    return batch.to_dense(torch.float64)


def formula(z: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss (B,), ∂Σloss/∂z (B, N)) of −Σ_i t_i log softmax(z)_i, written out."""
    log_p = z - torch.logsumexp(z, dim=1, keepdim=True)
    loss = -(t * log_p).sum(1)
    delta = torch.exp(log_p) * t.sum(1, keepdim=True) - t
    return loss, delta


@pytest.mark.parametrize("values", [False, True], ids=["indicator", "analog"])
def test_sparse_targets_give_the_formula_and_its_gradient(values):
    batch = random_batch(9, 40, 8, values=values, seed=3)
    z = (torch.randn(9, 40, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 3).requires_grad_()
    loss = ref.output_loss_ref(z, batch, MULT)
    delta, = torch.autograd.grad(loss.sum(), z)
    want_loss, want_delta = formula(z.detach(), dense_targets(batch))
    torch.testing.assert_close(loss.detach(), want_loss, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(delta, want_delta, rtol=1e-12, atol=1e-12)
    dense = ref.output_loss_ref(z.detach(), dense_targets(batch), MULT)  # a dense target tensor: the same
    torch.testing.assert_close(dense, want_loss, rtol=1e-12, atol=1e-12)


def test_indicator_targets_count_one_each_where_cross_entropy_spreads_them():
    """Three targets of logits 0 over 4 units: Multinomial 3·log 4, CrossEntropy log 4."""
    from destiny.ops.sparse import SparseBatch

    batch = SparseBatch(torch.tensor([0, 3]), torch.tensor([0, 1, 3]), None, 4)
    z = torch.zeros(1, 4, dtype=torch.float64, requires_grad=True)
    mult = ref.output_loss_ref(z, batch, MULT)
    assert float(mult.detach()) == pytest.approx(3 * math.log(4.0), rel=1e-14)
    assert float(ref.output_loss_ref(z.detach(), batch, CE)) == pytest.approx(math.log(4.0), rel=1e-14)
    grad, = torch.autograd.grad(mult.sum(), z)
    assert grad.tolist() == [[0.75 - 1, 0.75 - 1, 0.75, 0.75 - 1]]  # softmax · Σt − t


def test_data_weights_multiply_and_delta_boost_does_not_apply():
    batch = random_batch(6, 30, 6, seed=4, weights=True)
    z = torch.randn(6, 30, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    boosted = LossSpec(ErrorFunction.MULTINOMIAL, ActivationSpec(Activation.SOFTMAX), boost_one=5.0, boost_zero=0.3)
    want, _ = formula(z, dense_targets(batch))
    torch.testing.assert_close(ref.output_loss_ref(z, batch, boosted), want * batch.weights, rtol=1e-12, atol=1e-12)


def test_a_layer_split_by_columns_sums_to_the_whole_loss():
    """Each shard scores its own columns against the log-sum-exp of the whole rows (what
    ``functional.output_loss`` does with a world): the shards' losses and deltas put together
    are the whole layer's (targets NOT spread, unlike CrossEntropy's)."""
    batch = random_batch(7, 23, 9, seed=5)
    z = (torch.randn(7, 23, generator=torch.Generator().manual_seed(3), dtype=torch.float64) * 2).requires_grad_()
    lse = torch.logsumexp(z.detach(), dim=1, keepdim=True)
    parts, deltas = [], []
    for lo, hi in ((0, 8), (8, 16), (16, 23)):
        shard = z.detach()[:, lo:hi].clone().requires_grad_()
        loss = ref.output_loss_ref(shard, batch.columns(lo, hi), MULT, lse=lse)
        loss.sum().backward()
        parts.append(loss.detach())
        deltas.append(shard.grad)
    whole, whole_delta = formula(z.detach(), dense_targets(batch))
    torch.testing.assert_close(sum(parts), whole, rtol=1e-12, atol=1e-12)
    # with lse held constant, a shard's own gradient is −t (the softmax term flows through lse)
    torch.testing.assert_close(torch.cat(deltas, 1), -dense_targets(batch), rtol=0, atol=0)
    assert whole_delta.shape == (7, 23)


LAYERS = [{"Name": "In", "N": 40, "DataSet": "in", "Sparse": True},
          {"Name": "H", "N": 8, "Activation": "Tanh"},
          {"Name": "Out", "Kind": "Output", "N": 40, "DataSet": "out", "Sparse": True, "Activation": "SoftMax"}]


def test_the_json_key_loads_and_writes_back():
    from destiny.config.dump import dumps_config

    cfg = config(LAYERS, ErrorFunction="multinomial")
    assert cfg.error_function == ErrorFunction.MULTINOMIAL
    assert json.loads(dumps_config(cfg))["ErrorFunction"] == "Multinomial"
    assert LossSpec.of(cfg, cfg.layers[2]).error_function == ErrorFunction.MULTINOMIAL


def test_a_sigmoid_output_is_refused_with_its_place_and_fix():
    layers = [dict(layer) for layer in LAYERS]
    layers[2]["Activation"] = "Sigmoid"
    cfg = config(layers, ErrorFunction="Multinomial")
    with pytest.raises(ConfigError, match=r"net\.json: Layers\[2\]\.Activation \(layer 'Out'\).*SoftMax"):
        LossSpec.of(cfg, cfg.layers[2], "net.json")


def test_a_network_reports_the_formulas_loss():
    """A Network on the CPU: the batch's loss the Network reports is the formula's."""
    from destiny.nn.network import Network
    from destiny.train.binding import Binding
    from tests.helpers import clustered_dataset

    cfg = loads_config(json.dumps({"Layers": LAYERS, "ErrorFunction": "Multinomial"}))
    data = clustered_dataset(30, 40, seed=1)
    net = Network.from_config(cfg, {"in": (40,), "out": (40,)}, seed=4, dtype=torch.float64)
    binding = Binding(net, {"in": data, "out": data}, device=torch.device("cpu"))
    inputs, targets = binding.batch(torch.arange(30))
    total, parts = net.loss(inputs, targets, None)
    z = net.predict(inputs)["Out"].log()  # log softmax: the formula's log softmax of it is itself
    want, _ = formula(z, targets["Out"].to_dense(torch.float64))
    assert float(total.detach()) == pytest.approx(float(want.sum()), rel=1e-10)
