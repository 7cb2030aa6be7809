"""Network files: reading DSSTNE's layout, round trips, NC types, atomic writes."""

from __future__ import annotations

import ctypes
import ctypes.util
import glob
import json
import os
from pathlib import Path

import numpy as np
import pytest

from destiny.config import (
    Activation,
    ErrorFunction,
    LayerKind,
    SharedWeights,
    SparsenessPenalty,
    WeightInitScheme,
    dumps_config,
    load_config,
    loads_config,
)
from destiny.config.shapes import batch_norm_size, resolve_shapes, weight_specs
from destiny.errors import UsageError
from destiny.io import network_file
from destiny.io.network_file import BatchNormArrays, NetworkFile, WeightArrays, read_network, write_network
from tests.io.dsstne_writer import B0, B1, CONV_FC, CONV_W, W0, W1, conv_network, tiny_network, write_dsstne

netCDF4 = pytest.importorskip("netCDF4")
EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "configs"


# ---------------------------------------------------------------------------------------------
# helpers


def random_network(config, dataset_dims=None, seed=0, **kwargs) -> NetworkFile:
    """A NetworkFile of ``config`` with random float32 weights and batch-norm arrays."""
    rng = np.random.default_rng(seed)
    dims = resolve_shapes(config, dataset_dims or {})
    weights = [WeightArrays(s.input_layer, s.output_layer,
                            None if s.shared_from else rng.standard_normal(s.shape, dtype=np.float32),
                            rng.standard_normal(s.bias_size, dtype=np.float32), s.shared_from, s.transposed,
                            locked=bool(s.index % 2))
               for s in weight_specs(config, dims)]
    batch_norm = {layer.name: BatchNormArrays(*(rng.standard_normal(batch_norm_size(layer, dims[layer.name]),
                                                                    dtype=np.float32) for _ in range(4)))
                  for layer in config.layers if layer.batch_norm}
    return NetworkFile(config, dims, weights, batch_norm, **kwargs)


def assert_same_arrays(a: NetworkFile, b: NetworkFile) -> None:
    assert a.dims == b.dims
    assert len(a.weights) == len(b.weights)
    for x, y in zip(a.weights, b.weights):
        assert (x.input_layer, x.output_layer, x.shared_from, x.transposed, x.locked) == \
               (y.input_layer, y.output_layer, y.shared_from, y.transposed, y.locked)
        if x.weights is None:
            assert y.weights is None
        else:
            assert y.weights.dtype == np.float32 and y.weights.tobytes() == x.weights.tobytes()
            assert y.weights.shape == x.weights.shape
        assert y.bias.dtype == np.float32 and y.bias.tobytes() == x.bias.tobytes()
    assert a.batch_norm.keys() == b.batch_norm.keys()
    for name in a.batch_norm:
        for attr in ("scale", "bias", "running_mean", "running_variance"):
            assert getattr(a.batch_norm[name], attr).tobytes() == getattr(b.batch_norm[name], attr).tobytes()


def strip_destiny(path) -> None:
    """Delete Destiny's copy of the config and its checksum: what a file DSSTNE wrote looks like."""
    with netCDF4.Dataset(path, "a") as ds:
        ds.delncattr("destiny_config")
        ds.delncattr("destiny_checksum")


def attributes(path) -> dict:
    with netCDF4.Dataset(path) as ds:
        return {name: ds.getncattr(name) for name in ds.ncattrs()}


# ---------------------------------------------------------------------------------------------
# (a) a file written from the fact sheet, not by write_network


