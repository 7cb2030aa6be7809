"""Every kind of bad network description gets a ConfigError that says what, where and how."""

from __future__ import annotations

import copy
import json
import warnings

import pytest

from destiny.config import loads_config
from destiny.errors import ConfigError

BASE = {
    "Version": 0.8,
    "Layers": [
        {"Name": "Input", "Kind": "Input", "N": "auto", "DataSet": "input", "Sparse": True},
        {"Name": "Hidden1", "Kind": "Hidden", "N": 16, "Activation": "Relu"},
        {"Name": "Hidden2", "Kind": "Hidden", "N": 16, "Activation": "Relu"},
        {"Name": "Output", "Kind": "Output", "N": "auto", "DataSet": "output", "Sparse": True},
    ],
    "ErrorFunction": "ScaledMarginalCrossEntropy",
}


def edit(change):
    doc = copy.deepcopy(BASE)
    change(doc)
    return json.dumps(doc)


def set_layer(i, **kv):
    def change(doc):
        doc["Layers"][i].update(kv)
    return change


def drop_layer_key(i, key):
    def change(doc):
        del doc["Layers"][i][key]
    return change


def set_top(**kv):
    return lambda doc: doc.update(kv)


CASES = {
    # unknown keys, with the closest valid key
    "misspelt layer key": (set_layer(2, pDropuot=0.5),
                           "net.json: Layers[2].pDropuot (layer 'Hidden2'): unknown key; did you mean 'pDropout'?"),
    "misspelt top key": (set_top(ShufleIndices=False),
                         "net.json: ShufleIndices: unknown key; did you mean 'ShuffleIndices'?"),
    "layer key at top level": (set_top(Activation="Relu"),
                               "'Activation' is a layer key: put it inside a layer of Layers"),
    "nested unknown key": (set_layer(1, WeightInit={"Scheme": "Gaussian", "Sclae": 0.1}),
                           "Layers[1].WeightInit.Sclae (layer 'Hidden1'): unknown key; did you mean 'Scale'?"),
    "unknown key far from all": (set_layer(1, Zzzzzz=1), "Layers[1].Zzzzzz (layer 'Hidden1'): unknown key; valid keys are "),
    # keys valid elsewhere but not on this kind
    "DataSet on Hidden": (set_layer(1, DataSet="input"),
                          "Layers[1].DataSet (layer 'Hidden1'): 'DataSet' is not allowed on a Hidden layer; it belongs on "
                          "Input and Output layers"),
    "Activation on Input": (set_layer(0, Activation="Relu"),
                            "Layers[0].Activation (layer 'Input'): 'Activation' is not allowed on an Input layer"),
    "BatchNorm on Output": (set_layer(3, BatchNormalization=True),
                            "'BatchNormalization' is not allowed on an Output layer; it belongs on Hidden layers"),
    "Source on Input": (set_layer(0, Source="Hidden1"), "'Source' is not allowed on an Input layer"),
    # types and ranges
    "negative N": (set_layer(1, N=-3), 'Layers[1].N (layer \'Hidden1\'): must be a positive integer, a list '
                                       'of 1 to 4 positive integers, or "auto"; got -3'),
    "N of 5 dims": (set_layer(1, N=[1, 2, 3, 4, 5]), "a list of 1 to 4 positive integers"),
    "N as other string": (set_layer(1, N="big"), "got 'big'"),
    "auto on Hidden": (set_layer(1, N="auto"), 'Layers[1].N (layer \'Hidden1\'): "auto" is only for Input and Output layers'),
    "dropout out of range": (set_layer(1, pDropout=1.5), "Layers[1].pDropout (layer 'Hidden1'): must be a number in [0, 1); got 1.5"),
    "dropout is a string": (set_layer(1, pDropout="0.5"), "must be a finite number in [0, 1); got '0.5'"),
    "Sparse not bool": (set_layer(0, Sparse="yes"), "Layers[0].Sparse (layer 'Input'): must be true or false; got 'yes'"),
    "bad activation": (set_layer(1, Activation="Swish"), "Layers[1].Activation (layer 'Hidden1'): unknown value 'Swish'; must be one of Sigmoid, Tanh, Relu"),
    "bad error function": (set_top(ErrorFunction="MSE"), "net.json: ErrorFunction: unknown value 'MSE'; must be one of L1, L2, CrossEntropy"),
    "bad scheme": (set_layer(1, WeightInit={"Scheme": "He"}), "Layers[1].WeightInit.Scheme (layer 'Hidden1'): unknown value 'He'"),
    "bias as string": (set_layer(1, WeightInit={"Bias": "N(0,1)"}), "Layers[1].WeightInit.Bias (layer 'Hidden1'): must be a finite number; got 'N(0,1)'"),
    "negative weight norm": (set_layer(1, WeightNorm=-1), "Layers[1].WeightNorm (layer 'Hidden1'): must be a number >= 0; got -1"),
    "SMCE target out of range": (set_top(ScaledMarginalCrossEntropy={"oneTarget": 2}),
                                 "ScaledMarginalCrossEntropy.oneTarget: must be a number in [0, 1]; got 2"),
    "denoising p = 1": (set_top(Denoising={"p": 1.0}), "Denoising.p: must be a number in [0, 1); got 1.0"),
    "nested not object": (set_top(Denoising=0.2), "net.json: Denoising: must be a JSON object {...}; got 0.2"),
    "Layers not list": (set_top(Layers="Input"), "net.json: Layers: must be a list of layer objects; got 'Input'"),
    "Layers empty": (set_top(Layers=[]), "net.json: Layers: is empty"),
    "kernel of 4 axes": (set_layer(1, Type="Convolutional", Kernel=[3, 3, 3, 3]),
                         "Layers[1].Kernel (layer 'Hidden1'): must be a positive integer or a list of 1 to 3 positive integers"),
    "Source not string": (set_layer(1, Source=7), "Layers[1].Source (layer 'Hidden1'): must be a layer name or a non-empty list of layer names; got 7"),
    "shuffle as number": (set_top(ShuffleIndices=0), "ShuffleIndices: must be true or false; got 0"),
    "version too old": (set_top(Version=0.6), "net.json: Version: is 0.6; DSSTNE's format starts at 0.7"),
    # cross-field
    "duplicate names": (set_layer(2, Name="Hidden1"),
                        "Layers[2].Name: the layer name 'Hidden1' is already used by Layers[1]; layer names must be unique"),
    "Source names no layer": (set_layer(2, Source="Hiden1"),
                              "Layers[2].Source (layer 'Hidden2'): names no layer 'Hiden1'; did you mean 'Hidden1'?"),
    "Skip names no layer": (set_layer(2, Skip="Nothing"), "Layers[2].Skip (layer 'Hidden2'): names no layer 'Nothing'"),
    "own Source": (set_layer(2, Source="Hidden2"), "a layer cannot be its own Source"),
    "Output without DataSet": (drop_layer_key(3, "DataSet"),
                               "Layers[3] (layer 'Output'): an Output layer needs a 'DataSet'"),
    "Input without DataSet": (drop_layer_key(0, "DataSet"), "Layers[0] (layer 'Input'): an Input layer needs a 'DataSet'"),
    "Hidden without N": (drop_layer_key(1, "N"), "Layers[1] (layer 'Hidden1'): has no 'N'"),
    "cycle": (set_layer(1, Source=["Input", "Hidden2"]),
              "net.json: Layers: the layers' Sources and Skips form a cycle: "),
    "no Input": (lambda doc: [layer.update(Kind="Hidden") for layer in doc["Layers"][:1]] and None,
                 "'DataSet' is not allowed on a Hidden layer"),
    "pooling without function": (set_layer(2, Type="Pooling"), "Layers[2] (layer 'Hidden2'): a Pooling layer needs a 'Function'"),
    "function on FC layer": (set_layer(2, Function="Max"), "Layers[2].Function (layer 'Hidden2'): is only for Pooling layers"),
    "dot product with one source": (set_layer(2, Type="Pooling", Function="DotProduct"),
                                    "DotProduct pooling compares its first source with each other source"),
    "pooling on sparse input": (set_layer(1, Type="Pooling", Function="Max"),
                                "Pooling layers need dense (image-like) input, but 'Input' is a sparse Input layer"),
    "shared weights of a non-source": (set_layer(3, SharedWeights={"InputLayer": "Hidden1", "SourceInputLayer": "Input",
                                                                   "SourceOutputLayer": "Hidden1"}),
                                       "Layers[3].SharedWeights.InputLayer (layer 'Output'): 'Hidden1' is not a Source of this layer"),
    "shared weights of no matrix": (set_layer(3, SharedWeights={"InputLayer": "Hidden2", "SourceInputLayer": "Input",
                                                                "SourceOutputLayer": "Hidden2"}),
                                    "there is no weight matrix Input → Hidden2"),
    "DSMCE with softmax": (lambda doc: (doc.update(ErrorFunction="DataScaledMarginalCrossEntropy"),
                                        doc["Layers"][3].update(Activation="SoftMax")),
                           "DataScaledMarginalCrossEntropy is not defined for SoftMax outputs"),
    "Kind Pooling with other Type": (set_layer(2, Kind="Pooling", Type="FullyConnected", Function="Max"),
                                     "'Kind' is \"Pooling\" but 'Type' is 'FullyConnected'"),
}


