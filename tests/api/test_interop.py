"""destiny.interop: a network as a plain torch.nn.Module and as ONNX gives Destiny's outputs;
the weights of an equivalent PyTorch MLP load into a Destiny network."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from destiny.errors import UsageError
from destiny.interop import from_torch_mlp, to_onnx, to_torch
from destiny.nn.network import Network
from destiny.ops.sparse import SparseBatch
from tests.helpers import config, random_batch

ITEMS = 40

AUTOENCODER = [  # sparse input, batch norm, several activations, sigmoid output
    {"Name": "Input", "N": "auto", "DataSet": "input", "Sparse": True},
    {"Name": "H1", "N": 16, "Activation": "Relu", "pDropout": 0.3},
    {"Name": "H2", "N": 12, "Activation": "Tanh", "BatchNormalization": True},
    {"Name": "Output", "N": "auto", "DataSet": "output", "Sparse": True, "Activation": "Sigmoid"},
]
SKIPS_SOFTMAX = [  # a skip connection, a layer with two sources, SELU and ELU, a SoftMax output
    {"Name": "Input", "N": "auto", "DataSet": "input", "Sparse": True},
    {"Name": "H1", "N": 16, "Activation": "ELU"},
    {"Name": "H2", "N": 16, "Activation": "SoftSign", "Skip": "H1"},
    {"Name": "H3", "N": 8, "Activation": "SELU", "Source": ["H1", "H2"]},
    {"Name": "Output", "N": "auto", "DataSet": "output", "Activation": "SoftMax"},
]
TIED = [  # a tied autoencoder: the decoder is the encoder's matrix transposed
    {"Name": "Input", "N": "auto", "DataSet": "input", "Sparse": True},
    {"Name": "Code", "N": 12, "Activation": "LRelu", "RELUSlope": 0.1},
    {"Name": "Output", "N": "auto", "DataSet": "output", "Activation": "Sigmoid",
     "SharedWeights": {"InputLayer": "Code", "SourceInputLayer": "Input", "SourceOutputLayer": "Code",
                       "Transposed": True}},
]
CASES = {"autoencoder": (AUTOENCODER, "ScaledMarginalCrossEntropy"),
         "skips-softmax": (SKIPS_SOFTMAX, "CrossEntropy"),
         "tied": (TIED, "CrossEntropy")}


def build(name: str, seed: int = 5) -> Network:
    layers, error = CASES[name]
    net = Network.from_config(config(layers, ErrorFunction=error), {"input": (ITEMS,), "output": (ITEMS,)}, seed=seed)
    with torch.no_grad():  # biases and batch-norm statistics away from their initial 0 / 1
        g = torch.Generator().manual_seed(seed)
        for b in net.biases.values():
            b.copy_(torch.randn(b.shape, generator=g) * 0.3)
        for name in net.bn_scale:
            net.bn_scale[name].copy_(1 + 0.2 * torch.randn(net.bn_scale[name].shape, generator=g))
            net.bn_shift[name].copy_(0.2 * torch.randn(net.bn_shift[name].shape, generator=g))
            getattr(net, f"bn_mean_{name}").copy_(0.3 * torch.randn(net.bn_scale[name].shape, generator=g))
            getattr(net, f"bn_var_{name}").copy_(torch.rand(net.bn_scale[name].shape, generator=g) + 0.5)
    return net


def user_items(n: int = 24, seed: int = 0) -> sp.csr_matrix:
    b = random_batch(n, ITEMS, 9, seed=seed)
    return sp.csr_matrix((np.ones(b.nnz, np.float32), b.indices.numpy(), b.offsets.numpy()), shape=(n, ITEMS))


@pytest.mark.parametrize("case", sorted(CASES))
def test_module_equals_predict_dense_and_sparse(case):
    net = build(case)
    x = user_items()
    want = net.predict(x)["Output"]
    module = to_torch(net)
    assert isinstance(module, torch.nn.Module) and not module.training
    with torch.no_grad():
        dense = module(torch.as_tensor(x.toarray()))
        sparse = module((torch.as_tensor(x.indices), torch.as_tensor(x.indptr)))
    torch.testing.assert_close(dense, want, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(sparse, want, rtol=1e-5, atol=1e-6)


def test_analog_values_and_per_sample_weights():
    net = build("autoencoder")
    b = random_batch(10, ITEMS, 7, values=True, seed=3, dtype=torch.float32)
    want = net.predict({"Input": b})["Output"]
    x = sp.csr_matrix((b.values.numpy(), b.indices.numpy(), b.offsets.numpy()), shape=(10, ITEMS))
    module = to_torch(net)
    with torch.no_grad():
        torch.testing.assert_close(module(torch.as_tensor(x.toarray())), want, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(module((b.indices, b.offsets, b.values)), want, rtol=1e-5, atol=1e-6)


def test_state_dict_stands_on_its_own():
    net, other = build("tied", seed=5), build("tied", seed=9)
    state = to_torch(net).state_dict()
    assert set(state) == {"linears.w0.weight", "linears.w0.bias", "shared_biases.w1"}
    assert state["linears.w0.weight"].shape == (12, ITEMS)  # nn.Linear's (out, in): DSSTNE's W transposed
    module = to_torch(other)
    module.load_state_dict(state)
    x = torch.as_tensor(user_items().toarray())
    with torch.no_grad():
        torch.testing.assert_close(module(x), net.predict(x)["Output"], rtol=1e-5, atol=1e-6)


def test_several_inputs_and_outputs_and_a_layer_reading_an_output():
    layers = [{"Name": "A", "Kind": "Input", "N": 6, "DataSet": "a"},
              {"Name": "B", "Kind": "Input", "N": "auto", "DataSet": "b", "Sparse": True},
              {"Name": "H", "Kind": "Hidden", "N": 8, "Activation": "SoftPlus", "Source": ["A", "B"]},
              {"Name": "Out1", "Kind": "Output", "N": 5, "Activation": "Linear", "Source": "H", "DataSet": "o1"},
              {"Name": "Out2", "Kind": "Output", "N": 3, "Activation": "Sigmoid", "Source": ["H", "Out1"],
               "DataSet": "o2"}]
    net = Network.from_config(config(layers, ErrorFunction="L2"), {"b": (30,)}, seed=2)
    a = torch.randn(7, 6)
    b = random_batch(7, 30, 5, seed=1, dtype=torch.float32)
    want = net.predict({"A": a, "B": b})
    module = to_torch(net)
    assert module.input_names == ["A", "B"] and module.output_names == ["Out1", "Out2"]
    with torch.no_grad():
        out1, out2 = module(a, (b.indices, b.offsets))
    torch.testing.assert_close(out1, want["Out1"], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out2, want["Out2"], rtol=1e-5, atol=1e-6)
    with pytest.raises(UsageError, match="takes 2 input"):
        module(a)


def test_convolutional_layers_are_refused_clearly():
    layers = [{"Name": "Input", "N": [8, 8, 1], "DataSet": "images"},
              {"Name": "C", "Type": "Convolutional", "N": 4, "Kernel": [3, 3], "Activation": "Relu"},
              {"Name": "Output", "N": 3, "Activation": "SoftMax", "DataSet": "labels"}]
    cfg = config(layers, ErrorFunction="CrossEntropy")
    try:
        net = Network.from_config(cfg, {})
    except Exception as exc:  # an engine without convolutional layers refuses them itself
        pytest.skip(f"this engine does not build convolutional networks: {exc}")
    with pytest.raises(NotImplementedError, match="layer 'C' is Convolutional"):
        to_torch(net)


def test_torch_mlp_weights_load_into_destiny():
    torch.manual_seed(0)
    mlp = torch.nn.Sequential(torch.nn.Linear(ITEMS, 16), torch.nn.ReLU(), torch.nn.Linear(16, 12), torch.nn.Tanh(),
                              torch.nn.Linear(12, ITEMS), torch.nn.Sigmoid())
    layers = [dict(layer) for layer in AUTOENCODER]
    del layers[2]["BatchNormalization"]
    net = from_torch_mlp(config(layers, ErrorFunction="CrossEntropy"), mlp)
    assert net.units == {"Input": ITEMS, "H1": 16, "H2": 12, "Output": ITEMS}  # "auto" widths from the MLP
    x = user_items()
    with torch.no_grad():
        want = mlp(torch.as_tensor(x.toarray()))
    torch.testing.assert_close(net.predict(x)["Output"], want, rtol=1e-5, atol=1e-6)
    net2 = from_torch_mlp(net.config, mlp.state_dict())  # a state dict works too
    torch.testing.assert_close(net2.predict(x)["Output"], want, rtol=1e-5, atol=1e-6)
    with pytest.raises(UsageError, match="2 linear layer.* 3 weight matrices"):
        from_torch_mlp(net.config, torch.nn.Sequential(torch.nn.Linear(ITEMS, 16), torch.nn.Linear(16, ITEMS)))
    wrong = torch.nn.Sequential(torch.nn.Linear(ITEMS, 16), torch.nn.Linear(16, 11), torch.nn.Linear(12, ITEMS))
    with pytest.raises(UsageError, match=r"needs \(12, 16\)"):
        from_torch_mlp(net.config, wrong)


@pytest.mark.parametrize("case", sorted(CASES))
def test_round_trip_through_torch(case):
    net = build(case)
    x = user_items()
    back = from_torch_mlp(net.config, to_torch(net).state_dict())
    torch.testing.assert_close(back.predict(x)["Output"], net.predict(x)["Output"], rtol=0, atol=0)


def test_onnx_runs_in_onnxruntime_and_agrees(tmp_path):
    if importlib.util.find_spec("onnxruntime") is None or importlib.util.find_spec("onnx") is None:
        pytest.skip("onnx/onnxruntime are not installed (pip install destiny[onnx])")
    import onnxruntime

    for case in sorted(CASES):
        net = build(case)
        path = to_onnx(net, tmp_path / f"{case}.onnx")
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        assert [i.name for i in session.get_inputs()] == ["Input"]
        for n in (1, 24):  # the batch axis is dynamic
            x = user_items(n, seed=n).toarray()
            (got,) = session.run(["Output"], {"Input": x.astype(np.float32)})
            np.testing.assert_allclose(got, net.predict(x)["Output"].numpy(), rtol=1e-4, atol=1e-6)
    assert not list(tmp_path.glob(".*tmp*"))  # written atomically: no temporary left