def test_reads_a_dsstne_file(tmp_path):
    path = tmp_path / "tiny.nc"
    write_dsstne(path, *tiny_network())
    net = read_network(path)
    cfg = net.config
    assert cfg.name == "tiny" and cfg.version == 0.9
    assert cfg.error_function == ErrorFunction.SCALED_MARGINAL_CROSS_ENTROPY
    assert cfg.smce.one_scale == 30.0 and cfg.smce.one_target == 0.9 and cfg.smce.zero_target == 0.1
    assert cfg.denoising.p == 0.2 and cfg.shuffle_indices is False
    inp, hidden, out = cfg.layers
    assert (inp.kind, inp.name, inp.n, inp.dataset, inp.sparse) == (LayerKind.INPUT, "Input", 6, "input", True)
    assert (hidden.kind, hidden.n, hidden.activation, hidden.sources) == (LayerKind.HIDDEN, 3, Activation.RELU, ("Input",))
    assert hidden.p_dropout == 0.37 and hidden.dataset is None  # 0.37 as typed, not its float32
    assert hidden.sparseness_penalty == SparsenessPenalty(0.1, 3.0)  # the layer's own, not the global one
    assert (out.kind, out.n, out.activation, out.dataset) == (LayerKind.OUTPUT, 6, Activation.SIGMOID, "output")
    assert (out.weight_init.scheme, out.weight_init.scale, out.weight_init.bias) == (WeightInitScheme.GAUSSIAN, 0.01, -10.2)
    assert out.relu_slope is None and cfg.relu_slope_of(out) == 1.0
    assert net.dims == {"Input": (6,), "Hidden": (3,), "Output": (6,)}
    w0, w1 = net.weights
    assert (w0.input_layer, w0.output_layer, w0.weights.shape, w0.locked) == ("Input", "Hidden", (6, 3), False)
    assert (w1.weights.shape, w1.locked) == ((3, 6), True)
    for i in range(6):
        for o in range(3):
            assert w0.weights[i, o] == W0[i * 3 + o]
            assert w1.weights[o, i] == W1[o * 6 + i]
    assert w0.bias.tobytes() == B0.tobytes() and w1.bias.tobytes() == B1.tobytes()
    assert net.batch_norm == {} and net.extras == {} and net.info == {}
    assert loads_config(dumps_config(cfg)) == cfg  # the reconstructed config is a valid JSON config


def test_optional_attributes_get_defaults(tmp_path):
    attrs, variables = tiny_network()
    for name in ("decay", "checkpoint_name", "checkpoint_interval", "checkpoint_epochs", "weight0_bLocked",
                 "weight1_bLocked", "weight0_norm", "layer1_poolingfunction", "layer1_Nw", "layer2_skips"):
        del attrs[name]
    write_dsstne(tmp_path / "old.nc", attrs, variables)
    net = read_network(tmp_path / "old.nc")
    assert net.config.decay == 0.0 and [w.locked for w in net.weights] == [False, False]
    assert net.weights[0].norm == 0.0 and net.config.layers[2].skips == ()


def test_convolution_filters_are_cudnn_nchw_in_the_file(tmp_path):
    path = tmp_path / "conv.nc"
    write_dsstne(path, *conv_network())
    net = read_network(path)
    conv = net.config.layers[1]
    assert (conv.n, conv.kernel, conv.kernel_stride) == (2, (3, 2), None)
    assert net.dims["conv"] == (5, 4, 2)
    w = net.weights[0].weights
    assert w.shape == (2, 1, 3, 2)  # (out, in, kx, ky)
    for o in range(2):
        for x in range(3):
            for y in range(2):
                assert w[o, 0, x, y] == CONV_W[(o * 2 + y) * 3 + x]
    assert net.weights[1].weights.shape == (40, 2)
    # and back: the same bytes, the same padding and filter extent
    write_network(tmp_path / "again.nc", net)
    with netCDF4.Dataset(tmp_path / "again.nc") as ds:
        assert ds["weight0_weights"][:].tobytes() == CONV_W.tobytes()
        assert ds["weight1_weights"][:].tobytes() == CONV_FC.tobytes()
    again, original = attributes(tmp_path / "again.nc"), conv_network()[0]
    for name, value in original.items():
        assert again[name] == value, name


# ---------------------------------------------------------------------------------------------
# (b) round trips


