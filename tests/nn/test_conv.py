"""Convolutional and Pooling layers against direct loop implementations of DSSTNE's definitions
(reference/dsstne.md §1.3, §1.8): DSSTNE's memory layout (x fastest, channels slowest), its
padding rule, Max/Average (padding excluded), LRN, Maxout, DotProduct, Cosine, per-channel batch
norm, and a conv network's save → load → predict identity."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from destiny.config.shapes import output_size
from destiny.nn.conv import padding
from destiny.nn.network import Network
from destiny.nn.noise import Noise
from tests.helpers import config


def build(layers, dtype=torch.float64, **top) -> Network:
    top.setdefault("ErrorFunction", "L2")
    return Network.from_config(config(layers, **top), seed=3, dtype=dtype)


def image_input(dims, name="in"):
    return {"Name": name, "Kind": "Input", "Type": "Convolutional", "N": list(dims), "DataSet": "x"}


def output(n=2, source=None):
    layer = {"Name": "out", "Kind": "Output", "N": n, "DataSet": "y", "Activation": "Linear"}
    if source:
        layer["Source"] = source
    return layer


def as_image(x: np.ndarray, dims) -> np.ndarray:
    """(batch, units) in DSSTNE order → [b][c][x, y, z] indexed arrays (x first)."""
    spatial, channels = dims[:-1], dims[-1]
    return x.reshape(len(x), channels, *reversed(spatial)).transpose(0, 1, *range(len(dims), 1, -1))


def flat(y: np.ndarray) -> np.ndarray:
    """[b][c][x, y, z] → (batch, units) in DSSTNE order."""
    return y.transpose(0, 1, *range(y.ndim - 1, 1, -1)).reshape(len(y), -1)


def windows(spatial, kernel, stride):
    """For each output position: the input positions of its window (padding positions kept,
    as possibly out-of-range coordinates)."""
    outs = [output_size(w, k, s) for w, k, s in zip(spatial, kernel, stride)]
    pads = [padding(w, k, s) for w, k, s in zip(spatial, kernel, stride)]
    for pos in itertools.product(*(range(n) for n in outs)):
        cells = [tuple(p * s - pad + d for p, s, pad, d in zip(pos, stride, pads, offs))
                 for offs in itertools.product(*(range(k) for k in kernel))]
        yield pos, cells, list(itertools.product(*(range(k) for k in kernel)))


def inside(cell, spatial) -> bool:
    return all(0 <= c < w for c, w in zip(cell, spatial))


def conv_loops(img, w, b, spatial, kernel, stride):
    """img [b][c][x...], w (out, in, kx...) → [b][o][x'...]"""
    outs = [output_size(s_, k, st) for s_, k, st in zip(spatial, kernel, stride)]
    y = np.zeros((img.shape[0], w.shape[0], *outs))
    for pos, cells, offs in windows(spatial, kernel, stride):
        acc = np.tile(b, (img.shape[0], 1)).astype(np.float64)
        for cell, off in zip(cells, offs):
            if inside(cell, spatial):
                acc += img[(slice(None), slice(None)) + cell] @ w[(slice(None), slice(None)) + off].T
        y[(slice(None), slice(None)) + pos] = acc
    return y


def pool_loops(img, spatial, kernel, stride, fn):
    outs = [output_size(s_, k, st) for s_, k, st in zip(spatial, kernel, stride)]
    y = np.zeros((img.shape[0], img.shape[1], *outs))
    for pos, cells, _ in windows(spatial, kernel, stride):
        vals = [img[(slice(None), slice(None)) + c] for c in cells if inside(c, spatial)]
        y[(slice(None), slice(None)) + pos] = np.max(vals, 0) if fn == "Max" else np.mean(vals, 0)
    return y


CONV_CASES = [  # (input dims, kernel, stride)
    ((7, 5, 2), [3, 1], [1, 1]),     # non-square: x and y must not be swapped
    ((7, 5, 2), [3, 3], [2, 1]),     # stride only along x
    ((6, 5, 2), [2, 2], [1, 1]),     # even kernel at stride 1: the first w windows
    ((7, 5, 2), [3, 5], [1, 1]),     # kernel as tall as the input: one output row
    ((9, 3), [4], [2]),              # 1-D
    ((5, 4, 3, 2), [3, 3, 2], [1, 2, 1]),  # 3-D
    ((6, 6, 1), [3, 3], [3, 3]),
]


@pytest.mark.parametrize("dims,kernel,stride", CONV_CASES)
def test_convolution_matches_dsstnes_definition(dims, kernel, stride):
    net = build([image_input(dims),
                 {"Name": "c", "Type": "Convolutional", "N": 3, "Kernel": kernel, "KernelStride": stride,
                  "Activation": "Linear", "WeightInit": {"Scheme": "Gaussian", "Scale": 0.5, "Bias": 0.3}},
                 output()])
    x = np.random.default_rng(0).normal(size=(4, math.prod(dims)))
    got = net.predict({"in": torch.from_numpy(x)}, layers=["c"])["c"].numpy()
    spatial = dims[:len(kernel)]
    w = net.weights["w0"].detach().numpy()
    want = flat(conv_loops(as_image(x, dims), w, net.biases["b0"].detach().numpy(), spatial, kernel, stride))
    assert net.dims["c"] == tuple(output_size(a, k, s) for a, k, s in zip(spatial, kernel, stride)) + (3,)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("fn", ["Max", "Average"])
@pytest.mark.parametrize("dims,kernel,stride", [((7, 5, 2), [3, 3], [1, 1]), ((7, 6, 2), [3, 2], [2, 2]),
                                                ((6, 5, 3), [2, 2], [1, 1]), ((9, 2), [3], [2]),
                                                ((4, 4, 3, 2), [2, 2, 3], [2, 2, 1]),
                                                ((5, 4, 3, 2), [2, 3, 2], [1, 1, 1])])
def test_pooling_matches_dsstnes_definition(fn, dims, kernel, stride):
    net = build([image_input(dims),
                 {"Name": "p", "Type": "Pooling", "Function": fn, "Kernel": kernel, "KernelStride": stride},
                 output()])
    x = np.random.default_rng(1).normal(size=(3, math.prod(dims)))
    got = net.predict({"in": torch.from_numpy(x)}, layers=["p"])["p"].numpy()
    want = flat(pool_loops(as_image(x, dims), dims[:len(kernel)], kernel, stride, fn))
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("n", [5, 3])
def test_lrn_uses_the_networks_parameters_with_cudnns_alpha_over_n(n):
    dims = (3, 2, 7)
    net = build([image_input(dims), {"Name": "l", "Type": "Pooling", "Function": "LRN"}, output()],
                LRN={"k": 2, "n": n, "alpha": 0.5, "beta": 0.75})
    x = np.random.default_rng(2).normal(size=(2, math.prod(dims)))
    got = net.predict({"in": torch.from_numpy(x)}, layers=["l"])["l"].numpy()
    a = as_image(x, dims)  # [b][c][x][y]
    want = np.empty_like(a)
    for c in range(dims[-1]):
        lo, hi = max(0, c - n // 2), min(dims[-1], c + (n - 1) // 2 + 1)
        want[:, c] = a[:, c] / (2 + 0.5 / n * (a[:, lo:hi] ** 2).sum(1)) ** 0.75
    np.testing.assert_allclose(got, flat(want), rtol=1e-12)


def test_maxout_dot_product_and_cosine():
    layers = [{"Name": "a", "Kind": "Input", "N": 6, "DataSet": "a"},
              {"Name": "b", "Kind": "Input", "N": [3, 2], "DataSet": "b"},
              {"Name": "c", "Kind": "Input", "N": 6, "DataSet": "c"},
              {"Name": "m", "Type": "Pooling", "Function": "Maxout", "Source": ["a", "c"]},
              {"Name": "d", "Type": "Pooling", "Function": "DotProduct", "Source": ["a", "b", "c"]},
              {"Name": "k", "Type": "Pooling", "Function": "Cosine", "Source": ["a", "b", "c"]},
              output(source=["m", "d", "k"])]
    net = build(layers)
    rng = np.random.default_rng(3)
    a, b, c = (rng.normal(size=(5, 6)) for _ in range(3))
    got = net.predict({"a": torch.from_numpy(a), "b": torch.from_numpy(b), "c": torch.from_numpy(c)},
                      layers=["m", "d", "k"])
    assert net.dims["d"] == (2,) and net.dims["k"] == (2,)
    np.testing.assert_allclose(got["m"].numpy(), np.maximum(a, c))
    np.testing.assert_allclose(got["d"].numpy(), np.stack([(a * b).sum(1), (a * c).sum(1)], 1))
    cos = lambda u, v: (u * v).sum(1) / np.linalg.norm(u, axis=1) / np.linalg.norm(v, axis=1)  # noqa: E731
    np.testing.assert_allclose(got["k"].numpy(), np.stack([cos(a, b), cos(a, c)], 1))


def test_pooling_layers_apply_no_activation_and_sum_several_sources():
    dims = (4, 4, 2)
    net = build([image_input(dims, "i1"), {**image_input(dims, "i2"), "DataSet": "x2"},
                 {"Name": "p", "Type": "Pooling", "Function": "Max", "Kernel": [2, 2], "KernelStride": [2, 2],
                  "Source": ["i1", "i2"], "Activation": "Sigmoid"}, output(source="p")])
    rng = np.random.default_rng(4)
    x1, x2 = rng.normal(size=(2, 32)), rng.normal(size=(2, 32))
    got = net.predict({"i1": torch.from_numpy(x1), "i2": torch.from_numpy(x2)}, layers=["p"])["p"].numpy()
    want = sum(flat(pool_loops(as_image(x, dims), (4, 4), (2, 2), (2, 2), "Max")) for x in (x1, x2))
    np.testing.assert_allclose(got, want)


def test_convolution_batch_norm_is_per_channel():
    net = build([image_input((5, 4, 2)),
                 {"Name": "c", "Type": "Convolutional", "N": 3, "Kernel": [3, 3], "Activation": "Linear",
                  "BatchNormalization": True}, output()])
    assert net.bn_scale["c"].shape == (3,)
    x = torch.randn(6, 40, dtype=torch.float64)
    z = net.forward({"in": x}, Noise(0, 1, 0))["c"].view(6, 3, 4, 5)
    torch.testing.assert_close(z.mean((0, 2, 3)), torch.zeros(3, dtype=torch.float64), atol=1e-12, rtol=0)
    torch.testing.assert_close(z.var((0, 2, 3), unbiased=False), torch.ones(3, dtype=torch.float64),
                               atol=1e-3, rtol=0)


def test_conv_dropout_only_in_training_and_reproducible():
    net = build([image_input((6, 6, 1)),
                 {"Name": "c", "Type": "Convolutional", "N": 4, "Kernel": [3, 3], "Activation": "Relu",
                  "pDropout": 0.5, "WeightInit": {"Scheme": "Gaussian", "Scale": 1.0, "Bias": 1.0}}, output()])
    x = torch.randn(3, 36, dtype=torch.float64)
    plain = net.forward({"in": x})["c"]
    one = net.forward({"in": x}, Noise(7, 1, 0))["c"]
    again = net.forward({"in": x}, Noise(7, 1, 0))["c"]
    torch.testing.assert_close(one, again)
    dropped = one == 0
    assert 0.3 < dropped.double().mean() < 0.7
    torch.testing.assert_close(one[~dropped], 2 * plain[~dropped])
    assert ("dropout", "c") in net.noise_streams()


def test_xavier_fans_of_filters():
    net = build([image_input((8, 8, 3)),
                 {"Name": "c", "Type": "Convolutional", "N": 16, "Kernel": [3, 3], "WeightInit": {"Scheme": "Xavier"}},
                 output()], dtype=torch.float32)
    w = net.weights["w0"]
    assert tuple(w.shape) == (16, 3, 3, 3)
    bound = math.sqrt(6.0 / (3 * 9 + 16 * 9))
    assert w.abs().max() <= bound and w.abs().max() > 0.9 * bound


def test_weight_norm_of_filters_is_per_output_channel():
    net = build([image_input((5, 5, 2)),
                 {"Name": "c", "Type": "Convolutional", "N": 3, "Kernel": [3, 3], "WeightNorm": 0.1,
                  "WeightInit": {"Scheme": "Gaussian", "Scale": 1.0}}, output()])
    net.apply_weight_norms()
    norms = net.weights["w0"].detach().flatten(1).norm(dim=1)
    torch.testing.assert_close(norms, torch.full((3,), 0.1, dtype=torch.float64))


def test_conv_network_save_load_predict_identity(tmp_path):
    from destiny.train.checkpoint import load_network, save_network

    layers = [image_input((9, 9, 3)),
              {"Name": "c1", "Type": "Convolutional", "N": 4, "Kernel": [3, 2], "KernelStride": [1, 1],
               "Activation": "Relu", "BatchNormalization": True},
              {"Name": "n", "Type": "Pooling", "Function": "LRN"},
              {"Name": "p", "Type": "Pooling", "Function": "Max", "Kernel": [3, 3], "KernelStride": [2, 2]},
              {"Name": "c2", "Type": "Convolutional", "N": 4, "Kernel": [3, 3], "Activation": "Tanh", "Skip": "p"},
              {"Name": "h", "N": 6, "Activation": "Relu"},
              {"Name": "out", "Kind": "Output", "N": 4, "DataSet": "y", "Activation": "SoftMax"}]
    net = build(layers, dtype=torch.float32, LRN={"k": 1.5, "n": 3, "alpha": 0.01, "beta": 0.6})
    x = torch.randn(5, 9 * 9 * 3)
    net.forward({"in": x}, Noise(0, 1, 0))  # moves the batch-norm running averages
    path = tmp_path / "conv.nc"
    save_network(net, path)
    back = load_network(path)
    assert back.dims == net.dims and back.config.lrn == net.config.lrn
    for name, p in net.state_dict().items():
        if "bn_calls" not in name:  # a training counter, not part of DSSTNE's file
            torch.testing.assert_close(back.state_dict()[name], p, rtol=0, atol=0)
    torch.testing.assert_close(back.predict({"in": x})["out"], net.predict({"in": x})["out"], rtol=0, atol=0)


def test_count_parameters_includes_batch_norm_on_pooling_layers():
    """shapes.count_parameters (destiny check's figure) equals the built network's parameters,
    batch norm on a Pooling layer (one scale and shift per unit) included."""
    from destiny.config.shapes import count_parameters
    from destiny.nn.network import Network
    from tests.helpers import config

    cfg = config([{"Name": "in", "Kind": "Input", "N": [8, 8, 2], "DataSet": "in"},
                  {"Name": "c", "Type": "Convolutional", "N": 4, "Kernel": [3, 3], "Activation": "Relu"},
                  {"Name": "p", "Type": "Pooling", "Function": "Max", "Kernel": [2, 2], "KernelStride": [2, 2],
                   "BatchNormalization": True},
                  {"Name": "out", "Kind": "Output", "N": 3, "DataSet": "out", "Activation": "SoftMax"}],
                 ErrorFunction="CrossEntropy")
    net = Network.from_config(cfg, {"in": (8, 8, 2), "out": (3,)})
    counts = count_parameters(cfg, net.dims)
    assert counts["p"] == 2 * 4 * 4 * 4
    assert sum(counts.values()) == sum(p.numel() for p in net.parameters()) == 399


@pytest.mark.parametrize("shape", [(5, 3, 3, 3), (4, 2, 3, 5), (3, 2, 2, 3, 4), (4, 3, 5), (2, 2, 1, 1)],
                         ids=lambda s: "x".join(map(str, s)))
def test_torch_filters_is_the_permuted_view_forward_and_backward_bitwise(shape):
    """The filters in torch's layout by an index_select (``conv.torch_filters``) equal the
    permuted view, contiguous, and hand back the same gradient, contiguous in w's layout."""
    from destiny.nn.conv import torch_filters, torch_weight

    w = torch.randn(*shape, dtype=torch.float64)
    w.view(-1)[0] = -0.0
    got_w, want_w = w.clone().requires_grad_(), w.clone().requires_grad_()
    got, want = torch_filters(got_w), torch_weight(want_w)
    assert torch.equal(got, want) and got.is_contiguous()
    g = torch.randn(*want.shape, dtype=torch.float64)
    g.view(-1)[1] = -0.0
    got.backward(g)
    want.backward(g)
    assert got_w.grad.is_contiguous()
    assert torch.equal(got_w.grad.view(torch.int64), want_w.grad.contiguous().view(torch.int64))
