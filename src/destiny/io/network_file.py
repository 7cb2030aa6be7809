"""Network and checkpoint files in DSSTNE's NetCDF layout (reference/dsstne.md §4).

    network = read_network("gl.nc")            # written by DSSTNE's train or by Destiny
    write_network("out.nc", network)           # DSSTNE's predict reads it

A file holds the network description as global attributes (``network_layout.py`` writes them,
``network_decode.py`` reads them), one ``weight<j>_bias`` and, unless shared, one
``weight<j>_weights`` float variable per weight matrix, and batch-norm variables per
BatchNormalization layer. Destiny adds what DSSTNE ignores: the JSON of the config (global
``destiny_config``, so that a config reads back equal, "auto", comments and all), ``info``
scalars (global ``destiny_<key>``: int as NC_INT64, bool as 0/1, float as NC_DOUBLE, str as
text) and ``extras`` arrays (variables ``destiny_<key>`` of their own dtype, bool as ubyte
marked ``destiny_dtype = "bool"``; e.g. optimizer state). Every file Destiny writes carries a
SHA-256 of its attributes and variables (global ``destiny_checksum``), checked when it is read:
a flipped bit or a spliced file is refused with a NetworkFileError naming the file, instead of
loading wrong weights.
Reading a file that has ``destiny_config`` checks it against the DSSTNE attributes; where they
disagree the file was edited after Destiny wrote it, and reading fails with a NetworkFileError
that says how to drop ``destiny_config`` and read the attributes alone.

Layouts: a FullyConnected matrix is ``(input units, output units)``, row-major, exactly
DSSTNE's ``W[i * out + o]``. A Convolutional filter is ``(out channels, in channels, kx[, ky[,
kz]])`` in memory; the file holds it as DSSTNE's cuDNN filter, ``(out, in[, kz][, ky], kx)``
row-major, and the arrays are transposed on the way in and out.

netCDF4 is imported inside the functions: machines without it can import this module.
"""

from __future__ import annotations

import contextlib
import math
import numbers
import os
import re
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from destiny.config.dump import dumps_config
from destiny.config.loader import loads_config
from destiny.config.schema import NetworkConfig
from destiny.config.shapes import WeightSpec, batch_norm_size, resolve_shapes, weight_specs
from destiny.errors import ConfigError, ConfigWarning, NetworkFileError, UsageError
from destiny.io.atomic import atomic_path
from destiny.io.checksum import content_checksum
from destiny.io.inputs import open_input
from destiny.io.limits import variable_too_big
from destiny.io.network_decode import decode_network
from destiny.io.network_layout import encode_network, first_difference

PREFIX = "destiny_"
CONFIG_ATTRIBUTE = PREFIX + "config"
CHECKSUM_ATTRIBUTE = PREFIX + "checksum"
_RESERVED_INFO = {CONFIG_ATTRIBUTE: "the config", CHECKSUM_ATTRIBUTE: "the file's checksum"}
_KEY = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+\-]*\Z")
_EXTRA_DTYPES = frozenset("i1 u1 i2 u2 i4 u4 i8 u8 f4 f8".split())
_BN_VARIABLES = (("scale", "scaleBN"), ("bias", "biasBN"), ("running_mean", "runningMeanBN"),
                 ("running_variance", "runningVarianceBN"))


@dataclass
class WeightArrays:
    """One weight matrix and its bias, as stored in ``weight<j>_...``."""

    input_layer: str
    output_layer: str
    weights: np.ndarray | None  # float32 (input units, output units) for FullyConnected,
    #                             (out channels, in channels, kx[, ky[, kz]]) for Convolutional;
    #                             None when shared
    bias: np.ndarray  # float32 (output units,) or (out channels,)
    shared_from: tuple[str, str] | None = None  # (sourceInputLayer, sourceOutputLayer)
    transposed: bool = False
    locked: bool = False
    norm: float = 0.0  # weight<j>_norm: the output layer's WeightNorm


@dataclass
class BatchNormArrays:
    """A BatchNormalization layer's parameters and statistics, float32 (size,) each: one per
    unit for FullyConnected layers, one per channel for Convolutional ones."""

    scale: np.ndarray
    bias: np.ndarray
    running_mean: np.ndarray
    running_variance: np.ndarray