SKIPS_AND_SOURCES = {"Name": "skips", "Layers": [
    {"Name": "a", "Kind": "Input", "N": "auto", "DataSet": "a", "Sparse": True},
    {"Name": "b", "Kind": "Input", "N": [2, 3], "DataSet": "b"},
    {"Name": "h1", "N": 4, "Source": ["a", "b"], "Activation": "Tanh"},
    {"Name": "h2", "N": 4, "Source": "h1", "Skip": "h1", "Activation": "Relu", "pDropout": 0.3},
    {"Name": "h3", "N": [2, 2], "Source": ["h2", "a"], "Skip": ["h1", "h2"]},
    {"Name": "out", "Kind": "Output", "N": "auto", "DataSet": "out", "Source": ["h3", "h1"], "Sparse": True},
]}
TIED = {"Name": "tied", "Kind": "AutoEncoder", "ErrorFunction": "ScaledMarginalCrossEntropy", "Layers": [
    {"Name": "in", "Kind": "Input", "N": "auto", "DataSet": "x", "Sparse": True},
    {"Name": "code", "N": 5, "Activation": "Relu"},
    {"Name": "out", "Kind": "Output", "N": "auto", "DataSet": "x", "Sparse": True, "SharedWeights": {
        "InputLayer": "code", "SourceInputLayer": "in", "SourceOutputLayer": "code", "Transposed": True}},
]}
CONV_BATCH_NORM = {"Name": "cnn", "ErrorFunction": "CrossEntropy", "Layers": [
    {"Name": "image", "Kind": "Input", "Type": "Convolutional", "N": "auto", "DataSet": "image"},
    {"Name": "c1", "Type": "Convolutional", "N": 3, "Kernel": [3, 3], "Activation": "Relu", "BatchNormalization": True},
    {"Name": "p1", "Type": "Pooling", "Function": "Max", "Kernel": [2, 2], "KernelStride": [2, 2]},
    {"Name": "c2", "Type": "Convolutional", "N": 4, "Kernel": [3, 1], "KernelStride": [2, 1]},
    {"Name": "p2", "Type": "Pooling", "Function": "Average", "Kernel": [1, 2]},
    {"Name": "h", "N": 5, "BatchNormalization": True, "Activation": "SELU"},
    {"Name": "out", "Kind": "Output", "N": "auto", "DataSet": "label", "Activation": "SoftMax"},
]}
KITCHEN_SINK = {
    "Version": 0.81, "Name": "sink", "Kind": "AutoEncoder", "Comment": "every setting a file carries",
    "RELUSlope": 0.2, "ELUAlpha": 0.5, "SELULambda": 1.1, "Decay": 0.01,
    "LRN": {"k": 1.5, "n": 3, "alpha": 0.001, "beta": 0.5}, "Maxout": {"k": 3},
    "SparsenessPenalty": {"p": 0.05, "beta": 1.0}, "Denoising": {"p": 0.1}, "DeltaBoost": {"one": 30, "zero": 0.5},
    "ScaledMarginalCrossEntropy": {"oneTarget": 0.8, "zeroTarget": 0.2, "oneScale": 3, "zeroScale": 0.5},
    "ShuffleIndices": False, "ErrorFunction": "L2", "Layers": [
        {"Name": "in", "Kind": "Input", "N": "auto", "DataSet": "in", "Sparse": True, "pDropout": 0.1},
        {"Name": "h1", "N": 8, "Activation": "LRelu", "RELUSlope": 0.01, "WeightNorm": 2.5, "DeltaNorm": 1.5,
         "WeightInit": {"Scheme": "CaffeXavier", "Scale": 0.5, "Bias": 0.1}, "Sparse": True,
         "SparsenessPenalty": {"p": 0.2, "beta": 0.5}},
        {"Name": "h2", "N": 8, "Source": "h1", "Activation": "ELU", "ELUAlpha": 0.3,
         "WeightInit": {"Scheme": "Uniform", "Scale": 0.2}},
        {"Name": "h3", "N": 8, "Source": "h1", "Activation": "SELU", "SELULambda": 1.2,
         "WeightInit": {"Scheme": "SELU"}},
        {"Name": "mx", "Type": "Pooling", "Function": "Maxout", "Source": ["h2", "h3"]},
        {"Name": "dp", "Type": "Pooling", "Function": "DotProduct", "Source": ["h1", "h2", "h3"]},
        {"Name": "cs", "Type": "Pooling", "Function": "Cosine", "Source": ["h1", "h2"]},
        {"Name": "lrn", "Type": "Pooling", "Function": "LRN", "Source": "h1"},
        {"Name": "out", "Kind": "Output", "N": "auto", "DataSet": "out", "Source": ["mx", "dp", "cs", "lrn"],
         "Activation": "Linear", "WeightInit": {"Scheme": "Constant", "Scale": 0.25}, "WeightNorm": 4},
    ]}

