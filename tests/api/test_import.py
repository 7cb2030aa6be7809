"""Models from other frameworks → Destiny networks (destiny.importer, destiny.interop.from_onnx /
from_state_dict): Destiny → ONNX → Destiny keeps every weight; PyTorch and Keras models predict
in Destiny what they predict at home; what cannot be mapped is refused naming the node or key."""

from __future__ import annotations

import importlib.util
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from destiny.errors import ModelImportError
from destiny.interop import from_onnx, from_state_dict, to_onnx, to_torch
from destiny.train.checkpoint import network_to_file
from destiny.train.fingerprint import fingerprint_file
from tests.api.test_interop import CASES, ITEMS, build, user_items

DATA = Path(__file__).parent / "data"
needs_onnx = pytest.mark.skipif(importlib.util.find_spec("onnx") is None, reason="onnx is not installed "
                                "(pip install destiny[onnx])")


def export(module: torch.nn.Module, example: torch.Tensor, path: Path, names=("x", "y")) -> Path:
    """torch.onnx.export with TorchScript's exporter (offline: no onnxscript needed), batch axis dynamic."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), (example,), str(path), dynamo=False, input_names=[names[0]],
                          output_names=[names[1]], dynamic_axes={names[0]: {0: "batch"}, names[1]: {0: "batch"}})
    return path


def predict(net, x) -> np.ndarray:
    x = torch.as_tensor(np.asarray(x, np.float32))
    return next(iter(net.predict(x.reshape(len(x), -1)).values())).numpy()


# -- Destiny → ONNX → Destiny ------------------------------------------------------------------


@needs_onnx
@pytest.mark.parametrize("case", sorted(CASES))
def test_destiny_onnx_destiny_keeps_the_network_file_content(case, tmp_path):
    net = build(case)
    back = from_onnx(to_onnx(net, tmp_path / "net.onnx"))
    assert fingerprint_file(network_to_file(back)) == fingerprint_file(network_to_file(net))
    x = user_items()
    torch.testing.assert_close(back.predict(x)["Output"], net.predict(x)["Output"], rtol=0, atol=0)
    layers = {layer.name: layer for layer in back.config.layers}
    assert layers["Input"].sparse  # a multi-hot row read by a narrower layer, as Destiny's own autoencoders
    def matrices(network):
        return [(s.shape, s.shared_from is not None, s.transposed) for s in network.specs]

    assert matrices(back) == matrices(net)  # the same matrices in the same order, tied ones still tied


@needs_onnx
def test_several_inputs_and_outputs_and_a_layer_reading_an_output_come_back(tmp_path):
    from destiny.nn.network import Network
    from tests.helpers import config

    layers = [{"Name": "A", "Kind": "Input", "N": 6, "DataSet": "a"},
              {"Name": "B", "Kind": "Input", "N": "auto", "DataSet": "b", "Sparse": True},
              {"Name": "H", "Kind": "Hidden", "N": 8, "Activation": "SoftPlus", "Source": ["A", "B"]},
              {"Name": "Out1", "Kind": "Output", "N": 5, "Activation": "Linear", "Source": "H", "DataSet": "o1"},
              {"Name": "Out2", "Kind": "Output", "N": 3, "Activation": "Sigmoid", "Source": ["H", "Out1"],
               "DataSet": "o2"}]
    net = Network.from_config(config(layers, ErrorFunction="L2"), {"b": (30,)}, seed=2)
    back = from_onnx(to_onnx(net, tmp_path / "multi.onnx"))
    assert fingerprint_file(network_to_file(back)) == fingerprint_file(network_to_file(net))
    assert [(layer.kind.json, layer.sparse) for layer in back.config.layers] == \
        [("Input", False), ("Input", True), ("Hidden", False), ("Output", False), ("Output", False)]
    inputs = {"A": torch.randn(4, 6), "B": (torch.rand(4, 30) < 0.2).float()}
    want, got = net.predict(inputs), back.predict(inputs)
    for name in ("Out1", "Out2"):
        torch.testing.assert_close(got[name], want[name], rtol=0, atol=0)


# -- PyTorch → ONNX → Destiny ------------------------------------------------------------------


@needs_onnx
def test_pytorch_mlp_predicts_the_same_in_destiny(tmp_path):
    torch.manual_seed(0)
    mlp = torch.nn.Sequential(torch.nn.Linear(ITEMS, 24), torch.nn.LeakyReLU(0.2), torch.nn.Dropout(0.3),
                              torch.nn.Linear(24, 16), torch.nn.ELU(0.7), torch.nn.Linear(16, 12), torch.nn.Softplus(),
                              torch.nn.Linear(12, 10), torch.nn.Softsign(), torch.nn.Linear(10, 8), torch.nn.SELU(),
                              torch.nn.Linear(8, ITEMS), torch.nn.Sigmoid())
    net = from_onnx(export(mlp, torch.zeros(2, ITEMS), tmp_path / "mlp.onnx", ("items", "scores")))
    assert [layer.activation.json for layer in net.config.layers[1:]] == \
        ["LRelu", "ELU", "SoftPlus", "SoftSign", "SELU", "Sigmoid"]
    x = user_items().toarray()
    with torch.no_grad():
        np.testing.assert_allclose(predict(net, x), mlp(torch.as_tensor(x)).numpy(), rtol=1e-5, atol=1e-6)


class SmallCNN(torch.nn.Module):
    """conv → batch norm (folded by the exporter) → relu → max pool; conv → max pool → relu (the
    PyTorch MNIST example's order); average pool; flatten → linear → softmax."""

    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(2, 4, 3, padding=1)
        self.norm = torch.nn.BatchNorm2d(4)
        self.conv2 = torch.nn.Conv2d(4, 6, 3, padding=1)
        self.fc = torch.nn.Linear(6 * 4 * 5, 5)

    def forward(self, x):
        x = F.max_pool2d(torch.relu(self.norm(self.conv1(x))), 2)
        x = F.relu(F.max_pool2d(self.conv2(x), 2))
        x = F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)
        return torch.softmax(self.fc(torch.flatten(x, 1)), 1)