@dataclass
class NetworkFile:
    """Everything a network file holds."""

    config: NetworkConfig
    dims: dict[str, tuple[int, ...]]  # every layer's dimensions (Nx[, Ny[, Nz[, Nw]]])
    weights: list[WeightArrays]  # in DSSTNE's order: shapes.weight_specs(config, dims)
    batch_norm: dict[str, BatchNormArrays] = field(default_factory=dict)  # by layer name
    extras: dict[str, np.ndarray] = field(default_factory=dict)  # variables destiny_<key>
    info: dict[str, int | float | str] = field(default_factory=dict)  # attributes destiny_<key>


# ---------------------------------------------------------------------------------------------
# Writing


def write_network(path: str | os.PathLike, network: NetworkFile, *, stage=None) -> None:
    """Write ``network`` to ``path`` in DSSTNE's layout, atomically (whole or not at all; with
    ``stage``, an ``io.atomic.staged`` set: renamed into place with the set's other files).

    UsageError when the arrays do not fit the config (names, shapes, missing batch norm, bad
    extras or info keys); the file is not touched then.
    """
    import netCDF4

    path = os.fspath(path)
    dims = {name: tuple(int(d) for d in units) for name, units in network.dims.items()}
    specs = _check_network(network, dims)
    attrs = encode_network(network.config, dims, specs, [w.locked for w in network.weights])
    info = _encode_info(network.info)
    extras = _encode_extras(network.extras)
    with atomic_path(path, stage=stage) as tmp:
        ds = netCDF4.Dataset(tmp, "w", format="NETCDF4")
        try:
            for name, value in attrs.items():
                ds.setncattr(name, _nc_value(value))
            for i, layer in enumerate(network.config.layers):
                if layer.batch_norm:
                    _write_batch_norm(ds, i, network.batch_norm[layer.name])
            for spec, arrays in zip(specs, network.weights):
                _write_weight(ds, spec, arrays)
            ds.setncattr(CONFIG_ATTRIBUTE, dumps_config(network.config).encode("ascii"))
            for name, value in info.items():
                ds.setncattr(name, value)
            for key, array in extras.items():
                _write_extra(ds, key, array)
            ds.setncattr(CHECKSUM_ATTRIBUTE, content_checksum(ds, CHECKSUM_ATTRIBUTE).encode("ascii"))
        finally:
            ds.close()


def _nc_value(value: Any) -> Any:
    # UTF-8 bytes make netCDF4 write text as NC_CHAR (DSSTNE's type); a str that is not ASCII
    # would become NC_STRING. An empty text is stored as one NUL (netCDF4 cannot write length 0).
    return value.encode("utf-8") if isinstance(value, str) else value


def _variable(ds, name: str, dim: str, values: np.ndarray) -> None:
    ds.createDimension(dim, values.size)
    var = ds.createVariable(name, "f4", (dim,), fill_value=False)
    var[:] = values


def _write_batch_norm(ds, i: int, arrays: BatchNormArrays) -> None:
    dim = f"layer{i}_bnDim"
    ds.createDimension(dim, arrays.scale.size)
    for attr, suffix in _BN_VARIABLES:
        var = ds.createVariable(f"layer{i}_{suffix}", "f4", (dim,), fill_value=False)
        var[:] = _float32(getattr(arrays, attr)).ravel()


def _write_weight(ds, spec: WeightSpec, arrays: WeightArrays) -> None:
    p = f"weight{spec.index}_"
    _variable(ds, p + "bias", p + "biasDim", _float32(arrays.bias).ravel())
    if spec.shared_from is None:
        _variable(ds, p + "weights", p + "weightDim", to_file_layout(spec, _float32(arrays.weights)))


def to_file_layout(spec: WeightSpec, weights: np.ndarray) -> np.ndarray:
    """The flat float32 array DSSTNE stores for ``weights`` (see the module docstring)."""
    if spec.convolutional:  # (out, in, kx, ky, kz) → (out, in, kz, ky, kx)
        weights = weights.transpose(0, 1, *range(weights.ndim - 1, 1, -1))
    return np.ascontiguousarray(weights).ravel()