ROUND_TRIPS = {
    "skips-and-sources": (SKIPS_AND_SOURCES, {"a": (9,), "out": (5,)}),
    "tied-transposed": (TIED, {"x": (7,)}),
    "conv-batch-norm": (CONV_BATCH_NORM, {"image": (9, 8, 2), "label": (3,)}),
    "kitchen-sink": (KITCHEN_SINK, {"in": (6,), "out": (4,)}),
}


@pytest.mark.parametrize("name", sorted(ROUND_TRIPS))
def test_round_trip(tmp_path, name):
    document, dataset_dims = ROUND_TRIPS[name]
    config = loads_config(json.dumps(document))
    check_round_trip(tmp_path, random_network(config, dataset_dims))


def test_round_trip_cifar_strawman(tmp_path):
    config = load_config(EXAMPLES / "cifar100-strawman.json")
    network = random_network(config, {"input": (32, 32, 3), "output": (10,)})
    assert network.weights[0].weights.shape == (96, 3, 3, 3) and network.dims["Output"] == (10,)
    check_round_trip(tmp_path, network)


def check_round_trip(tmp_path, network: NetworkFile) -> None:
    path = tmp_path / "net.nc"
    write_network(path, network)
    back = read_network(path)
    assert back.config == network.config  # "auto", Version, Comment and all, via destiny_config
    assert_same_arrays(network, back)
    # What DSSTNE would read: the attributes alone describe an equivalent network.
    strip_destiny(path)
    dsstne = read_network(path)
    assert_same_arrays(network, dsstne)
    assert loads_config(dumps_config(dsstne.config)) == dsstne.config
    assert [(l.name, l.kind, l.type, l.sources, l.skips, l.shared_weights) for l in dsstne.config.layers] == \
           [(l.name, l.kind, l.type, l.sources, l.skips, l.shared_weights) for l in network.config.layers]
    for mine, theirs in zip(network.config.layers, dsstne.config.layers):
        assert np.float32(network.config.relu_slope_of(mine)) == np.float32(dsstne.config.relu_slope_of(theirs))
        assert np.float32(network.config.elu_alpha_of(mine)) == np.float32(dsstne.config.elu_alpha_of(theirs))
        assert network.config.sparseness_penalty_of(mine) == dsstne.config.sparseness_penalty_of(theirs)
    # and writing what was read from the attributes gives the same attributes
    write_network(tmp_path / "again.nc", dsstne)
    first, second = attributes(path), attributes(tmp_path / "again.nc")
    for key, value in first.items():
        if key != "version":
            assert np.array_equal(second[key], value), key


