"""DSSTNE's network file layout (reference/dsstne.md §4) as a dictionary of global attributes.

``encode_network`` turns a NetworkConfig, its layer dimensions and its weight matrices into the
global attributes ``NNNetwork::SaveNetCDF`` writes, in its order, each value typed as DSSTNE
types it: ``numpy.uint32`` → NC_UINT, ``numpy.int32`` → NC_INT, ``numpy.uint64`` → NC_UINT64,
``numpy.float32`` → NC_FLOAT, ``str`` → text (NC_CHAR). ``network_decode.py`` reads such a
dictionary back into a NetworkConfig. No netCDF here: ``network_file.py`` moves the
attributes, the weight variables and Destiny's extras in and out of files.

What DSSTNE's layout cannot say is decided here, once:

- Kernel padding follows DSSTNE's ``CalculateDerivedLayerDimensions``: for Convolutional and
  Pooling layers, per kernel axis, ``(kernel - source + 1) // 2`` if the source is narrower
  than the kernel, ``kernel // 2`` at stride 1 ("same"), else 0; other layers 0.
- A Convolutional or Max/Average Pooling layer without ``Kernel`` is written with the kernel
  Destiny uses for it (1 along every axis of the source but the last); ``kernelDimensions`` is
  the kernel's length. Convolution filters are ``width`` = output channels, ``height`` = input
  channels, then the kernel axes slowest first (``length``, ``depth``, ``breadth`` = ky, kx
  for 2-D), as DSSTNE's cuDNN filter descriptor (NCHW) has them.
- Per-layer ``RELUSlope``/``ELUAlpha``/``SELULambda`` are written resolved. DSSTNE does not
  save the network's own defaults, but an Input layer cannot override them, so reading takes
  them from the first Input layer (DSSTNE's 1, 1, 1.050701 where absent) and keeps a Hidden or
  Output layer's value only where it differs. A Hidden layer's own sparseness penalty is kept
  unless it is 0/0 (DSSTNE's loader wrongly reads the global penalty into every layer; Destiny
  reads the per-layer attributes).
- ``checkpoint_name``/``_interval``/``_epochs`` are written as DSSTNE's defaults
  ("checkpoint", 0, 0) and ignored on reading: nothing in a NetworkConfig holds them.
- Floats come back as the shortest decimal that rounds to the stored float32 (0.37, not
  0.3700000047683716), so a value typed in JSON reads back as typed.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np

from destiny.config.enums import LayerKind, LayerType, PoolingFunction
from destiny.config.schema import LayerConfig, NetworkConfig, SparsenessPenalty
from destiny.config.shapes import WeightSpec

DSSTNE_VERSION = 0.9  # NN_VERSION, what SaveNetCDF writes as "version"
SPARSE, DENOISING, BATCH_NORM = 0x1, 0x2, 0x4  # layer attribute bits (NNLayer::Attributes)

WINDOWED = frozenset({PoolingFunction.MAX, PoolingFunction.AVERAGE})  # pooling with a kernel


# ---------------------------------------------------------------------------------------------
# Writing: config → attributes


def encode_network(config: NetworkConfig, dims: Mapping[str, tuple[int, ...]],
                   specs: list[WeightSpec], locked: list[bool] | None = None) -> dict[str, Any]:
    """Every global attribute of the network file, in SaveNetCDF's order.

    dims: each layer's dimensions (as ``resolve_shapes`` gives them); specs: the weight
    matrices (``weight_specs``); locked: ``bLocked`` of each matrix (default all False).
    """
    attrs = _encode_globals(config)
    for i, layer in enumerate(config.layers):
        attrs.update(_encode_layer(config, i, layer, dims))
    attrs["weights"] = np.uint32(len(specs))
    locked = locked or [False] * len(specs)
    for spec, is_locked in zip(specs, locked):
        attrs.update(_encode_weight(config, spec, is_locked))
    return attrs


def _encode_globals(config: NetworkConfig) -> dict[str, Any]:
    f32, u32, i32 = np.float32, np.uint32, np.int32
    penalty, smce = config.sparseness_penalty, config.smce
    return {
        "version": f32(DSSTNE_VERSION),
        "name": config.name,
        "kind": u32(config.kind),
        "errorFunction": u32(config.error_function),
        "maxout_k": i32(config.maxout.k),
        "decay": f32(config.decay),
        "LRN_k": f32(config.lrn.k),
        "LRN_n": i32(config.lrn.n),
        "LRN_alpha": f32(config.lrn.alpha),
        "LRN_beta": f32(config.lrn.beta),
        "bSparsenessPenalty": u32(penalty.beta > 0),
        "sparsenessPenalty_p": f32(penalty.p),
        "sparsenessPenalty_beta": f32(penalty.beta),
        "bDenoising": u32(config.denoising.p > 0),
        "denoising_p": f32(config.denoising.p),
        "deltaBoost_one": f32(config.delta_boost.one),
        "deltaBoost_zero": f32(config.delta_boost.zero),
        "SMCE_oneScale": f32(smce.one_scale),
        "SMCE_zeroScale": f32(smce.zero_scale),
        "SMCE_oneTarget": f32(smce.one_target),
        "SMCE_zeroTarget": f32(smce.zero_target),
        "ShuffleIndices": u32(config.shuffle_indices),
        "checkpoint_name": "checkpoint",
        "checkpoint_interval": i32(0),
        "checkpoint_epochs": i32(0),
        "layers": u32(len(config.layers)),
    }


def window(layer: LayerConfig, source_dims: tuple[int, ...] | None):
    """(kernel, stride, padding) of a layer as DSSTNE stores them: 3 values each, the kernel's
    length being ``kernelDimensions``."""
    kernel = layer.kernel
    windowed = layer.kind != LayerKind.INPUT and (
        layer.type == LayerType.CONVOLUTIONAL
        or (layer.type == LayerType.POOLING and layer.pooling_function in WINDOWED))
    if kernel is None:  # the kernel shapes.py uses: 1 along every source axis but the channels
        axes = max(1, len(source_dims) - 1) if windowed and source_dims else 1
        kernel = (1,) * axes
    stride = layer.kernel_stride or (1,) * len(kernel)
    padding = [0] * len(kernel)
    if layer.kind != LayerKind.INPUT and layer.type != LayerType.FULLY_CONNECTED and source_dims:
        for axis, (k, s) in enumerate(zip(kernel, stride)):
            size = source_dims[axis] if axis < len(source_dims) else 1
            padding[axis] = (k - size + 1) // 2 if size < k else (k // 2 if s == 1 else 0)
    return kernel, stride, tuple(padding)


def _pad(values, n: int = 3, fill: int = 1) -> tuple[int, ...]:
    return tuple(values) + (fill,) * (n - len(values))


def _encode_layer(config: NetworkConfig, i: int, layer: LayerConfig, dims) -> dict[str, Any]:
    f32, u32 = np.float32, np.uint32
    p = f"layer{i}_"
    units = dims[layer.name]
    nx, ny, nz, nw = _pad(units, 4)
    source = dims[layer.sources[0]] if layer.sources else None
    kernel, stride, padding = window(layer, source)
    kx, ky, kz = _pad(kernel)
    sx, sy, sz = _pad(stride)
    px, py, pz = _pad(padding, fill=0)
    own = layer.sparseness_penalty or SparsenessPenalty()
    bits = (SPARSE if layer.sparse else 0) | (BATCH_NORM if layer.batch_norm else 0)
    if layer.kind == LayerKind.INPUT and layer.sparse and config.denoising.p > 0:
        bits |= DENOISING
    attrs = {
        p + "name": layer.name,
        p + "kind": u32(layer.kind),
        p + "type": u32(layer.type),
        p + "poolingfunction": u32(layer.pooling_function or PoolingFunction.NONE),
        p + "dataSet": layer.dataset or "",
        p + "Nx": u32(nx), p + "Ny": u32(ny), p + "Nz": u32(nz), p + "Nw": u32(nw),
        p + "dimensions": u32(len(units)),
        p + "kernelX": u32(kx), p + "kernelY": u32(ky), p + "kernelZ": u32(kz),
        p + "kernelDimensions": u32(len(kernel)),
        p + "kernelStrideX": u32(sx), p + "kernelStrideY": u32(sy), p + "kernelStrideZ": u32(sz),
        p + "kernelPaddingX": u32(px), p + "kernelPaddingY": u32(py), p + "kernelPaddingZ": u32(pz),
        p + "pDropout": f32(layer.p_dropout),
        p + "weightInit": u32(layer.weight_init.scheme),
        p + "weightInitScale": f32(layer.weight_init.scale),
        p + "biasInit": f32(layer.weight_init.bias),
        p + "weightNorm": f32(layer.weight_norm),
        p + "deltaNorm": f32(layer.delta_norm),
        p + "activation": u32(layer.activation),
        p + "sparsenessPenalty_p": f32(own.p),
        p + "sparsenessPenalty_beta": f32(own.beta),
        p + "RELUSlope": f32(config.relu_slope_of(layer)),
        p + "ELUAlpha": f32(config.elu_alpha_of(layer)),
        p + "SELULambda": f32(config.selu_lambda_of(layer)),
        p + "attributes": u32(bits),
        p + "sources": u32(len(layer.sources)),
    }
    attrs.update({f"{p}source{k}": name for k, name in enumerate(layer.sources)})
    attrs[p + "skips"] = u32(len(layer.skips))
    attrs.update({f"{p}skip{k}": name for k, name in enumerate(layer.skips)})
    return attrs


def weight_extent(spec: WeightSpec) -> tuple[int, int, int, int, int]:
    """DSSTNE's (width, height, length, depth, breadth) of a weight matrix."""
    if spec.convolutional:  # (out channels, in channels, kernel axes slowest first)
        out_channels, in_channels, *kernel = spec.shape
        return _pad((out_channels, in_channels, *reversed(kernel)), 5)
    n_in, n_out = spec.shape
    return (n_out, n_in, 1, 1, 1)