def from_file_layout(spec: WeightSpec, flat: np.ndarray) -> np.ndarray:
    """Inverse of ``to_file_layout``: the array of shape ``spec.shape``."""
    if not spec.convolutional:
        return flat.reshape(spec.shape)
    out_channels, in_channels, *kernel = spec.shape
    stored = flat.reshape((out_channels, in_channels, *reversed(kernel)))
    return np.ascontiguousarray(stored.transpose(0, 1, *range(stored.ndim - 1, 1, -1)))


def _float32(array: Any) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(array, dtype=np.float32))


def _check_network(network: NetworkFile, dims: dict[str, tuple[int, ...]]) -> list[WeightSpec]:
    """The weight specs of the config, after checking that dims, weights and batch norm fit it."""
    config = network.config
    names = [layer.name for layer in config.layers]
    if sorted(dims) != sorted(names):
        raise UsageError(f"NetworkFile.dims has layers {sorted(dims)}, but the config has {sorted(names)}; "
                         "give the dimensions of every layer (shapes.resolve_shapes)")
    auto = {layer.dataset: dims[layer.name] for layer in config.layers if layer.is_auto}
    resolved = resolve_shapes(config, auto)
    for name in names:
        if resolved[name] != dims[name]:
            raise UsageError(f"NetworkFile.dims['{name}'] is {dims[name]}, but the config gives "
                             f"{resolved[name]}; use shapes.resolve_shapes(config, dataset_dims)")
    specs = weight_specs(config, dims)
    if len(network.weights) != len(specs):
        raise UsageError(f"NetworkFile.weights has {len(network.weights)} entries, but the config has "
                         f"{len(specs)} weight matrices (one per Source of every non-pooling layer, "
                         "in shapes.weight_specs order)")
    for spec, arrays in zip(specs, network.weights):
        _check_weight(config, spec, arrays)
    _check_batch_norm(network, dims)
    return specs


def _check_weight(config: NetworkConfig, spec: WeightSpec, arrays: WeightArrays) -> None:
    where = f"NetworkFile.weights[{spec.index}] ({spec.input_layer} → {spec.output_layer})"
    if (arrays.input_layer, arrays.output_layer) != (spec.input_layer, spec.output_layer):
        raise UsageError(f"{where} is {arrays.input_layer} → {arrays.output_layer}; the weights must "
                         "follow shapes.weight_specs(config, dims)")
    if (arrays.shared_from, bool(arrays.transposed)) != (spec.shared_from, spec.transposed):
        raise UsageError(f"{where} says shared_from={arrays.shared_from}, transposed={arrays.transposed}, "
                         f"but the config's SharedWeights give {spec.shared_from}, {spec.transposed}")
    if spec.shared_from is not None and arrays.weights is not None:
        raise UsageError(f"{where} shares {spec.shared_from[0]} → {spec.shared_from[1]}; give weights=None")
    if spec.shared_from is None and (arrays.weights is None or np.shape(arrays.weights) != spec.shape):
        got = None if arrays.weights is None else np.shape(arrays.weights)
        raise UsageError(f"{where} has weights of shape {got}; expected {spec.shape}")
    if np.shape(arrays.bias) != (spec.bias_size,):
        raise UsageError(f"{where} has a bias of shape {np.shape(arrays.bias)}; expected ({spec.bias_size},)")
    layer_norm = config.layer(spec.output_layer).weight_norm
    if arrays.norm and np.float32(arrays.norm) != np.float32(layer_norm):
        raise UsageError(f"{where} has norm {arrays.norm}, but layer '{spec.output_layer}' has WeightNorm "
                         f"{layer_norm}; the file stores the layer's (leave norm at 0.0 or set it equal)")


def _check_batch_norm(network: NetworkFile, dims) -> None:
    for layer in network.config.layers:
        size = batch_norm_size(layer, dims[layer.name])
        arrays = network.batch_norm.get(layer.name)
        if not layer.batch_norm:
            if layer.name in network.batch_norm:
                raise UsageError(f"NetworkFile.batch_norm has layer '{layer.name}', which has no "
                                 "BatchNormalization")
            continue
        if arrays is None:
            raise UsageError(f"layer '{layer.name}' has BatchNormalization but NetworkFile.batch_norm has "
                             f"no arrays for it; give BatchNormArrays of {size} values each")
        for attr, _ in _BN_VARIABLES:
            if np.size(getattr(arrays, attr)) != size:
                raise UsageError(f"NetworkFile.batch_norm['{layer.name}'].{attr} has "
                                 f"{np.size(getattr(arrays, attr))} values; expected {size}")


