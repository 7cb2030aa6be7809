"""Layer dimensions, weight matrices and parameter counts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from destiny.config import load_config, loads_config
from destiny.config.shapes import count_parameters, output_size, parse_dims, resolve_shapes, weight_specs
from destiny.errors import ConfigError

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "configs"


def total(config, **dims):
    shapes = resolve_shapes(config, dims)
    return sum(count_parameters(config, shapes).values())


def test_movielens_20m_network_has_88548494_parameters():
    cfg = load_config(EXAMPLES / "movielens-20m.json")
    # 27278·1536 + 1536  +  2 · (1536·1536 + 1536)  +  1536·27278 + 27278
    assert total(cfg, input=(27278,), output=(27278,)) == 88_548_494


def test_alexnet_on_227x227x3_has_the_ungrouped_alexnet_count():
    cfg = load_config(EXAMPLES / "alexnet.json")
    shapes = resolve_shapes(cfg, {"input": (227, 227, 3), "output": (1000,)})
    dims = [shapes[layer.name] for layer in cfg.layers]
    assert dims[1] == (55, 55, 96) and dims[3] == (27, 27, 96) and dims[6] == (13, 13, 256)
    assert dims[10] == (6, 6, 256)
    # conv: 11·11·3·96+96, 5·5·96·256+256, 3·3·256·384+384, 3·3·384·384+384, 3·3·384·256+256;
    # fc: 9216·4096+4096, 4096·4096+4096, 4096·1000+1000 (AlexNet without its two GPU groups)
    assert total(cfg, input=(227, 227, 3), output=(1000,)) == 62_378_344


def test_dsstne_output_size_rule():
    assert output_size(227, 11, 4) == 55
    assert output_size(27, 5, 1) == 27  # "same" padding at stride 1
    assert output_size(2, 2, 2) == 1 and output_size(3, 5, 1) == 1


def test_shared_transposed_weights_store_only_a_bias():
    cfg = loads_config(json.dumps({"Layers": [
        {"Name": "in", "N": 100, "DataSet": "x", "Sparse": True},
        {"Name": "code", "N": 10},
        {"Name": "out", "N": 100, "DataSet": "x", "SharedWeights": {
            "InputLayer": "code", "SourceInputLayer": "in", "SourceOutputLayer": "code", "Transposed": True}},
    ]}))
    specs = weight_specs(cfg, resolve_shapes(cfg))
    assert [(s.input_layer, s.output_layer, s.shape, s.shared_from) for s in specs] == [
        ("in", "code", (100, 10), None), ("code", "out", (10, 100), ("in", "code"))]
    assert total(cfg) == 100 * 10 + 10 + 100


def test_multiple_sources_each_get_a_matrix_and_batch_norm_counts_scale_and_shift():
    cfg = loads_config(json.dumps({"Layers": [
        {"Name": "a", "N": 5, "DataSet": "a"}, {"Name": "b", "Kind": "Input", "N": 7, "DataSet": "b"},
        {"Name": "h", "N": 3, "Source": ["a", "b"], "BatchNormalization": True},
        {"Name": "o", "N": 2, "DataSet": "o"}]}))
    assert count_parameters(cfg, resolve_shapes(cfg))["h"] == (5 * 3 + 3) + (7 * 3 + 3) + 2 * 3


@pytest.mark.parametrize("layers,message", [
    ([{"Name": "in", "N": [8, 8, 3], "DataSet": "x"},
      {"Name": "c", "Type": "Convolutional", "N": 4, "Kernel": [9, 9]},
      {"Name": "o", "N": 2, "DataSet": "y"}],
     "Layers[1].Kernel (layer 'c'): is 9×9 but the input is only 8 wide along axis x (8×8×3); the kernel must fit"),
    ([{"Name": "in", "N": [8], "DataSet": "x"},
      {"Name": "c", "Type": "Convolutional", "N": 4, "Kernel": [3, 3, 3]},
      {"Name": "o", "N": 2, "DataSet": "y"}],
     "has 3 axes but the source has only 1 (8)"),
    ([{"Name": "in", "N": [8, 8, 3], "DataSet": "x"},
      {"Name": "c", "Type": "Convolutional", "N": 4, "Kernel": [3, 3], "KernelStride": [1, 1, 1]},
      {"Name": "o", "N": 2, "DataSet": "y"}],
     "Layers[1].KernelStride (layer 'c'): has 3 axes but Kernel has 2"),
    ([{"Name": "in", "N": 10, "DataSet": "x"}, {"Name": "h", "N": 4},
      {"Name": "o", "N": 5, "DataSet": "y", "Skip": "h"}],
     "Layers[2].Skip (layer 'o'): 'h' has 4 units but this layer has 5; a Skip adds units one to one"),
    ([{"Name": "in", "N": 10, "DataSet": "x"}, {"Name": "h", "N": 4},
      {"Name": "o", "N": 10, "DataSet": "y", "SharedWeights": {
          "InputLayer": "h", "SourceInputLayer": "in", "SourceOutputLayer": "h"}}],
     "Layers[2].SharedWeights (layer 'o'): the matrix in → h is 10×4, but h → o needs 4×10"),
])
def test_shape_errors(layers, message):
    cfg = loads_config(json.dumps({"Layers": layers}), source="net.json")
    with pytest.raises(ConfigError) as info:
        dims = resolve_shapes(cfg, source="net.json")
        weight_specs(cfg, dims, source="net.json")
    assert message in str(info.value)


def test_auto_without_dataset_dims_is_an_error_unless_lenient():
    cfg = load_config(EXAMPLES / "movielens-20m.json")
    with pytest.raises(ConfigError, match="is \"auto\": the dimensions come from dataset 'input'"):
        resolve_shapes(cfg)
    lenient = resolve_shapes(cfg, strict=False)
    assert lenient["Input"] is None and lenient["Hidden1"] == (1536,)


def test_parse_dims():
    assert parse_dims("227x227x3") == (227, 227, 3) and parse_dims("27278") == (27278,)
    for bad in ("0", "x", "1x2x3x4x5", "-4"):
        with pytest.raises(ValueError):
            parse_dims(bad)
