"""Hypothesis: generated and mutated JSON documents give a config or a ConfigError, nothing else;
every config that loads writes back to JSON that loads to an equal config."""

from __future__ import annotations

import copy
import json
import warnings

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from destiny.config import dumps_config, loads_config
from destiny.errors import ConfigError

KEYS = ["Version", "Name", "Kind", "ErrorFunction", "Layers", "ShuffleIndices", "Denoising", "p",
        "SparsenessPenalty", "beta", "DeltaBoost", "one", "zero", "ScaledMarginalCrossEntropy",
        "oneTarget", "LRN", "k", "n", "alpha", "Maxout", "RELUSlope", "Slope", "ELUAlpha", "Decay",
        "N", "DataSet", "Sparse", "pDropout", "Source", "Skip", "Activation", "WeightInit", "Scheme",
        "Scale", "Bias", "Type", "Function", "Kernel", "KernelStride", "BatchNormalization",
        "SharedWeights", "InputLayer", "SourceInputLayer", "SourceOutputLayer", "Transposed",
        "WeightNorm", "DeltaNorm", "Comment", "Dimensions", "WeightData", "sources", "kind", "NAME"]
WORDS = ["Input", "Hidden", "Output", "Target", "Pooling", "auto", "Relu", "Sigmoid", "SoftMax",
         "LRelu", "SMCE", "L2", "CrossEntropy", "ScaledMarginalCrossEntropy", "Gaussian", "Xavier",
         "Max", "LRN", "Convolutional", "FullyConnected", "in", "out", "h", "Hidden1", ""]

scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 3000), st.floats(allow_nan=False, allow_infinity=False, width=32),
                    st.sampled_from(WORDS), st.text(max_size=8))
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=6), inner, max_size=5)),
    max_leaves=25,
)

VALID = {
    "Version": 0.8, "Name": "net", "ErrorFunction": "ScaledMarginalCrossEntropy",
    "Denoising": {"p": 0.2}, "SparsenessPenalty": {"p": 0.5, "beta": 2.0},
    "Layers": [
        {"Name": "in", "Kind": "Input", "N": "auto", "DataSet": "in", "Sparse": True},
        {"Name": "h1", "N": 64, "Activation": "Relu", "pDropout": 0.3, "WeightInit": {"Scheme": "Gaussian", "Scale": 0.01}},
        {"Name": "h2", "N": 64, "Activation": "Sigmoid", "Sparse": True, "Skip": "h1"},
        {"Name": "out", "Kind": "Output", "N": "auto", "DataSet": "out", "Sparse": True,
         "SharedWeights": {"InputLayer": "h2", "SourceInputLayer": "h1", "SourceOutputLayer": "h2"}},
    ],
}


def _load(document):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return loads_config(json.dumps(document), source="fuzz.json")
        except ConfigError:
            return None


def _round_trip(config):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert loads_config(dumps_config(config)) == config


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(json_values)
def test_generated_documents(document):
    config = _load(document)
    if config is not None:
        _round_trip(config)


@st.composite
def mutated(draw):
    doc = copy.deepcopy(VALID)
    for _ in range(draw(st.integers(1, 4))):
        layers = [x for x in doc.get("Layers", []) if isinstance(x, dict)] if isinstance(doc.get("Layers"), list) else []
        target = doc if not layers or draw(st.booleans()) else draw(st.sampled_from(layers))
        action = draw(st.sampled_from(["set", "delete", "rename"]))
        if action == "set":
            target[draw(st.sampled_from(KEYS))] = draw(json_values)
        elif target and action == "delete":
            del target[draw(st.sampled_from(sorted(target)))]
        elif target:
            key = draw(st.sampled_from(sorted(target)))
            target[draw(st.sampled_from(KEYS) | st.text(max_size=6))] = target.pop(key)
    return doc


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_documents(document):
    config = _load(document)
    if config is not None:
        _round_trip(config)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_arbitrary_text(text):
    try:
        loads_config(text)
    except ConfigError:
        pass


def test_valid_document_loads():
    assert _load(VALID) is not None