def _check_key(key: Any, what: str) -> None:
    if not isinstance(key, str) or not _KEY.match(key):
        thing = "variable" if what == "extras" else "attribute"
        raise UsageError(f"NetworkFile.{what} key {key!r} cannot name a NetCDF {thing}; use letters, "
                         "digits and _ . + - (not starting with . + -)")


def _encode_info(info: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in info.items():
        _check_key(key, "info")
        if PREFIX + key in _RESERVED_INFO:
            raise UsageError(f"NetworkFile.info key '{key}' is reserved (Destiny stores {_RESERVED_INFO[PREFIX + key]} "
                             f"as '{PREFIX + key}'); choose another name")
        if isinstance(value, str):
            out[PREFIX + key] = value.encode("utf-8")
        elif isinstance(value, numbers.Integral):  # bool too: stored as 0/1
            if not -2**63 <= int(value) < 2**63:
                raise UsageError(f"NetworkFile.info['{key}'] = {value} does not fit 64 bits; store it as text")
            out[PREFIX + key] = np.int64(value)
        elif isinstance(value, numbers.Real):
            out[PREFIX + key] = np.float64(value)
        else:
            raise UsageError(f"NetworkFile.info['{key}'] is a {type(value).__name__}; info holds int, "
                             "float or str (put arrays in extras)")
    return out


def _encode_extras(extras: dict[str, Any]) -> dict[str, np.ndarray]:
    out = {}
    for key, value in extras.items():
        _check_key(key, "extras")
        array = np.asarray(value)
        if array.dtype != bool and array.dtype.str[1:] not in _EXTRA_DTYPES:
            raise UsageError(f"NetworkFile.extras['{key}'] has dtype {array.dtype}; NetCDF stores bool, "
                             "int8..int64, uint8..uint64, float32 and float64 (convert it)")
        out[key] = np.array(array, dtype=array.dtype.newbyteorder("="), order="C")  # keeps 0-d
    return out


def _write_extra(ds, key: str, array: np.ndarray) -> None:
    dims = tuple(f"{PREFIX}{key}_dim{axis}" for axis in range(array.ndim))
    for name, size in zip(dims, array.shape):
        ds.createDimension(name, size)  # size 0 makes it unlimited, which reads back as 0
    stored = array.astype(np.uint8) if array.dtype == bool else array
    var = ds.createVariable(PREFIX + key, stored.dtype, dims, fill_value=False)
    if array.dtype == bool:
        var.setncattr(PREFIX + "dtype", b"bool")
    if array.size:
        var[...] = stored


# ---------------------------------------------------------------------------------------------
# Reading


def read_network(path: str | os.PathLike, *, verify: bool = True) -> NetworkFile:
    """Read a network file written by DSSTNE or by Destiny.

    FileNotFoundError when it does not exist; NetworkFileError (naming the file, the attribute
    or variable, and what was expected) when it is not a network file or is damaged, or when
    its content does not match the checksum Destiny stored in it (``verify=False`` skips that
    check, which reads every variable twice).
    """
    import netCDF4

    path = os.fspath(path)
    with open_input(path):  # the usual FileNotFoundError, IsADirectoryError, PermissionError; no FIFO
        pass
    try:
        ds = netCDF4.Dataset(path, "r")
    except (OSError, RuntimeError, AttributeError, IndexError, ValueError) as exc:  # netCDF4 on a damaged header
        raise NetworkFileError(f"{path} is not a NetCDF file or is damaged ({exc}); pass a network "
                               "file written by DSSTNE's train or by Destiny") from None
    try:
        ds.set_auto_mask(False)
        if verify:
            _verify(ds, path)
        return _read(ds, path)
    except (NetworkFileError, UsageError):
        raise
    except (OSError, RuntimeError, AttributeError, IndexError, ValueError, OverflowError) as exc:
        # what netCDF4 raises on unreadable data (a damaged attribute is an AttributeError)
        raise NetworkFileError(f"{path} is damaged (truncated?): reading it failed with {exc!r}; "
                               "re-save the network or use the file it was copied from") from None
    finally:
        with contextlib.suppress(OSError, RuntimeError):  # a damaged file may not close cleanly
            ds.close()


def _verify(ds, path: str) -> None:
    """Compare the file's content with its stored checksum (files without one: DSSTNE's)."""
    if CHECKSUM_ATTRIBUTE not in ds.ncattrs():
        return
    size = os.path.getsize(path)
    for var in ds.variables.values():  # before hashing: a forged size would take forever
        too_big = variable_too_big(var, size)
        if too_big:
            raise NetworkFileError(f"{path}: {too_big}; re-save the network")
    stored = ds.getncattr(CHECKSUM_ATTRIBUTE)
    actual = content_checksum(ds, CHECKSUM_ATTRIBUTE)
    if stored != actual:
        shown = stored[:23] if isinstance(stored, str) else repr(stored)[:23]
        raise NetworkFileError(
            f"{path} is corrupt: its content does not match the checksum stored in it ({shown}… stored, "
            f"{actual[:23]}… computed); a bit flipped on disk or in a copy, or the file was edited. Use "
            f"another checkpoint (destiny train --resume skips corrupt ones) or copy the file again; if you "
            f"edited it on purpose, delete the checksum (ncatted -a {CHECKSUM_ATTRIBUTE},global,d,, FILE)")


def _read(ds, path: str) -> NetworkFile:
    attrs = {name: ds.getncattr(name) for name in ds.ncattrs()}
    decoded = decode_network(attrs, path)
    config = decoded.config
    if CONFIG_ATTRIBUTE in attrs:  # its matrices, which DSSTNE's attributes may not say (Variational: 2N wide)
        config = _destiny_config(attrs, path, decoded.dims)
    specs = weight_specs(config, decoded.dims)
    headers = _match_headers(decoded.weights, specs, path)
    weights = [_read_weight(ds, path, spec, headers[spec.index]) for spec in specs]
    batch_norm = {}
    for i, layer in enumerate(decoded.config.layers):
        if layer.batch_norm:
            size = batch_norm_size(layer, decoded.dims[layer.name])
            batch_norm[layer.name] = BatchNormArrays(*(
                _read_floats(ds, path, f"layer{i}_{suffix}", size, f"BatchNormalization of '{layer.name}'")
                for _, suffix in _BN_VARIABLES))
    return NetworkFile(config, decoded.dims, weights, batch_norm, _read_extras(ds, path), _read_info(attrs, path))


def _match_headers(headers, specs: list[WeightSpec], path: str) -> list:
    """The file's weight headers in spec order (DSSTNE writes them in that order already)."""
    by_pair = {}
    for h in headers:
        pair = (h.input_layer, h.output_layer)
        if pair in by_pair:
            raise NetworkFileError(f"{path}: weight{by_pair[pair].index} and weight{h.index} both connect "
                                   f"{pair[0]} → {pair[1]}; re-save the network")
        by_pair[pair] = h
    matched = []
    for spec in specs:
        h = by_pair.pop((spec.input_layer, spec.output_layer), None)
        if h is None:
            raise NetworkFileError(
                f"{path}: no weight<j>_inputLayer/_outputLayer pair is {spec.input_layer} → "
                f"{spec.output_layer}, but layer '{spec.output_layer}' has Source '{spec.input_layer}'; "
                "the weights are incomplete; re-save the network")
        if (h.shared_from, h.transposed) != (spec.shared_from, spec.transposed):
            raise NetworkFileError(f"{path}: weight{h.index} sharing does not match the layers' shared weights")
        matched.append(h)
    for h in by_pair.values():
        raise NetworkFileError(
            f"{path}: weight{h.index} connects {h.input_layer} → {h.output_layer}, which is no connection of "
            f"the network (one weight per Source of every non-pooling layer); re-save the network")
    return matched


def _read_weight(ds, path: str, spec: WeightSpec, header) -> WeightArrays:
    what = f"{spec.input_layer} → {spec.output_layer}"
    p = f"weight{header.index}_"
    bias = _read_floats(ds, path, p + "bias", spec.bias_size, f"the bias of {what} (output units)")
    weights = None
    if spec.shared_from is None:
        axes = "out channels × in channels × kernel" if spec.convolutional else "input units × output units"
        flat = _read_floats(ds, path, p + "weights", math.prod(spec.shape),
                            f"{what}: {'×'.join(map(str, spec.shape))} ({axes})")
        weights = from_file_layout(spec, flat)
    return WeightArrays(spec.input_layer, spec.output_layer, weights, bias, spec.shared_from,
                        spec.transposed, header.locked, header.norm)


def _read_floats(ds, path: str, name: str, size: int, what: str) -> np.ndarray:
    var = ds.variables.get(name)
    if var is None:
        raise NetworkFileError(f"{path}: the variable '{name}' ({what}) is missing; re-save the network")
    too_big = variable_too_big(var, os.path.getsize(path))
    if too_big:
        raise NetworkFileError(f"{path}: {too_big}; re-save the network")
    if var.size != size:
        raise NetworkFileError(
            f"{path}: the variable '{name}' has {var.size} values, but {what} needs {size}; the arrays do "
            "not belong to the layers the file describes (wrong layer sizes?); re-save the network")
    return np.ascontiguousarray(np.asarray(var[...], dtype=np.float32).reshape(-1))


def _destiny_config(attrs, path: str, dims) -> NetworkConfig:
    """Destiny's exact copy of the config, once it agrees with the DSSTNE attributes."""
    source = f"{path}: attribute '{CONFIG_ATTRIBUTE}'"
    text = attrs[CONFIG_ATTRIBUTE]
    try:
        with warnings.catch_warnings():  # its spellings were reported when it was first loaded
            warnings.simplefilter("ignore", ConfigWarning)
            config = loads_config(text if isinstance(text, str) else "", source=source)
            auto = {layer.dataset: dims[layer.name] for layer in config.layers
                    if layer.is_auto and layer.name in dims}
            config_dims = resolve_shapes(config, auto, source=source)
            specs = weight_specs(config, config_dims, source=source)
    except ConfigError as exc:
        raise NetworkFileError(f"{exc}; delete that attribute to read the network from DSSTNE's attributes "
                               f"alone (ncatted -a {CONFIG_ATTRIBUTE},global,d,, FILE)") from None
    difference = first_difference(encode_network(config, config_dims, specs), attrs)
    if difference is not None:
        raise NetworkFileError(
            f"{path}: the DSSTNE attributes and Destiny's copy of the config ('{CONFIG_ATTRIBUTE}') disagree: "
            f"{difference}. The file was changed after Destiny wrote it; delete '{CONFIG_ATTRIBUTE}' "
            f"(ncatted -a {CONFIG_ATTRIBUTE},global,d,, FILE) to use the attributes alone")
    return config


def _read_info(attrs, path: str) -> dict[str, int | float | str]:
    info: dict[str, int | float | str] = {}
    for name, value in attrs.items():
        if not name.startswith(PREFIX) or name in _RESERVED_INFO:
            continue
        if isinstance(value, str):
            info[name[len(PREFIX):]] = value
        elif np.ndim(value) == 0 and np.asarray(value).dtype.kind in "iub":
            info[name[len(PREFIX):]] = int(value)
        elif np.ndim(value) == 0 and np.asarray(value).dtype.kind == "f":
            info[name[len(PREFIX):]] = float(value)
        else:
            raise NetworkFileError(f"{path}: attribute '{name}' holds {np.size(value)} values; Destiny's "
                                   "info attributes hold one number or a text")
    return info


def _read_extras(ds, path: str) -> dict[str, np.ndarray]:
    extras = {}
    for name, var in ds.variables.items():
        if name.startswith(PREFIX):
            too_big = variable_too_big(var, os.path.getsize(path))
            if too_big:
                raise NetworkFileError(f"{path}: {too_big}; re-save the network")
            array = np.asarray(var[...])
            if PREFIX + "dtype" in var.ncattrs() and var.getncattr(PREFIX + "dtype") == "bool":
                array = array.astype(bool)
            extras[name[len(PREFIX):]] = np.array(array, dtype=array.dtype.newbyteorder("="), order="C")
    return extras


__all__ = ["BatchNormArrays", "NetworkFile", "WeightArrays", "from_file_layout", "read_network",
           "to_file_layout", "write_network"]