def _encode_weight(config: NetworkConfig, spec: WeightSpec, locked: bool) -> dict[str, Any]:
    p = f"weight{spec.index}_"
    width, height, length, depth, breadth = (np.uint64(v) for v in weight_extent(spec))
    attrs = {
        p + "inputLayer": spec.input_layer,
        p + "outputLayer": spec.output_layer,
        p + "width": width, p + "height": height, p + "length": length,
        p + "depth": depth, p + "breadth": breadth,
        p + "bShared": np.uint32(spec.shared_from is not None),
        p + "bLocked": np.uint32(locked),
        p + "norm": np.float32(config.layer(spec.output_layer).weight_norm),
    }
    if spec.shared_from is not None:
        attrs[p + "bTransposed"] = np.uint32(spec.transposed)
        attrs[p + "sourceInputLayer"], attrs[p + "sourceOutputLayer"] = spec.shared_from
    return attrs


# ---------------------------------------------------------------------------------------------
# Attribute values


def f32_float(value: Any) -> float:
    """The shortest decimal that rounds to the same float32 (0.37, not 0.3700000047683716)."""
    return float(str(np.float32(value)))


def scalar(value: Any) -> Any:
    """A one-element array as its Python scalar (netCDF4 gives arrays for some attributes)."""
    if isinstance(value, np.ndarray) and value.size == 1:
        return value.reshape(()).item() if value.dtype.kind in "iuf" else value
    return value


