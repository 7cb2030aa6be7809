"""The attribute layout alone (no files): DSSTNE's padding rule, the filter extent, and, for
generated networks, that decoding what was encoded is a fixpoint and gives a valid config."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from destiny.config import LayerConfig, LayerKind, LayerType, dumps_config, loads_config
from destiny.config.shapes import WeightSpec, resolve_shapes, weight_specs
from destiny.errors import ConfigError
from destiny.io.network_file import (
    BatchNormArrays,
    NetworkFile,
    WeightArrays,
    from_file_layout,
    read_network,
    to_file_layout,
    write_network,
)
from destiny.io.network_decode import decode_network
from destiny.io.network_layout import encode_network, first_difference, weight_extent, window


@pytest.mark.parametrize("kernel,stride,source,padding", [
    ((3, 3), (1, 1), (32, 32, 3), (1, 1)),  # "same" at stride 1
    ((5, 4), (1, 1), (32, 32, 3), (2, 2)),
    ((3, 3), (2, 2), (32, 32, 3), (0, 0)),  # valid at larger strides
    ((3, 2), (2, 1), (32, 32, 3), (0, 1)),
    ((7,), (1,), (4, 2), (2,)),  # wider than the source: (k - n + 1) // 2
])
def test_padding_follows_dsstne(kernel, stride, source, padding):
    layer = LayerConfig(kind=LayerKind.HIDDEN, type=LayerType.CONVOLUTIONAL, name="c", n=4,
                        kernel=kernel, kernel_stride=stride, sources=("x",))
    assert window(layer, source) == (kernel, stride, padding)


def test_default_kernel_covers_every_axis_but_the_channels():
    layer = LayerConfig(kind=LayerKind.HIDDEN, type=LayerType.CONVOLUTIONAL, name="c", n=4, sources=("x",))
    assert window(layer, (8, 8, 3)) == ((1, 1), (1, 1), (0, 0))
    fc = LayerConfig(kind=LayerKind.HIDDEN, name="h", n=4, sources=("x",))
    assert window(fc, (8, 8, 3)) == ((1,), (1,), (0,))


def test_filter_extent_and_layout():
    spec = WeightSpec(0, "x", "c", (4, 3, 5, 2), 4, convolutional=True)  # (out, in, kx, ky)
    assert weight_extent(spec) == (4, 3, 2, 5, 1)  # width out, height in, length ky, depth kx
    w = np.arange(4 * 3 * 5 * 2, dtype=np.float32).reshape(4, 3, 5, 2)
    flat = to_file_layout(spec, w)
    assert flat[((1 * 3 + 2) * 2 + 1) * 5 + 3] == w[1, 2, 3, 1]  # [o][c][y][x]
    assert np.array_equal(from_file_layout(spec, flat), w)
    fc = WeightSpec(1, "a", "b", (3, 2), 2)
    assert weight_extent(fc) == (2, 3, 1, 1, 1)
    assert np.array_equal(to_file_layout(fc, np.arange(6, dtype=np.float32).reshape(3, 2)), np.arange(6))


# ---------------------------------------------------------------------------------------------
# generated networks

ACTIVATIONS = ["Sigmoid", "Tanh", "Relu", "Linear", "SoftPlus", "SoftSign", "SoftMax", "ELU", "LRelu", "SELU"]
SCHEMES = ["Xavier", "CaffeXavier", "Gaussian", "Uniform", "UnitBall", "Constant", "SELU"]
unit = st.floats(0, 1, width=32, exclude_max=True)
positive = st.floats(0, 100, width=32)
real = st.floats(-100, 100, width=32)


@st.composite
def layer_options(draw) -> dict:
    options = {}
    for key, value in [("Activation", st.sampled_from(ACTIVATIONS)), ("pDropout", unit), ("Sparse", st.booleans()),
                       ("WeightNorm", positive), ("DeltaNorm", positive), ("RELUSlope", real), ("ELUAlpha", real),
                       ("SELULambda", real),
                       ("WeightInit", st.fixed_dictionaries({"Scheme": st.sampled_from(SCHEMES), "Scale": real,
                                                             "Bias": real}))]:
        if draw(st.booleans()):
            options[key] = draw(value)
    return options


@st.composite
def dense_networks(draw) -> tuple[dict, dict]:
    layers = [{"Name": "in", "Kind": "Input", "N": "auto", "DataSet": "in", "Sparse": draw(st.booleans())}]
    hidden = []
    for k in range(draw(st.integers(1, 4))):
        names = ["in"] + hidden
        layer = {"Name": f"h{k}", "Kind": "Hidden", "Source": draw(st.lists(st.sampled_from(names), min_size=1,
                                                                            max_size=3, unique=True))}
        pooling = draw(st.sampled_from([None, None, "Maxout", "DotProduct", "Cosine", "LRN"]))
        if pooling and all(s != "in" for s in layer["Source"]):
            layer.update(Type="Pooling", Function=pooling)
        else:
            layer["N"] = draw(st.sampled_from([4, 4, 3, [2, 2]]))
            layer.update(draw(layer_options()))
            if draw(st.booleans()):
                layer["BatchNormalization"] = True
            if draw(st.booleans()):
                layer["SparsenessPenalty"] = {"p": draw(unit), "beta": draw(positive)}
            if hidden and draw(st.booleans()):
                layer["Skip"] = draw(st.sampled_from(hidden))
        layers.append(layer)
        hidden.append(layer["Name"])
    out = {"Name": "out", "Kind": "Output", "N": "auto", "DataSet": "out", "Source": hidden[-1]}
    out.update(draw(layer_options()))
    if draw(st.booleans()):
        out["SharedWeights"] = {"InputLayer": hidden[-1], "SourceInputLayer": "in", "SourceOutputLayer": "h0",
                                "Transposed": draw(st.booleans())}
    layers.append(out)
    document = {"Layers": layers, "Name": draw(st.text(max_size=5)), "Version": draw(st.sampled_from([0.7, 0.8, 0.81, 0.9]))}
    for key, value in [("RELUSlope", real), ("ELUAlpha", real), ("SELULambda", real), ("Decay", positive),
                       ("ShuffleIndices", st.booleans()), ("Kind", st.sampled_from(["FeedForward", "AutoEncoder"])),
                       ("ErrorFunction", st.sampled_from(["L1", "L2", "CrossEntropy", "ScaledMarginalCrossEntropy",
                                                          "Hinge", "L2Hinge"])),
                       ("SparsenessPenalty", st.fixed_dictionaries({"p": unit, "beta": positive})),
                       ("Denoising", st.fixed_dictionaries({"p": unit})),
                       ("DeltaBoost", st.fixed_dictionaries({"one": positive, "zero": positive})),
                       ("ScaledMarginalCrossEntropy", st.fixed_dictionaries(
                           {"oneTarget": unit, "zeroTarget": unit, "oneScale": positive, "zeroScale": positive})),
                       ("LRN", st.fixed_dictionaries({"k": real, "n": st.integers(1, 9), "alpha": real, "beta": real})),
                       ("Maxout", st.fixed_dictionaries({"k": st.integers(1, 9)}))]:
        if draw(st.booleans()):
            document[key] = draw(value)
    sizes = {"in": (draw(st.integers(1, 9)),), "out": (draw(st.sampled_from([4, 5])),)}
    return document, sizes


@st.composite
def conv_networks(draw) -> tuple[dict, dict]:
    axes = draw(st.integers(1, 2))
    window = st.lists(st.integers(1, 3), min_size=axes, max_size=axes)
    layers = [{"Name": "img", "Kind": "Input", "Type": "Convolutional", "N": "auto", "DataSet": "img"},
              {"Name": "c", "Type": "Convolutional", "N": draw(st.integers(1, 3)), "Kernel": draw(window),
               "KernelStride": draw(window), "BatchNormalization": draw(st.booleans()), **draw(layer_options())},
              {"Name": "p", "Type": "Pooling", "Function": draw(st.sampled_from(["Max", "Average"])),
               "Kernel": draw(window), "KernelStride": draw(window)},
              {"Name": "out", "Kind": "Output", "N": "auto", "DataSet": "out"}]
    if draw(st.booleans()):
        del layers[1]["Kernel"], layers[1]["KernelStride"]
    sizes = {"img": tuple(draw(st.integers(3, 7)) for _ in range(axes)) + (draw(st.integers(1, 2)),), "out": (3,)}
    return {"Layers": layers}, sizes


networks = st.one_of(dense_networks(), conv_networks())


def _build(document, sizes):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            config = loads_config(json.dumps(document))
            dims = resolve_shapes(config, sizes)
            return config, dims, weight_specs(config, dims)
        except ConfigError:
            return None


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(networks)
def test_decode_of_encode_is_a_fixpoint(generated):
    built = _build(*generated)
    assume(built is not None)
    config, dims, specs = built
    attrs = encode_network(config, dims, specs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        decoded = decode_network(attrs, "net.nc")
    assert decoded.dims == dims
    again = encode_network(decoded.config, decoded.dims, weight_specs(decoded.config, decoded.dims))
    assert again.keys() == attrs.keys()
    differs = first_difference(again, attrs)
    assert differs is None, differs
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert loads_config(dumps_config(decoded.config)) == decoded.config


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(networks, st.integers(0, 2**32 - 1))
def test_file_round_trip(tmp_path, generated, seed):
    built = _build(*generated)
    assume(built is not None)
    config, dims, specs = built
    rng = np.random.default_rng(seed)
    weights = [WeightArrays(s.input_layer, s.output_layer,
                            None if s.shared_from else rng.standard_normal(s.shape, dtype=np.float32),
                            rng.standard_normal(s.bias_size, dtype=np.float32), s.shared_from, s.transposed)
               for s in specs]
    from destiny.config.shapes import batch_norm_size
    batch_norm = {l.name: BatchNormArrays(*(rng.random(batch_norm_size(l, dims[l.name]), dtype=np.float32)
                                            for _ in range(4))) for l in config.layers if l.batch_norm}
    network = NetworkFile(config, dims, weights, batch_norm, info={"seed": seed})
    path = tmp_path / "net.nc"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        write_network(path, network)
        back = read_network(path)
    assert back.config == config and back.dims == dims and back.info == {"seed": seed}
    for a, b in zip(weights, back.weights):
        assert (a.weights is None and b.weights is None) or a.weights.tobytes() == b.weights.tobytes()
        assert a.bias.tobytes() == b.bias.tobytes()
    for name, arrays in batch_norm.items():
        assert back.batch_norm[name].running_variance.tobytes() == arrays.running_variance.tobytes()
