"""Bad network files: each gives a NetworkFileError naming the file, the attribute or variable,
what was expected and what to do."""

from __future__ import annotations

import json

import numpy as np
import pytest

from destiny.errors import NetworkFileError
from destiny.io.network_file import read_network, write_network
from tests.io.dsstne_writer import conv_network, f32, tiny_network, u32, write_dsstne

netCDF4 = pytest.importorskip("netCDF4")


def _set(**changes):
    def change(attrs, variables):
        attrs.update(changes)
    return change


def _delete(*names):
    def change(attrs, variables):
        for name in names:
            del attrs[name]
    return change


def _variable(name, values=None):
    def change(attrs, variables):
        if values is None:
            del variables[name]
        else:
            variables[name] = (variables[name][0], np.asarray(values, dtype=np.float32))
    return change


# (id, change to the tiny network's attributes and variables, substrings of the message)
CASES = [
    ("missing-global", _delete("errorFunction"),
     ["the attribute 'errorFunction' (a DSSTNE ErrorFunction number) is missing", "re-save the network"]),
    ("missing-layer-attribute", _delete("layer1_Nx"), ["'layer1_Nx'", "is missing"]),
    ("missing-source", _delete("layer2_source0"), ["'layer2_source0' (text) is missing"]),
    ("missing-weight-attribute", _set(weights=u32(3)), ["'weight2_bShared'", "is missing"]),
    ("weights-too-small", _variable("weight0_weights", np.zeros(17)),
     ["variable 'weight0_weights' has 17 values", "Input → Hidden: 6×3 (input units × output units) needs 18"]),
    ("weights-too-large", _variable("weight1_weights", np.zeros(19)), ["'weight1_weights' has 19 values", "needs 18"]),
    ("bias-wrong-size", _variable("weight0_bias", np.zeros(4)),
     ["'weight0_bias' has 4 values", "the bias of Input → Hidden (output units) needs 3"]),
    ("weights-missing", _variable("weight1_weights"), ["the variable 'weight1_weights'", "is missing"]),
    ("activation-out-of-range", _set(layer1_activation=u32(42)),
     ["attribute 'layer1_activation' is 42", "expected one of 0 (Sigmoid), 1 (Tanh), 2 (Relu)"]),
    ("activation-prelu", _set(layer1_activation=u32(4)), ["'layer1_activation' is 4, which is no Activation"]),
    ("error-function-out-of-range", _set(errorFunction=u32(9)), ["'errorFunction' is 9", "6 (L2Hinge)"]),
    ("layer-kind-out-of-range", _set(layer1_kind=u32(7)), ["'layer1_kind' is 7", "3 (Target)"]),
    ("weight-init-out-of-range", _set(layer2_weightInit=u32(8)), ["'layer2_weightInit' is 8", "6 (SELU)"]),
    ("dropout-out-of-range", _set(layer1_pDropout=f32(1.5)),
     ["layer1_pDropout (layer 'Hidden'): must be a number in [0, 1); got 1.5"]),
    ("nan", _set(SMCE_oneScale=f32("nan")), ["SMCE_oneScale: must be a finite number >= 0; got nan"]),
    ("maxout-zero", _set(maxout_k=np.int32(0)), ["maxout_k: must be a positive integer; got 0"]),
    ("text-for-number", _set(layer1_Nx="three"), ["attribute 'layer1_Nx' should be an integer >= 1; got text 'three'"]),
    ("number-for-text", _set(layer1_name=u32(1)), ["attribute 'layer1_name' should be text; got 1"]),
    ("negative-size", _set(layer1_Nx=np.int32(-3)), ["'layer1_Nx' should be an integer >= 1; got -3"]),
    ("too-many-dimensions", _set(layer1_dimensions=u32(5)), ["'layer1_dimensions' is 5; a layer has 1 to 4"]),
    ("dimensions-disagree", _set(layer1_Ny=u32(2)), ["'layer1_Ny' is 2 but layer1_dimensions is 1"]),
    ("unknown-source", _set(layer2_source0="Hiden"), ["names no layer 'Hiden'; did you mean 'Hidden'?"]),
    ("duplicate-name", _set(layer2_name="Hidden"), ["'layer2_name' is 'Hidden', the name of an earlier layer"]),
    ("unknown-attribute-bits", _set(layer1_attributes=u32(9)), ["'layer1_attributes' is 9; only the bits"]),
    ("batch-norm-on-output", _set(layer2_attributes=u32(5)), ["has BatchNormalization on Output layer 'Output'"]),
    ("weight-not-a-connection", _set(weight1_inputLayer="Input"),
     ["no weight<j>_inputLayer/_outputLayer pair is Hidden → Output"]),
    ("pooling-without-function", _set(layer1_type=u32(2)), ["'layer1_poolingfunction' is 0 (None) on Pooling layer"]),
    ("input-with-sources", _set(layer0_sources=u32(1), layer0_source0="Hidden"),
     ["'layer0_sources' is 1, but Input layer 'Input' has no sources"]),
    ("output-without-dataset", _set(layer2_dataSet=""), ["an Output layer needs a 'DataSet'"]),
    ("version-too-old", _set(version=f32(0.5)), ["Version: is 0.5; DSSTNE's format starts at 0.7"]),
]