@needs_onnx
def test_pytorch_cnn_predicts_the_same_in_destiny(tmp_path):
    torch.manual_seed(1)
    cnn = SmallCNN().eval()
    with torch.no_grad():
        cnn.norm.running_mean.normal_()
        cnn.norm.running_var.uniform_(0.5, 2.0)
    x = torch.randn(6, 2, 16, 20)
    with pytest.warns(UserWarning, match="Relu after max pooling .* is applied before it, by 'conv2'"):
        net = from_onnx(export(cnn, x, tmp_path / "cnn.onnx", ("image", "classes")))
    assert net.dims["image"] == (20, 16, 2)  # (x, y, channels): the (batch, 2, 16, 20) tensor's order
    assert [layer.type.json for layer in net.config.layers] == \
        ["FullyConnected", "Convolutional", "Pooling", "Convolutional", "Pooling", "Pooling", "FullyConnected"]
    with torch.no_grad():
        np.testing.assert_allclose(predict(net, x), cnn(x).numpy(), rtol=1e-5, atol=1e-6)


# -- Keras → tf2onnx → Destiny -----------------------------------------------------------------


@needs_onnx
@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_keras_model_through_tf2onnx_fixture(name):
    """keras_*.onnx: tf2onnx's graphs (MatMul + Add, NHWC Transposes around the convolution, a
    Reshape whose shape is computed), made by data/make_keras_fixtures.py with Keras's outputs."""
    expected = np.load(DATA / "keras_expected.npz")
    x = expected[f"{name}_x"]
    if name == "cnn":
        with pytest.warns(UserWarning, match="channels first"):  # Keras's NHWC input, read as (C, H, W)
            net = from_onnx(DATA / "keras_cnn.onnx")
        x = x.transpose(0, 3, 1, 2)
        assert [layer.name for layer in net.config.layers] == ["image", "conv_1", "pool_1", "output"]
    else:
        net = from_onnx(DATA / "keras_mlp.onnx")
        assert [layer.name for layer in net.config.layers] == ["items", "hidden1_1", "hidden2_1", "output"]
    np.testing.assert_allclose(predict(net, x), expected[f"{name}_y"], rtol=1e-5, atol=1e-6)