@pytest.mark.parametrize("change,message", CASES.values(), ids=list(CASES))
def test_error_message(change, message):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # some cases also use spellings that warn
        with pytest.raises(ConfigError) as info:
            loads_config(edit(change), source="net.json")
    assert message in str(info.value)
    assert str(info.value).startswith("net.json: ")


@pytest.mark.parametrize("text,message", [
    ('{"Layers": [}', "net.json: line 1, column 13: invalid JSON: Expecting value"),
    ('{"Layers": []', "net.json: line 1, column 14: invalid JSON"),
    ('{"Version": NaN, "Layers": []}', "net.json: NaN is not a JSON number; write a finite number"),
    ('{"Version": Infinity}', "Infinity is not a JSON number"),
    ('{"Layers": [], /* open', "net.json: line 1: a /* comment is never closed; add */"),
    ('[1, 2]', "net.json: (top level): must be a JSON object {...}; got a list"),
    ('{"Layers": [{"N": 4, "n": 5, "DataSet": "x"}]}', "net.json: Layers[0] (layer 'Input0'): 'N' is given twice (as 'N' and 'n'); keep one"),
    ('{"Name": "a", "Name": "b", "Layers": []}', "'Name' is given twice"),
    ('{"Name": "x"}', "net.json: (top level): the network has no 'Layers'"),
    ('{"Layers": [{"N": 4, "DataSet": "x"}, {"N": 2, "Kind": "Gizmo"}]}', "Layers[1].Kind: unknown value 'Gizmo'; must be one of Input, Hidden, Output or Target"),
])
def test_invalid_json_documents(text, message):
    with pytest.raises(ConfigError) as info:
        loads_config(text, source="net.json")
    assert message in str(info.value)


def test_not_utf8(tmp_path):
    from destiny.config import load_config

    path = tmp_path / "net.json"
    path.write_bytes(b'{"Name": "\xff\xfe"}')
    with pytest.raises(ConfigError, match="net.json: not UTF-8 text"):
        load_config(path)


def test_config_error_is_a_value_error():
    with pytest.raises(ValueError):
        loads_config("{}")