def test_round_trip_extras_and_info(tmp_path):
    config = loads_config(json.dumps(TIED))
    info = {"epoch": 12, "seed": 12134, "loss": 0.1234567890123, "fingerprint": "sha256:0f3a", "done": True,
            "note": "", "big": -2**62}
    extras = {"adam.m.0": np.arange(12, dtype=np.float32).reshape(3, 4), "velocity-1": np.linspace(0, 1, 5),
              "step": np.array(7, dtype=np.int64), "mask": np.array([True, False, True]),
              "bytes": np.arange(4, dtype=np.uint8), "empty": np.zeros((0, 3), dtype=np.float32),
              "big_endian": np.arange(3, dtype=">f4"), "u64": np.array([2**64 - 1], dtype=np.uint64)}
    network = random_network(config, {"x": (7,)}, info=info, extras=extras)
    write_network(tmp_path / "net.nc", network)
    back = read_network(tmp_path / "net.nc")
    assert back.info == info
    assert [type(back.info[k]) for k in ("epoch", "loss", "fingerprint")] == [int, float, str]
    assert back.extras.keys() == extras.keys()
    for key, value in extras.items():
        got = back.extras[key]
        assert got.shape == value.shape and got.dtype == value.dtype.newbyteorder("=")
        assert np.array_equal(got, value) and got.dtype.isnative
    with netCDF4.Dataset(tmp_path / "net.nc") as ds:
        assert "destiny_epoch" in ds.ncattrs() and "destiny_adam.m.0" in ds.variables


# ---------------------------------------------------------------------------------------------
# (c) the written file is DSSTNE's layout, attribute for attribute


def test_written_file_matches_the_fact_sheet(tmp_path):
    write_dsstne(tmp_path / "dsstne.nc", *tiny_network())
    write_network(tmp_path / "destiny.nc", read_network(tmp_path / "dsstne.nc"))
    theirs, ours = attributes(tmp_path / "dsstne.nc"), attributes(tmp_path / "destiny.nc")
    assert {k for k in ours if not k.startswith("destiny_")} == set(theirs)
    for name, value in theirs.items():
        assert type(ours[name]) is type(value) and ours[name] == value, name
    assert type(ours["kind"]) is np.uint32 and type(ours["weight0_width"]) is np.uint64
    assert type(ours["maxout_k"]) is np.int32 and type(ours["version"]) is np.float32
    assert type(ours["LRN_n"]) is np.int32 and type(ours["layer1_pDropout"]) is np.float32
    assert (ours["weight0_width"], ours["weight0_height"]) == (3, 6)  # output units, input units
    with netCDF4.Dataset(tmp_path / "destiny.nc") as ds:
        var = ds["weight0_weights"]
        assert var.dtype == np.float32 and var.dimensions == ("weight0_weightDim",) and var.size == 18
        assert ds["weight1_bias"].dimensions == ("weight1_biasDim",)
        assert set(ds.variables) == {"weight0_bias", "weight0_weights", "weight1_bias", "weight1_weights"}
    types = _attribute_types(tmp_path / "destiny.nc", ["name", "layer0_name", "layer0_dataSet", "kind",
                                                       "weight0_inputLayer", "destiny_config"])
    assert types == {"name": 2, "layer0_name": 2, "layer0_dataSet": 2, "kind": 5 + 4,  # NC_CHAR, NC_UINT
                     "weight0_inputLayer": 2, "destiny_config": 2}


def _attribute_types(path, names) -> dict[str, int]:
    """NC type numbers through the C library (netCDF4-python does not expose them)."""
    import netCDF4 as nc

    libdir = Path(nc.__file__).parent.parent
    candidates = glob.glob(str(libdir / "netCDF4.libs" / "libnetcdf*")) + \
        glob.glob(str(libdir / "netcdf4.libs" / "libnetcdf*"))
    found = candidates[0] if candidates else ctypes.util.find_library("netcdf")
    if not found:
        pytest.skip("libnetcdf not found for ctypes")
    lib = ctypes.CDLL(found)
    ncid, kind = ctypes.c_int(), ctypes.c_int()
    assert lib.nc_open(os.fsencode(path), 0, ctypes.byref(ncid)) == 0
    try:
        types = {}
        for name in names:
            assert lib.nc_inq_atttype(ncid, -1, name.encode(), ctypes.byref(kind)) == 0, name
            types[name] = kind.value
        return types
    finally:
        lib.nc_close(ncid)