def test_keras_model_through_tf2onnx_live(tmp_path):
    for module in ("tensorflow", "tf2onnx", "onnx"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not installed here (TensorFlow installs on CPU in its own environment: "
                        "tests/api/data/make_keras_fixtures.py); the tf2onnx fixtures are checked instead")
    import importlib as il
    import sys

    sys.path.insert(0, str(DATA))
    try:
        maker = il.import_module("make_keras_fixtures")
    finally:
        sys.path.pop(0)
    model = maker.models()["mlp"]
    maker.convert(model, tmp_path / "mlp.onnx")
    x = (np.random.default_rng(1).random((5, 20)) < 0.3).astype(np.float32)
    np.testing.assert_allclose(predict(from_onnx(tmp_path / "mlp.onnx"), x), model(x).numpy(), rtol=1e-5, atol=1e-6)


# -- graphs written with onnx.helper: every windowed kind, joins and skips ----------------------


def _graph(nodes, inits: dict, inputs, outputs, opset: int = 17):
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in outputs],
        [numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _every_kind(rng):
    from onnx import helper

    n = helper.make_node
    w = {"cw": rng.normal(size=(3, 2, 3, 3)), "cb": rng.normal(size=3), "s": rng.uniform(0.5, 1.5, 3),
         "t": rng.normal(size=3), "m": rng.normal(size=3), "v": rng.uniform(0.5, 1.5, 3),
         "wa": rng.normal(size=(8, 48)) * 0.3, "ba": rng.normal(size=8), "wb": rng.normal(size=(48, 8)) * 0.3,
         "bb": rng.normal(size=8), "k": rng.uniform(0.5, 2, 8), "wc": rng.normal(size=(16, 8)) * 0.3,
         "bc": rng.normal(size=8), "wd": rng.normal(size=(4, 8)), "bd": rng.normal(size=4), "r": 0.25}
    nodes = [n("Conv", ["x", "cw", "cb"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             n("BatchNormalization", ["c", "s", "t", "m", "v"], ["cn"], epsilon=1e-3),
             n("Relu", ["cn"], ["cr"]),
             n("LRN", ["cr"], ["l"], size=3, alpha=1e-3, beta=0.75, bias=2.0),
             n("MaxPool", ["l"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
             n("AveragePool", ["p"], ["q"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             n("Flatten", ["q"], ["f"]),
             n("Gemm", ["f", "wa", "ba"], ["ga"], name="/a/Gemm", transB=1), n("LeakyRelu", ["ga"], ["a"], alpha=0.2),
             n("MatMul", ["f", "wb"], ["gb"], name="b/MatMul"), n("Add", ["gb", "bb"], ["gb2"]),
             n("Mul", ["gb2", "k"], ["gb3"]), n("Elu", ["gb3"], ["b"], alpha=0.5),
             n("Concat", ["a", "b"], ["ab"], axis=1),
             n("MatMul", ["ab", "wc"], ["gc"], name="c/MatMul"), n("Add", ["gc", "bc"], ["gc2"]),
             n("Add", ["gc2", "a"], ["gc3"]), n("Softplus", ["gc3"], ["h"]),
             n("Dropout", ["h", "r"], ["hd"], name="drop"),
             n("Gemm", ["hd", "wd", "bd"], ["gd"], transB=1), n("Softmax", ["gd"], ["y"], axis=1)]
    return _graph(nodes, w, [("x", ["batch", 2, 8, 8])], ["y"])


@needs_onnx
def test_every_windowed_kind_concat_skip_and_scale_match_onnxruntime(tmp_path):
    import onnx

    ort = pytest.importorskip("onnxruntime")
    model = _every_kind(np.random.default_rng(4))
    onnx.save(model, tmp_path / "g.onnx")
    with pytest.warns(UserWarning, match="epsilon 0.001"):
        net = from_onnx(tmp_path / "g.onnx")
    layers = {layer.name: layer for layer in net.config.layers}
    assert (net.config.lrn.n, net.config.lrn.k) == (3, 2.0) and layers["y"].activation.json == "SoftMax"
    assert [layer.pooling_function.json for layer in net.config.layers if layer.pooling_function] == \
        ["LRN", "Max", "Average"]
    h = next(layer for layer in net.config.layers if layer.activation.json == "SoftPlus")
    assert h.sources == ("a", "b") and h.skips == ("a",) and h.p_dropout == 0.25
    x = np.random.default_rng(5).normal(size=(7, 2, 8, 8)).astype(np.float32)
    session = ort.InferenceSession(str(tmp_path / "g.onnx"), providers=["CPUExecutionProvider"])
    (want,) = session.run(["y"], {"x": x})
    np.testing.assert_allclose(predict(net, x), want, rtol=1e-5, atol=1e-6)


def _unmappable(case: str):
    from onnx import helper

    n = helper.make_node
    w = {"w": np.ones((4, 3)), "cw": np.ones((4, 1, 3, 3))}
    flat, image = [("x", ["batch", 4])], [("x", ["batch", 2, 6, 6])]
    cases = {  # (nodes, input, the node named, words of why / need)
        "LogSoftmax": ([n("MatMul", ["x", "w"], ["z"]), n("LogSoftmax", ["z"], ["y"], name="logits")], flat,
                       "'logits' (LogSoftmax)", "not one of the operations Destiny maps"),
        "grouped": ([n("Conv", ["x", "cw"], ["y"], name="dw", group=2, pads=[1, 1, 1, 1])], image,
                    "'dw' (Conv)", "group=1"),
        "padding": ([n("Conv", ["x", "cw"], ["y"], name="strided", strides=[2, 2], pads=[1, 1, 1, 1])], image,
                    "'strided' (Conv)", "DSSTNE's padding there: 0 before"),
        "input activation": ([n("Relu", ["x"], ["y"], name="r")], flat, "'r' (Relu)", "an Input layer's data"),
        "data product": ([n("MatMul", ["x", "x"], ["y"], name="xx")], [("x", ["batch", 4, 4])], "'xx' (MatMul)",
                         "both of its operands depend on the data"),
    }
    nodes, inputs, named, words = cases[case]
    if case == "padding":
        w["cw"] = np.ones((4, 2, 3, 3))
    return _graph(nodes, w, inputs, ["y"]), named, words


@needs_onnx
@pytest.mark.parametrize("case", ["LogSoftmax", "grouped", "padding", "input activation", "data product"])
def test_unmappable_node_is_named_with_its_op_and_what_destiny_would_need(case, tmp_path):
    import onnx

    model, named, words = _unmappable(case)
    onnx.save(model, tmp_path / "m.onnx")
    with pytest.raises(ModelImportError) as info:
        from_onnx(tmp_path / "m.onnx")
    message = str(info.value)
    assert f"node {named} cannot be mapped" in message and words in message and "Destiny would need" in message
    assert "\n" not in message


# -- state dicts and safetensors with their JSON -----------------------------------------------


class Recommender(torch.nn.Module):
    """A PyTorch autoencoder whose modules are not all named after the JSON's layers."""

    def __init__(self):
        super().__init__()
        self.H1 = torch.nn.Linear(ITEMS, 16)  # named as the JSON's layer
        self.norm = torch.nn.BatchNorm1d(16)  # matched in order
        self.middle = torch.nn.Linear(16, 8)
        self.Output = torch.nn.Linear(8, ITEMS)

    def forward(self, x):
        return torch.sigmoid(self.Output(torch.tanh(self.middle(torch.relu(self.norm(self.H1(x)))))))


RECOMMENDER_JSON = {"Layers": [
    {"Name": "Input", "Kind": "Input", "N": "auto", "DataSet": "input", "Sparse": True},
    {"Name": "H1", "Kind": "Hidden", "N": 16, "Activation": "Relu", "BatchNormalization": True},
    {"Name": "H2", "Kind": "Hidden", "N": 8, "Activation": "Tanh"},
    {"Name": "Output", "Kind": "Output", "N": "auto", "DataSet": "output", "Activation": "Sigmoid"}]}


def recommender(tmp_path) -> tuple[Recommender, Path]:
    torch.manual_seed(2)
    model = Recommender().eval()
    with torch.no_grad():
        model.norm.running_mean.normal_()
        model.norm.running_var.uniform_(0.5, 2.0)
        model.norm.weight.uniform_(0.5, 1.5)
    path = tmp_path / "net.json"
    path.write_text(json.dumps(RECOMMENDER_JSON))
    return model, path


@pytest.mark.parametrize("form", ["pt", "safetensors", "mapping"])
def test_state_dict_and_safetensors_with_their_json(form, tmp_path):
    model, config = recommender(tmp_path)
    weights = model.state_dict()
    if form == "pt":
        torch.save({"epoch": 3, "state_dict": weights}, tmp_path / "w.pt")  # a training checkpoint's wrapper
        weights = tmp_path / "w.pt"
    elif form == "safetensors":
        safetensors = pytest.importorskip("safetensors.torch")
        safetensors.save_file(weights, tmp_path / "w.safetensors")
        weights = tmp_path / "w.safetensors"
    net = from_state_dict(weights, config)
    assert net.units["Input"] == ITEMS  # "auto" from the matrix
    x = user_items().toarray()
    with torch.no_grad():
        np.testing.assert_allclose(predict(net, x), model(torch.as_tensor(x)).numpy(), rtol=1e-5, atol=1e-6)


def test_to_torch_state_dict_comes_back_whole(tmp_path):
    net = build("tied")
    torch.save(to_torch(net).state_dict(), tmp_path / "tied.pt")
    back = from_state_dict(tmp_path / "tied.pt", net.config)
    assert fingerprint_file(network_to_file(back)) == fingerprint_file(network_to_file(net))


def test_state_dict_errors_name_the_file_the_key_and_the_fix(tmp_path):
    model, config = recommender(tmp_path)
    weights = model.state_dict()
    transposed = dict(weights, **{"middle.weight": weights["middle.weight"].t().contiguous()})
    torch.save(transposed, tmp_path / "t.pt")
    with pytest.raises(ModelImportError, match=r"t.pt: key 'middle.weight' is \(16, 8\): H1 → H2 reads 16 units "
                       r"into 8, so it needs \(8, 16\); the file holds the transpose.*--transposed"):
        from_state_dict(tmp_path / "t.pt", config)
    keras_like = {k: (v.t() if v.dim() == 2 else v) for k, v in weights.items()}
    torch.save(keras_like, tmp_path / "k.pt")
    assert from_state_dict(tmp_path / "k.pt", config, transposed=True).units["H2"] == 8
    torch.save(dict(weights, **{"extra.weight": torch.zeros(3, 3)}), tmp_path / "x.pt")
    with pytest.raises(ModelImportError, match=r"x.pt: key 'extra.weight' matches no layer of .*net.json .*"
                       r"name it after a layer"):
        from_state_dict(tmp_path / "x.pt", config)
    wide = dict(RECOMMENDER_JSON, Layers=[dict(layer) for layer in RECOMMENDER_JSON["Layers"]])
    wide["Layers"][2]["N"] = 9
    (tmp_path / "wide.json").write_text(json.dumps(wide))
    with pytest.raises(ModelImportError, match=r"key 'middle.weight' is \(8, 16\) but H1 → H2 needs \(9, 16\)"):
        from_state_dict(weights, tmp_path / "wide.json")
    torch.save(model, tmp_path / "whole.pt")
    with pytest.raises(ModelImportError, match="whole.pt: holds Python objects .* save model.state_dict"):
        from_state_dict(tmp_path / "whole.pt", config)