@pytest.mark.parametrize("change,messages", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_network_file(tmp_path, change, messages):
    attrs, variables = tiny_network()
    change(attrs, variables)
    path = tmp_path / "bad.nc"
    write_dsstne(path, attrs, variables)
    with pytest.raises(NetworkFileError) as info:
        read_network(path)
    message = str(info.value)
    assert message.startswith(str(path)), message
    for part in messages:
        assert part in message, message


def test_convolution_sizes_must_follow_from_the_kernel(tmp_path):
    attrs, variables = conv_network()
    attrs["layer1_kernelStrideX"] = u32(2)  # then conv would be 2×4×2, not 5×4×2
    write_dsstne(tmp_path / "conv.nc", attrs, variables)
    with pytest.raises(NetworkFileError, match=r"layer 'conv' is stored as 5×4×2 \(attributes layer1_Nx..Nw\), "
                                               r"but its sources and kernel give 2×4×2"):
        read_network(tmp_path / "conv.nc")


def test_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_network(tmp_path / "nowhere.nc")


def test_not_netcdf(tmp_path):
    path = tmp_path / "net.json"
    path.write_text('{"Layers": []}')
    with pytest.raises(NetworkFileError, match=r"net.json is not a NetCDF file or is damaged .*pass a network file"):
        read_network(path)


def test_truncated_file(tmp_path):
    path = tmp_path / "net.nc"
    write_dsstne(path, *tiny_network())
    data = path.read_bytes()
    for size in (len(data) // 2, len(data) - 100, 600):
        path.write_bytes(data[:size])
        with pytest.raises(NetworkFileError) as info:
            read_network(path)
        assert str(path) in str(info.value) and "damaged" in str(info.value)


def test_dataset_file_instead_of_network(tmp_path):
    path = tmp_path / "gl_input.nc"
    with netCDF4.Dataset(path, "w", format="NETCDF4") as ds:
        ds.setncattr("datasets", u32(1))
        ds.setncattr("name0", b"gl_input")
        ds.setncattr("attributes0", u32(3))
        ds.createDimension("examplesDim0", 2)
        ds.createVariable("sparseStart0", "u4", ("examplesDim0",))[:] = [0, 1]
    with pytest.raises(NetworkFileError) as info:
        read_network(path)
    assert str(info.value) == (f"{path} is a dataset file (it has 'datasets'), not a network file; pass it with "
                               "-i/-o, and the network with -n")


def test_other_netcdf_file(tmp_path):
    path = tmp_path / "climate.nc"
    with netCDF4.Dataset(path, "w") as ds:
        ds.setncattr("title", b"temperature")
    with pytest.raises(NetworkFileError, match="climate.nc is a NetCDF file but not a DSSTNE network file"):
        read_network(path)


def test_edited_destiny_file_is_refused(tmp_path):
    path = tmp_path / "net.nc"
    write_dsstne(path, *tiny_network())
    write_network(path, read_network(path))
    with netCDF4.Dataset(path, "a") as ds:
        ds.setncattr("layer1_pDropout", f32(0.5))
    with pytest.raises(NetworkFileError, match="net.nc is corrupt: its content does not match the checksum"):
        read_network(path)  # first the checksum: the file changed after Destiny wrote it
    with netCDF4.Dataset(path, "a") as ds:  # its advice for an edit on purpose
        ds.delncattr("destiny_checksum")
    with pytest.raises(NetworkFileError) as info:
        read_network(path)
    message = str(info.value)
    assert "the DSSTNE attributes and Destiny's copy of the config ('destiny_config') disagree" in message
    assert "'layer1_pDropout' is 0.5, but Destiny's copy of the config gives 0.37" in message
    assert "ncatted -a destiny_config,global,d,, FILE" in message
    with netCDF4.Dataset(path, "a") as ds:  # the advice works
        ds.delncattr("destiny_config")
    assert read_network(path).config.layers[1].p_dropout == 0.5


def test_broken_destiny_config(tmp_path):
    path = tmp_path / "net.nc"
    write_dsstne(path, *tiny_network())
    with netCDF4.Dataset(path, "a") as ds:
        ds.setncattr("destiny_config", json.dumps({"Layers": [{"N": 3}]}).encode())
    with pytest.raises(NetworkFileError, match=r"net.nc: attribute 'destiny_config': .*delete that attribute"):
        read_network(path)
