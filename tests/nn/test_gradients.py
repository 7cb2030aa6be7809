"""Finite differences in float64 against autograd for the whole network (DSSTNE's Validate()):
every activation × error function, sparse and dense inputs, skips, shared weights, batch norm,
several sources and the sparseness penalty. Dropout is off; training-mode paths are on."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from destiny.config import Activation, ErrorFunction
from destiny.nn.network import Network
from destiny.nn.noise import Noise
from tests.helpers import config, random_batch

ALL = [a.json for a in Activation if a not in (Activation.RELU_MAX, Activation.LINEAR_MAX)]
PLAIN = [ErrorFunction.L1, ErrorFunction.L2, ErrorFunction.HINGE, ErrorFunction.L2_HINGE]
CASES = [(fn.json, out, ALL[i % len(ALL)]) for fn in PLAIN for i, out in enumerate(ALL)]
CASES += [("CrossEntropy", "Sigmoid", "Tanh"), ("CrossEntropy", "SoftMax", "ELU"),
          ("ScaledMarginalCrossEntropy", "Sigmoid", "Relu"), ("ScaledMarginalCrossEntropy", "SoftMax", "SELU"),
          ("DataScaledMarginalCrossEntropy", "Sigmoid", "SoftPlus")]


def check(net: Network, inputs, targets, probes: int = 8, seed: int = 0) -> None:
    noise = Noise(0, 1, 0)  # training mode (batch statistics, penalty); no dropout in these configs
    loss, _ = net.loss(inputs, targets, noise)
    loss.backward()
    rng = np.random.default_rng(seed)
    for name, p in net.named_parameters():
        grad = p.grad if p.grad is not None else torch.zeros_like(p)
        if getattr(p, "row_grad", None) is not None:  # the sparse input layer's (plus any dense part)
            grad = grad + p.row_grad.to_dense(p.shape[0])
        flat = p.data.view(-1)
        for k in rng.choice(flat.numel(), size=min(probes, flat.numel()), replace=False):
            original = float(flat[k])
            eps = 1e-6 * max(1.0, abs(original))
            with torch.no_grad():
                flat[k] = original + eps
                up = float(net.loss(inputs, targets, noise)[0])
                flat[k] = original - eps
                down = float(net.loss(inputs, targets, noise)[0])
                flat[k] = original
            numeric = (up - down) / (2 * eps)
            analytic = float(grad.view(-1)[k])
            assert abs(numeric - analytic) <= 1e-5 * max(1.0, abs(numeric)), (name, int(k), numeric, analytic)


def network(layers, **top) -> Network:
    cfg = config(layers, **top)
    return Network.from_config(cfg, seed=5, dtype=torch.float64)


def hidden(name, n, act, **extra):
    layer = {"Name": name, "N": n, "Activation": act, "RELUSlope": 0.1,
             "WeightInit": {"Scheme": "Gaussian", "Scale": 0.5, "Bias": 0.1}}
    layer.update(extra)
    return layer


@pytest.mark.parametrize("error_function,output_activation,hidden_activation", CASES)
@pytest.mark.parametrize("sparse_input", [True, False], ids=["sparse-in", "dense-in"])
def test_gradients(error_function, output_activation, hidden_activation, sparse_input):
    net = network([
        {"Name": "in", "N": 12, "DataSet": "x", "Sparse": sparse_input},
        hidden("h1", 5, hidden_activation),
        hidden("h2", 5, hidden_activation, Skip="h1"),
        {"Name": "out", "Kind": "Output", "N": 6, "DataSet": "y", "Activation": output_activation,
         "WeightInit": {"Scheme": "Gaussian", "Scale": 0.5}},
    ], ErrorFunction=error_function, ScaledMarginalCrossEntropy={"oneTarget": 0.95, "zeroTarget": 0.05})
    x = random_batch(7, 12, 5, values=True, seed=1)
    inputs = {"in": x if sparse_input else x.to_dense(torch.float64)}
    targets = {"out": random_batch(7, 6, 3, values=error_function.startswith("DataScaled"), seed=2, weights=True)}
    check(net, inputs, targets)


def test_gradients_shared_transposed_weights_batch_norm_penalty_and_two_sources():
    net = network([
        {"Name": "in", "N": 15, "DataSet": "x", "Sparse": True},
        {"Name": "side", "Kind": "Input", "N": 3, "DataSet": "s"},
        hidden("code", 6, "Sigmoid", Source=["in", "side"], Sparse=True),
        hidden("mix", 6, "Tanh", Source="code", BatchNormalization=True),
        {"Name": "out", "Kind": "Output", "N": 15, "DataSet": "x", "Source": "mix", "Activation": "Sigmoid",
         "SharedWeights": {"InputLayer": "mix", "SourceInputLayer": "in", "SourceOutputLayer": "code",
                           "Transposed": True}},
    ], ErrorFunction="CrossEntropy", SparsenessPenalty={"p": 0.2, "beta": 0.5}, DeltaBoost={"one": 1, "zero": 1})
    x = random_batch(9, 15, 6, seed=3)
    side = torch.randn(9, 3, dtype=torch.float64)
    check(net, {"in": x, "side": side}, {"out": x}, probes=10)


def test_delta_norm_clips_each_example_gradient():
    net = network([{"Name": "in", "N": 4, "DataSet": "x"},
                   {"Name": "out", "N": 3, "DataSet": "y", "Activation": "Linear", "DeltaNorm": 0.01}],
                  ErrorFunction="L2")
    x = torch.randn(5, 4, dtype=torch.float64)
    t = torch.randn(5, 3, dtype=torch.float64) * 10
    loss, _ = net.loss({"in": x}, {"out": t}, Noise(0, 1, 0))
    (loss / 5).backward()
    z = x @ net.weights["w0"].detach() + net.biases["b0"].detach()
    delta = z - t
    clipped = delta * torch.clamp(0.01 / delta.norm(dim=1, keepdim=True), max=1)
    torch.testing.assert_close(net.biases["b0"].grad, clipped.sum(0) / 5)