# ---------------------------------------------------------------------------------------------
# (e) atomic writes


def _network():
    return random_network(loads_config(json.dumps(TIED)), {"x": (7,)})


def test_missing_directory_raises_and_leaves_nothing(tmp_path):
    with pytest.raises(FileNotFoundError):
        write_network(tmp_path / "no" / "such" / "net.nc", _network())
    assert list(tmp_path.iterdir()) == []


def test_failure_midway_leaves_no_temporary_and_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "net.nc"
    write_network(path, _network())
    before = path.read_bytes()

    def broken(*args):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(network_file, "_write_weight", broken)
    with pytest.raises(RuntimeError, match="disk on fire"):
        write_network(path, random_network(loads_config(json.dumps(TIED)), {"x": (7,)}, seed=1))
    assert [p.name for p in tmp_path.iterdir()] == ["net.nc"] and path.read_bytes() == before
    with pytest.raises(RuntimeError):
        write_network(tmp_path / "new.nc", _network())
    assert [p.name for p in tmp_path.iterdir()] == ["net.nc"]


def test_inconsistent_arrays_are_refused_before_writing(tmp_path):
    network = _network()
    network.weights[0].weights = network.weights[0].weights[:, :4]
    with pytest.raises(UsageError, match=r"NetworkFile.weights\[0\] \(in → code\) has weights of shape \(7, 4\); "
                                         r"expected \(7, 5\)"):
        write_network(tmp_path / "net.nc", network)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("change,message", [
    (lambda n: n.weights.pop(), "has 1 entries, but the config has 2 weight matrices"),
    (lambda n: setattr(n.weights[1], "weights", np.zeros((5, 7), "f4")), "shares in → code; give weights=None"),
    (lambda n: setattr(n.weights[1], "transposed", False), "says shared_from=('in', 'code'), transposed=False"),
    (lambda n: setattr(n.weights[0], "bias", np.zeros(4, "f4")), "has a bias of shape (4,); expected (5,)"),
    (lambda n: setattr(n.weights[0], "norm", 3.0), "has norm 3.0, but layer 'code' has WeightNorm 0.0"),
    (lambda n: n.dims.update(code=(6,)), "NetworkFile.dims['code'] is (6,), but the config gives (5,)"),
    (lambda n: n.dims.pop("out"), "NetworkFile.dims has layers"),
    (lambda n: n.batch_norm.update(code=None), "'code', which has no BatchNormalization"),
    (lambda n: n.info.update(config="x"), "info key 'config' is reserved"),
    (lambda n: n.info.update({"a/b": 1}), "info key 'a/b' cannot name a NetCDF attribute"),
    (lambda n: n.info.update(x=[1, 2]), "info holds int, float or str"),
    (lambda n: n.extras.update(x=np.zeros(2, np.float16)), "has dtype float16"),
    (lambda n: n.extras.update(x=np.array(["a"])), "has dtype <U1"),
])
def test_write_refuses(tmp_path, change, message):
    network = _network()
    change(network)
    with pytest.raises(UsageError) as info:
        write_network(tmp_path / "net.nc", network)
    assert message in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_batch_norm_arrays_are_required(tmp_path):
    config = loads_config(json.dumps(CONV_BATCH_NORM))
    network = random_network(config, {"image": (9, 8, 2), "label": (3,)})
    assert network.batch_norm["c1"].scale.shape == (3,) and network.batch_norm["h"].scale.shape == (5,)
    del network.batch_norm["h"]
    with pytest.raises(UsageError, match="layer 'h' has BatchNormalization but NetworkFile.batch_norm has no arrays"):
        write_network(tmp_path / "net.nc", network)


def test_shared_weights_become_layer_config(tmp_path):
    network = _network()
    write_network(tmp_path / "net.nc", network)
    strip_destiny(tmp_path / "net.nc")
    out = read_network(tmp_path / "net.nc").config.layer("out")
    assert out.shared_weights == (SharedWeights("code", "in", "code", True),)