def show(value: Any) -> str:
    """An attribute value for messages (floats as the decimals they were typed as)."""
    if isinstance(value, (float, np.floating)):
        return repr(f32_float(value)) if isinstance(value, np.float32) else repr(float(value))
    if isinstance(value, str):
        return f"text {value[:40]!r}"
    if isinstance(value, np.ndarray):
        return f"{value.size} values"
    return repr(value.item() if isinstance(value, np.generic) else value)


# ---------------------------------------------------------------------------------------------
# Destiny's copy of the config against the DSSTNE attributes


def first_difference(expected: Mapping[str, Any], actual: Mapping[str, Any]) -> str | None:
    """The first attribute whose stored value differs from ``expected`` (floats compared as
    float32), described; None when all agree. checkpoint_* and bLocked are not compared (the
    config does not determine them)."""
    for name, want in expected.items():
        if name.startswith("checkpoint_") or name.endswith("_bLocked"):
            continue
        if name not in actual:
            return f"'{name}' is missing (it should be {show(want)})"
        got = actual[name]
        if not _same(want, got):
            return f"'{name}' is {show(got)}, but Destiny's copy of the config gives {show(want)}"
    return None


def _same(want: Any, got: Any) -> bool:
    got = scalar(got)
    if isinstance(want, str):
        return isinstance(got, str) and got == want
    if isinstance(got, (str, bool)) or not isinstance(got, (int, float, np.number)):
        return False
    if isinstance(want, np.floating):
        a, b = np.float32(want), np.float32(got)
        return bool(a == b or (math.isnan(a) and math.isnan(b)))
    return int(want) == got


__all__ = ["BATCH_NORM", "DENOISING", "DSSTNE_VERSION", "SPARSE", "WINDOWED", "encode_network",
           "f32_float", "first_difference", "scalar", "show", "weight_extent", "window"]
