"""The seed's convolutional networks build with the expected parameter counts, and bad
convolutional configs stop at network building with messages that say what, where and how."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from destiny.config import load_config, loads_config
from destiny.errors import ConfigError
from destiny.nn.network import Network

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "configs"


def parameters(path, **dims) -> tuple[Network, int]:
    net = Network.from_config(load_config(path), dims, initialize=False)  # shapes only: no 62M draws
    return net, sum(p.numel() for p in net.parameters())


def test_alexnet_builds_on_227x227x3_with_62378344_parameters():
    net, count = parameters(EXAMPLES / "alexnet.json", input=(227, 227, 3), output=(1000,))
    # conv 11·11·3·96+96 + 5·5·96·256+256 + 3·3·256·384+384 + 3·3·384·384+384 + 3·3·384·256+256 = 3,747,200
    # fc   9216·4096+4096 + 4096·4096+4096 + 4096·1000+1000 = 58,631,144 (6·6·256 = 9216 inputs)
    assert count == 3_747_200 + 58_631_144 == 62_378_344
    dims = [net.dims[layer.name] for layer in net.config.layers]
    assert dims[1] == (55, 55, 96) and dims[2] == (55, 55, 96) and dims[3] == (27, 27, 96)
    assert dims[4] == (27, 27, 256) and dims[6] == (13, 13, 256) and dims[10] == (6, 6, 256)
    assert [tuple(w.shape) for w in net.weights.values()][:2] == [(96, 3, 11, 11), (256, 96, 5, 5)]


def test_vgg16_builds_on_224x224x3_with_138357544_parameters():
    net, count = parameters(EXAMPLES / "vgg16.json", input=(224, 224, 3), output=(1000,))
    widths = [3, 64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
    convs = sum(9 * a * b + b for a, b in zip(widths, widths[1:]))
    fcs = 7 * 7 * 512 * 4096 + 4096 + 4096 * 4096 + 4096 + 4096 * 1000 + 1000
    assert convs == 14_714_688 and count == convs + fcs == 138_357_544
    assert net.dims[net.config.layers[-4].name] == (7, 7, 512)


def test_strawman_builds_on_cifar_images():
    net, count = parameters(EXAMPLES / "cifar100-strawman.json", input=(32, 32, 3), output=(10,))
    assert net.dims["Hidden3"] == (15, 15, 96) and net.dims["Hidden6"] == (7, 7, 192)
    x = torch.zeros(2, 32, 32, 3, dtype=torch.uint8).permute(0, 3, 1, 2)  # NCHW images
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.01)
    assert net.predict(x.numpy())["Output"].shape == (2, 10)


def build(layers, **top):
    doc = {"Layers": layers, "ErrorFunction": "L2", **top}
    cfg = loads_config(json.dumps(doc), source="net.json")
    return Network.from_config(cfg, source="net.json")


IMAGE = {"Name": "in", "Kind": "Input", "Type": "Convolutional", "N": [8, 8, 3], "DataSet": "x"}
OUT = {"Name": "o", "Kind": "Output", "N": 2, "DataSet": "y", "Activation": "Linear"}


@pytest.mark.parametrize("layers,message", [
    ([IMAGE, {"Name": "c", "Type": "Convolutional", "N": 4, "Kernel": [9, 9]}, OUT],
     "net.json: Layers[1].Kernel (layer 'c'): is 9×9 but the input is only 8 wide along axis x (8×8×3); "
     "the kernel must fit inside the input"),
    ([{**IMAGE, "Type": "FullyConnected", "Sparse": True},
      {"Name": "p", "Type": "Pooling", "Function": "Max", "Kernel": [2, 2]}, OUT],
     "net.json: Layers[1].Source (layer 'p'): Pooling layers need dense (image-like) input, but 'in' is a "
     "sparse Input layer"),
    ([{**IMAGE, "N": 64, "Sparse": True}, {"Name": "c", "Type": "Convolutional", "N": 4, "Kernel": 3}, OUT],
     "Convolutional layers need dense (image-like) input, but 'in' is a sparse Input layer"),
    ([IMAGE, {"Name": "c", "Type": "Convolutional", "N": 4, "Kernel": [3, 3]},
      {**OUT, "N": 10, "Skip": "c"}],
     "net.json: Layers[2].Skip (layer 'o'): 'c' has 8×8×4 units but this layer has 10; a Skip adds units one to one"),
    ([IMAGE, {"Name": "c", "Type": "Convolutional", "N": 4, "Kernel": [3, 3]},
      {"Name": "d", "Type": "Convolutional", "N": 4, "Kernel": [3, 3], "KernelStride": [2, 2], "Source": "in"},
      {"Name": "m", "Type": "Pooling", "Function": "Maxout", "Source": ["c", "d"]}, OUT],
     "net.json: Layers[3].Source (layer 'm'): its sources give different output dimensions (3×3×4, 8×8×4)"),
    ([IMAGE, {"Name": "c", "Type": "Convolutional", "N": 4, "Kernel": [3, 3]},
      {"Name": "d", "Type": "Convolutional", "N": 2, "Kernel": [3, 3], "Source": "in"},
      {"Name": "m", "Type": "Pooling", "Function": "DotProduct", "Source": ["c", "d"]}, OUT],
     "net.json: Layers[3].Source (layer 'm'): DotProduct pooling compares its sources unit by unit, so they "
     "must have the same number of units; got 'c' 8×8×4, 'd' 8×8×2"),
    ([IMAGE, {"Name": "c", "Type": "Convolutional", "N": 4, "Kernel": 3}, OUT],
     "net.json: Layers[1].Kernel (layer 'c'): has 1 axis (3) but source 'in' is 8×8×3: 2 spatial axes and "
     "channels; give one kernel size per spatial axis (such as [3, 3])"),
    ([{**IMAGE, "N": [8, 3]}, {"Name": "c", "Type": "Convolutional", "N": 4, "Kernel": [3, 3, 3]}, OUT],
     "net.json: Layers[1].Kernel (layer 'c'): has 3 axes but the source has only 2 (8×3)"),
    ([IMAGE, {"Name": "c", "Type": "Convolutional", "N": 4, "Kernel": [3, 3], "KernelStride": [2]}, OUT],
     "net.json: Layers[1].KernelStride (layer 'c'): has 1 axes but Kernel has 2"),
    ([IMAGE, {"Name": "c", "Type": "Convolutional", "N": 3, "Kernel": [3, 3]},
      {"Name": "d", "Type": "Convolutional", "N": 3, "Kernel": [3, 3], "SharedWeights": {
          "InputLayer": "c", "SourceInputLayer": "in", "SourceOutputLayer": "c", "Transposed": True}}, OUT],
     "Layers[2].SharedWeights (layer 'd')"),
])
def test_bad_convolutional_configs(layers, message):
    with pytest.raises(ConfigError) as info:
        build(layers)
    assert message in str(info.value)


def test_shared_untransposed_filters_are_one_parameter():
    net = build([IMAGE, {"Name": "c", "Type": "Convolutional", "N": 3, "Kernel": [3, 3]},
                 {"Name": "d", "Type": "Convolutional", "N": 3, "Kernel": [3, 3], "Source": "in",
                  "SharedWeights": {"InputLayer": "in", "SourceInputLayer": "in", "SourceOutputLayer": "c"}},
                 {**OUT, "Source": ["c", "d"]}])
    assert list(net.weights) == ["w0", "w2", "w3"] and len(net.biases) == 4  # w1 is w0
    x = torch.randn(2, 192)
    values = net.forward({"in": x})
    diff = values["c"] - values["d"]  # same filters, different biases (both 0 here): equal activations
    torch.testing.assert_close(diff, torch.zeros_like(diff))
