"""Finite differences in float64 against autograd for Convolutional and Pooling layers: conv in
1-3 D at several strides and kernels, each pooling function, LRN, Maxout, DotProduct, Cosine,
batch norm on a convolution, skips, and FullyConnected layers after convolutions."""

from __future__ import annotations

import math

import pytest
import torch

from destiny.nn.network import Network
from tests.helpers import config, random_batch
from tests.nn.test_gradients import check

GAUSS = {"Scheme": "Gaussian", "Scale": 0.4, "Bias": 0.1}


def net_of(layers, **top) -> Network:
    top.setdefault("ErrorFunction", "CrossEntropy")
    return Network.from_config(config(layers, **top), seed=11, dtype=torch.float64)


def image(dims, name="in", dataset="x"):
    return {"Name": name, "Kind": "Input", "Type": "Convolutional", "N": list(dims), "DataSet": dataset}


def conv(name, n, kernel, stride=None, act="Tanh", **extra):
    layer = {"Name": name, "Type": "Convolutional", "N": n, "Kernel": kernel, "Activation": act, "WeightInit": GAUSS}
    if stride:
        layer["KernelStride"] = stride
    layer.update(extra)
    return layer


def softmax_out(n=4, **extra):
    return {"Name": "out", "Kind": "Output", "N": n, "DataSet": "y", "Activation": "SoftMax",
            "WeightInit": GAUSS, **extra}


def run(net: Network, batch: int = 5, seed: int = 0, probes: int = 6) -> None:
    g = torch.Generator().manual_seed(seed)
    inputs = {layer.name: torch.randn(batch, net.units[layer.name], generator=g, dtype=torch.float64)
              for layer in net.input_layers()}
    (out,) = net.output_layers()
    targets = {out.name: random_batch(batch, net.units[out.name], 1, seed=seed + 1)}
    check(net, inputs, targets, probes=probes, seed=seed)


@pytest.mark.parametrize("dims,kernel,stride", [
    ((6, 5, 2), [3, 3], None), ((6, 5, 2), [3, 2], [2, 2]), ((6, 5, 2), [2, 2], None),
    ((8, 2), [3], [2]), ((4, 4, 3, 2), [3, 2, 2], [1, 2, 1])])
def test_convolution(dims, kernel, stride):
    run(net_of([image(dims), conv("c", 3, kernel, stride), softmax_out()]))


@pytest.mark.parametrize("fn,kernel,stride", [("Max", [3, 3], [2, 2]), ("Max", [2, 2], None),
                                              ("Average", [3, 3], None), ("Average", [3, 2], [2, 1])])
def test_pooling(fn, kernel, stride):
    pool = {"Name": "p", "Type": "Pooling", "Function": fn, "Kernel": kernel}
    if stride:
        pool["KernelStride"] = stride
    run(net_of([image((7, 6, 2)), conv("c", 3, [3, 3]), pool, softmax_out()]))


@pytest.mark.parametrize("fn", ["Max", "Average"])
def test_pooling_3d(fn):
    pool = {"Name": "p", "Type": "Pooling", "Function": fn, "Kernel": [2, 3, 2], "KernelStride": [2, 1, 2]}
    run(net_of([image((5, 4, 4, 2)), conv("c", 2, [3, 3, 3]), pool, softmax_out()]))


def test_lrn():
    run(net_of([image((5, 4, 2)), conv("c", 6, [3, 3], act="Relu"),
                {"Name": "l", "Type": "Pooling", "Function": "LRN"}, softmax_out()],
               LRN={"k": 1.0, "n": 3, "alpha": 0.5, "beta": 0.75}))


@pytest.mark.parametrize("fn", ["Maxout", "DotProduct", "Cosine"])
def test_maxout_dot_product_cosine(fn):
    layers = [image((4, 4, 2)), conv("a", 2, [3, 3]), conv("b", 2, [3, 3], Source="in"),
              conv("c", 2, [3, 3], Source="in"),
              {"Name": "p", "Type": "Pooling", "Function": fn, "Source": ["a", "b", "c"]},
              {**softmax_out(), "Source": "p"}]
    run(net_of(layers))


def test_batch_norm_on_a_convolution_skip_and_two_sources():
    layers = [image((5, 4, 2)), image((5, 4, 3), "side", "s"),
              conv("c", 3, [3, 3], Source=["in", "side"], BatchNormalization=True),
              conv("d", 3, [3, 3], act="ELU", Source="c", Skip="c"),
              {"Name": "h", "N": 5, "Activation": "Sigmoid", "Source": "d", "WeightInit": GAUSS},
              softmax_out()]
    net = net_of(layers)
    assert net.bn_scale["c"].shape == (3,)
    run(net, batch=6)


def test_fully_connected_after_convolution_and_pooling_with_l2():
    layers = [image((6, 6, 1)), conv("c", 2, [3, 3], [1, 1], act="Relu", WeightInit={**GAUSS, "Bias": 0.5}),
              {"Name": "p", "Type": "Pooling", "Function": "Max", "Kernel": [2, 2], "KernelStride": [2, 2]},
              {"Name": "h", "N": 4, "Activation": "Tanh", "WeightInit": GAUSS},
              {"Name": "out", "Kind": "Output", "N": 3, "DataSet": "y", "Activation": "Linear", "WeightInit": GAUSS}]
    net = net_of(layers, ErrorFunction="L2")
    assert math.prod(net.dims["p"]) == 18
    run(net)
