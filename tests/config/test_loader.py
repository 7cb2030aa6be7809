"""Loading DSSTNE JSON: defaults, case-insensitivity, aliases, deprecated spellings, examples."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest

from destiny.config import (
    Activation,
    ErrorFunction,
    LayerKind,
    LayerType,
    PoolingFunction,
    WeightInitScheme,
    dumps_config,
    load_config,
    loads_config,
)
from destiny.errors import ConfigWarning

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples" / "configs").glob("*.json"))


def minimal(**top) -> dict:
    doc = {"Layers": [{"N": "auto", "DataSet": "in", "Sparse": True}, {"N": 8},
                      {"N": "auto", "DataSet": "out"}]}
    doc.update(top)
    return doc


def load(doc) -> object:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return loads_config(json.dumps(doc), source="net.json")


def test_dsstne_defaults():
    cfg = load(minimal())
    assert cfg.version == 0.9 and cfg.name == ""
    assert cfg.shuffle_indices is True
    assert cfg.error_function == ErrorFunction.CROSS_ENTROPY
    assert (cfg.smce.one_target, cfg.smce.zero_target, cfg.smce.one_scale, cfg.smce.zero_scale) == (0.9, 0.1, 1.0, 1.0)
    assert (cfg.lrn.k, cfg.lrn.n, cfg.lrn.alpha, cfg.lrn.beta) == (2.0, 5, 0.0001, 0.75)
    assert cfg.maxout.k == 2
    assert (cfg.relu_slope, cfg.elu_alpha, cfg.selu_lambda) == (1.0, 1.0, 1.050701)
    assert cfg.denoising.p == 0 and cfg.sparseness_penalty.beta == 0 and cfg.decay == 0
    assert (cfg.delta_boost.one, cfg.delta_boost.zero) == (1.0, 1.0)
    inp, hidden, out = cfg.layers
    assert [layer.kind for layer in cfg.layers] == [LayerKind.INPUT, LayerKind.HIDDEN, LayerKind.OUTPUT]
    assert [layer.name for layer in cfg.layers] == ["Input0", "Hidden1", "Output2"]
    assert hidden.sources == ("Input0",) and out.sources == ("Hidden1",) and inp.sources == ()
    assert hidden.activation == Activation.SIGMOID and hidden.type == LayerType.FULLY_CONNECTED
    assert hidden.weight_init.scheme == WeightInitScheme.XAVIER
    assert (hidden.weight_init.scale, hidden.weight_init.bias) == (1.0, 0.0)
    assert inp.is_auto and inp.sparse and hidden.n == 8
    assert cfg.relu_slope_of(hidden) == 1.0


def test_keys_and_enum_values_are_case_insensitive_names_are_not():
    cfg = load({"version": 0.8, "ERRORFUNCTION": "scaledmarginalcrossentropy",
                "layers": [{"kind": "INPUT", "n": "AUTO", "dataset": "In", "name": "in"},
                           {"NAME": "h", "Activation": "rectifiedlinear", "n": [4, 2],
                            "weightinit": {"scheme": "gaussian", "SCALE": 0.5}},
                           {"Name": "out", "n": 3, "DataSet": "out", "Activation": "softmax",
                            "source": "h"}]})
    assert cfg.error_function == ErrorFunction.SCALED_MARGINAL_CROSS_ENTROPY
    assert cfg.layers[0].dataset == "In" and cfg.layers[0].name == "in"
    assert cfg.layers[1].activation == Activation.RELU and cfg.layers[1].n == (4, 2)
    assert cfg.layers[1].weight_init.scheme == WeightInitScheme.GAUSSIAN
    assert cfg.layers[2].activation == Activation.SOFTMAX


@pytest.mark.parametrize("spelling,member", [
    ("Relu", Activation.RELU), ("RectifiedLinear", Activation.RELU), ("LRelu", Activation.LEAKY_RELU),
    ("LeakyRectifiedLinear", Activation.LEAKY_RELU), ("ELU", Activation.ELU),
    ("ExponentialLinear", Activation.ELU), ("SELU", Activation.SELU),
    ("ScaledExponentialLinear", Activation.SELU), ("SoftPlus", Activation.SOFTPLUS),
    ("SoftSign", Activation.SOFTSIGN), ("Tanh", Activation.TANH), ("Linear", Activation.LINEAR),
])
def test_activation_spellings(spelling, member):
    doc = minimal()
    doc["Layers"][1]["Activation"] = spelling
    assert load(doc).layers[1].activation == member


def test_network_aliases():
    cfg = load(minimal(LRN={"k": 1, "n": 3}, Slope=0.2, DataScaledMarginalCrossEntropy={"oneScale": 30},
                       ErrorFunction="Cross Entropy"))
    assert cfg.lrn.k == 1 and cfg.lrn.n == 3 and cfg.relu_slope == 0.2 and cfg.smce.one_scale == 30
    assert cfg.error_function == ErrorFunction.CROSS_ENTROPY


def test_single_layer_object_and_comments_are_accepted():
    text = """// DSSTNE's jsoncpp tolerates comments
    { "Layers": [ /* the input */ {"N": 4, "DataSet": "a"}, {"N": 2, "DataSet": "b"} ],
      "Name": "has // inside a string" }"""
    cfg = loads_config(text)
    assert cfg.name == "has // inside a string" and len(cfg.layers) == 2


def test_comment_field_is_kept():
    cfg = load(minimal(Comment=["line one", "line two"]))
    assert cfg.comment == "line one\nline two"


def test_skip_shared_weights_pooling_and_per_layer_values():
    cfg = load({"Layers": [
        {"Name": "in", "N": 6, "DataSet": "x", "Sparse": True},
        {"Name": "enc", "N": 4, "Activation": "LRelu", "RELUSlope": 0.1, "SparsenessPenalty": {"p": 0.1, "beta": 3}},
        {"Name": "mid", "N": 4, "Skip": "enc", "Activation": "SELU", "ELUAlpha": 1.67, "SELULambda": 1.05},
        {"Name": "dec", "Kind": "Output", "N": 6, "DataSet": "x", "Source": "mid",
         "SharedWeights": {"InputLayer": "mid", "SourceInputLayer": "in", "SourceOutputLayer": "enc",
                           "Transposed": True}},
    ]})
    enc, mid, dec = cfg.layers[1:]
    assert cfg.relu_slope_of(enc) == 0.1 and cfg.sparseness_penalty_of(enc).beta == 3
    assert mid.skips == ("enc",) and cfg.elu_alpha_of(mid) == 1.67
    assert dec.shared_weights[0].transposed and dec.shared_weights[0].source_output_layer == "enc"


DEPRECATED = [
    (minimal(WeightData="w.nc"), "'WeightData' is what DSSTNE's docs write", lambda c: c.weights_data == "w.nc"),
    (minimal(ErrorFunction="SMCE"), "'SMCE' is what DSSTNE's docs write",
     lambda c: c.error_function == ErrorFunction.SCALED_MARGINAL_CROSS_ENTROPY),
    (minimal(SELUAlpha=1.5), "write 'ELUAlpha'", lambda c: c.elu_alpha == 1.5),
]


@pytest.mark.parametrize("doc,message,check", DEPRECATED)
def test_deprecated_top_level_spellings_load_with_a_warning(doc, message, check):
    with pytest.warns(ConfigWarning, match=message):
        cfg = loads_config(json.dumps(doc), source="net.json")
    assert check(cfg)


def test_deprecated_layer_spellings_load_with_a_warning():
    doc = {"Layers": [
        {"Name": "in", "Dimensions": [8, 8, 1], "DataSet": "img"},
        {"Name": "pool", "Kind": "Pooling", "Function": "Max", "Kernel": [2, 2], "KernelStride": [2, 2]},
        {"Name": "conv", "Type": "Convolution", "N": 3, "Kernel": [3, 3], "Sources": ["pool"]},
        {"Name": "h", "N": 12, "SparsenessPenalty": True, "Sparse": True},
        {"Name": "out", "Kind": "Output", "N": 12, "DataSet": "o", "Skips": "h",
         "SharedWeights": [{"InputLayer": "h", "SourceInputLayer": "h", "SourceOutputLayer": "h2",
                            "Transpose": True}]},
        {"Name": "h2", "Kind": "Hidden", "N": 12, "Source": "h"},
    ]}
    with pytest.warns(ConfigWarning) as record:
        cfg = loads_config(json.dumps(doc), source="net.json")
    text = "\n".join(str(w.message) for w in record)
    for spelling in ("'Dimensions'", '"Kind": "Pooling"', "'Convolution'", "'Sources'",
                     "a Boolean here", "'Skips'", "'Transpose'"):
        assert spelling in text, spelling
    pool, conv = cfg.layers[1], cfg.layers[2]
    assert pool.kind == LayerKind.HIDDEN and pool.type == LayerType.POOLING
    assert pool.pooling_function == PoolingFunction.MAX
    assert conv.type == LayerType.CONVOLUTIONAL and conv.sources == ("pool",)
    assert cfg.layers[0].n == (8, 8, 1) and cfg.layers[3].sparseness_penalty is None
    assert cfg.layers[4].skips == ("h",) and cfg.layers[4].shared_weights[0].transposed


def test_never_implemented_activations_warn_and_round_trip():
    doc = minimal()
    doc["Layers"][1]["Activation"] = "ReluMax"
    with pytest.warns(ConfigWarning, match="never implemented"):
        cfg = loads_config(json.dumps(doc))
    assert cfg.layers[1].activation == Activation.RELU_MAX


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_configs_load_and_round_trip(path):
    cfg = load_config(path)
    assert loads_config(dumps_config(cfg)) == cfg


def test_dsstne_repository_configs_load(shared_data):
    paths = sorted((shared_data / "dsstne-configs").glob("*.json"))
    assert len(paths) >= 10
    for path in paths:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            cfg = load_config(path)
        assert loads_config(dumps_config(cfg)) == cfg
