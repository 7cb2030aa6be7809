"""DSSTNE network file attributes → NetworkConfig (the inverse of ``network_layout.py``, whose
docstring gives the choices both follow).

Reads what ``LoadNeuralNetworkNetCDF`` reads, with its defaults where DSSTNE has them (``decay``,
``checkpoint_*``, ``bLocked``, ``norm``, ``poolingfunction`` unless Pooling), plus the defaults
older DSSTNE versions assumed for attributes added later (``Nw``, ``skips``,
``kernelDimensions``, ``kernelPadding*`` (derived again, never read), ``pDropout``,
``weightInit*``, ``biasInit``, ``weightNorm``, ``deltaNorm``, per-layer ``RELUSlope``,
``ELUAlpha``, ``SELULambda`` and ``sparsenessPenalty_*``). Integer attributes may have any
integer NC type, as netCDF converts them for DSSTNE too. Every value goes through the check its
JSON key gets (``fields.py``), and the whole through ``validate``: a file gives either a valid
config or a NetworkFileError naming the file and the attribute.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from destiny.config import fields as f
from destiny.config.enums import (
    Activation,
    ErrorFunction,
    LayerKind,
    LayerType,
    NetworkKind,
    PoolingFunction,
    WeightInitScheme,
)
from destiny.config.schema import (
    DeltaBoost,
    Denoising,
    LayerConfig,
    LocalResponseNormalization,
    MarginalCrossEntropy,
    Maxout,
    NetworkConfig,
    SharedWeights,
    SparsenessPenalty,
    WeightInit,
)
from destiny.config.shapes import resolve_shapes
from destiny.config.validate import validate
from destiny.errors import ConfigError, NetworkFileError
from destiny.io.network_layout import BATCH_NORM, DENOISING, SPARSE, WINDOWED, f32_float, scalar, show

_DEFAULTS = NetworkConfig()
_WEIGHTED = frozenset({LayerKind.HIDDEN, LayerKind.OUTPUT})
_REFRESH = "re-save the network with DSSTNE or Destiny, or use the file it was copied from"


@dataclass
class WeightHeader:
    """What the attributes say about ``weight<index>``; its arrays are read separately."""

    index: int
    input_layer: str
    output_layer: str
    shared_from: tuple[str, str] | None
    transposed: bool
    locked: bool
    norm: float


@dataclass
class DecodedNetwork:
    config: NetworkConfig
    dims: dict[str, tuple[int, ...]]
    weights: list[WeightHeader]


class _Missing:
    pass


REQUIRED = _Missing()


class Attributes:
    """Typed access to a file's global attributes; every problem is a NetworkFileError that
    names the file and the attribute."""

    def __init__(self, attrs: Mapping[str, Any], path: str):
        self.attrs, self.path = attrs, path

    def error(self, name: str, message: str) -> NetworkFileError:
        return NetworkFileError(f"{self.path}: attribute '{name}' {message}")

    def _get(self, name: str, default: Any, what: str) -> Any:
        if name in self.attrs:
            return self.attrs[name]
        if default is REQUIRED:
            raise NetworkFileError(
                f"{self.path}: the attribute '{name}' ({what}) is missing; every DSSTNE network file "
                f"has it, so the file is incomplete or not a network file; {_REFRESH}")
        return default

    def text(self, name: str, default: Any = REQUIRED) -> str:
        value = self._get(name, default, "text")
        if not isinstance(value, str):
            raise self.error(name, f"should be text; got {show(value)}; {_REFRESH}")
        return value

    def integer(self, name: str, default: Any = REQUIRED, *, low: int = 0, what: str = "an integer") -> int:
        value = self._get(name, default, what)
        item = scalar(value)
        if isinstance(item, (float, np.floating)) and float(item).is_integer():
            item = int(item)  # netCDF converts for DSSTNE's getValues(&uint) too
        if not isinstance(item, (int, np.integer)) or isinstance(item, bool) or int(item) < low:
            raise self.error(name, f"should be {what} >= {low}; got {show(value)}; {_REFRESH}")
        return int(item)

    def flag(self, name: str, default: Any = REQUIRED) -> bool:
        return self.integer(name, default, what="0 or 1") != 0  # DSSTNE: nonzero is true

    def number(self, name: str, default: Any = REQUIRED) -> float:
        value = self._get(name, default, "a float")
        item = scalar(value)
        if not isinstance(item, (int, float, np.integer, np.floating)) or isinstance(item, bool):
            raise self.error(name, f"should be a number; got {show(value)}; {_REFRESH}")
        return f32_float(item)

    def checked(self, name: str, cls, field: str, value: Any, layer: str | None = None) -> Any:
        """``value`` after the check that JSON key ``cls.field`` gets (ranges, positivity)."""
        parse = next(fl for fl in dataclasses.fields(cls) if fl.name == field).metadata["parse"]
        try:
            return parse(value, f.Place(self.path, name, layer))
        except ConfigError as exc:
            raise NetworkFileError(f"{exc}; {_REFRESH}") from None

    def enum(self, name: str, cls, default: Any = REQUIRED):
        value = self.integer(name, default, what=f"a DSSTNE {cls.__name__} number")
        try:
            return cls(value)
        except ValueError:
            known = ", ".join(f"{m.value} ({m.json})" for m in cls)
            raise self.error(name, f"is {value}, which is no {cls.__name__} Destiny knows; expected "
                                   f"one of {known}. The file is damaged or from a DSSTNE extension; "
                                   f"{_REFRESH}") from None


def check_network_file(attrs: Mapping[str, Any], path: str) -> None:
    """A dataset file or another NetCDF file passed where a network file is wanted."""
    if "layers" in attrs:
        return
    if "datasets" in attrs:
        raise NetworkFileError(
            f"{path} is a dataset file (it has 'datasets'), not a network file; pass it with "
            "-i/-o, and the network with -n")
    raise NetworkFileError(
        f"{path} is a NetCDF file but not a DSSTNE network file (it has no 'layers' attribute); "
        "pass the network written by DSSTNE's train or by Destiny")


def decode_network(attrs: Mapping[str, Any], path: str) -> DecodedNetwork:
    """The NetworkConfig, layer dimensions and weight headers the attributes describe,
    validated (NetworkFileError otherwise)."""
    check_network_file(attrs, path)
    a = Attributes(attrs, path)
    values = _decode_globals(a)
    headers = [_decode_weight_header(a, j) for j in range(a.integer("weights"))]
    shared: dict[str, list[SharedWeights]] = {}
    for h in headers:
        if h.shared_from is not None:
            shared.setdefault(h.output_layer, []).append(
                SharedWeights(h.input_layer, h.shared_from[0], h.shared_from[1], h.transposed))
    n_layers = a.integer("layers", low=1)
    values.update(_network_activation_defaults(a, n_layers))
    layers, dims = [], {}
    for i in range(n_layers):
        layer, units = _decode_layer(a, i, values, shared)
        if layer.name in dims:
            raise a.error(f"layer{i}_name", f"is '{layer.name}', the name of an earlier layer; "
                                            f"layer names must be unique; {_REFRESH}")
        layers.append(layer)
        dims[layer.name] = units
    for name in shared:
        if name not in dims:
            raise NetworkFileError(f"{path}: a shared weight's outputLayer is '{name}', which is no "
                                   f"layer of the network; {_REFRESH}")
    config = NetworkConfig(layers=tuple(layers), **values)
    try:
        validate(config, source=path)
    except ConfigError as exc:  # Layers[i] is layer<i>_ in the file
        raise NetworkFileError(f"{exc} (in the network the file's attributes describe; Layers[i] "
                               f"is layer<i>_...); {_REFRESH}") from None
    check_dims(config, dims, path)
    return DecodedNetwork(config, dims, headers)


def _decode_globals(a: Attributes) -> dict[str, Any]:
    num = a.number
    penalty_on, denoising_on = a.flag("bSparsenessPenalty"), a.flag("bDenoising")
    penalty = SparsenessPenalty(
        a.checked("sparsenessPenalty_p", SparsenessPenalty, "p", num("sparsenessPenalty_p")),
        a.checked("sparsenessPenalty_beta", SparsenessPenalty, "beta", num("sparsenessPenalty_beta"))
        if penalty_on else 0.0)  # DSSTNE applies the penalty only where the flag is set
    denoising_p = num("denoising_p") if denoising_on else 0.0
    return dict(
        version=a.checked("version", NetworkConfig, "version", num("version")),
        name=a.text("name"),
        kind=a.enum("kind", NetworkKind),
        error_function=a.enum("errorFunction", ErrorFunction),
        maxout=Maxout(a.checked("maxout_k", Maxout, "k", a.integer("maxout_k", low=-2**31))),
        decay=a.checked("decay", NetworkConfig, "decay", num("decay", 0.0)),
        lrn=LocalResponseNormalization(
            a.checked("LRN_k", LocalResponseNormalization, "k", num("LRN_k")),
            a.checked("LRN_n", LocalResponseNormalization, "n", a.integer("LRN_n", low=-2**31)),
            a.checked("LRN_alpha", LocalResponseNormalization, "alpha", num("LRN_alpha")),
            a.checked("LRN_beta", LocalResponseNormalization, "beta", num("LRN_beta"))),
        sparseness_penalty=penalty,
        denoising=Denoising(a.checked("denoising_p", Denoising, "p", denoising_p)),
        delta_boost=DeltaBoost(
            a.checked("deltaBoost_one", DeltaBoost, "one", num("deltaBoost_one")),
            a.checked("deltaBoost_zero", DeltaBoost, "zero", num("deltaBoost_zero"))),
        smce=MarginalCrossEntropy(
            one_target=a.checked("SMCE_oneTarget", MarginalCrossEntropy, "one_target", num("SMCE_oneTarget")),
            zero_target=a.checked("SMCE_zeroTarget", MarginalCrossEntropy, "zero_target", num("SMCE_zeroTarget")),
            one_scale=a.checked("SMCE_oneScale", MarginalCrossEntropy, "one_scale", num("SMCE_oneScale")),
            zero_scale=a.checked("SMCE_zeroScale", MarginalCrossEntropy, "zero_scale", num("SMCE_zeroScale"))),
        shuffle_indices=a.flag("ShuffleIndices"),
    )


_ACTIVATION_PARAMETERS = (("RELUSlope", "relu_slope"), ("ELUAlpha", "elu_alpha"), ("SELULambda", "selu_lambda"))


def _network_activation_defaults(a: Attributes, n_layers: int) -> dict[str, float]:
    """The network's RELUSlope, ELUAlpha and SELULambda: DSSTNE resolves them into every layer,
    and an Input layer has no values of its own."""
    first_input = next((i for i in range(n_layers)
                        if a.integer(f"layer{i}_kind", -1, low=-1) == LayerKind.INPUT), None)
    out = {}
    for attr, field in _ACTIVATION_PARAMETERS:
        default = getattr(_DEFAULTS, field)
        if first_input is None:  # validate() will say that an Input layer is missing
            out[field] = default
            continue
        name = f"layer{first_input}_{attr}"
        out[field] = a.checked(name, NetworkConfig, field, a.number(name, default))
    return out


def _decode_weight_header(a: Attributes, j: int) -> WeightHeader:
    p = f"weight{j}_"
    shared = a.flag(p + "bShared")
    source = (a.text(p + "sourceInputLayer"), a.text(p + "sourceOutputLayer")) if shared else None
    return WeightHeader(
        index=j,
        input_layer=a.text(p + "inputLayer"),
        output_layer=a.text(p + "outputLayer"),
        shared_from=source,
        transposed=a.flag(p + "bTransposed") if shared else False,
        locked=a.flag(p + "bLocked", 0),
        norm=a.number(p + "norm", 0.0),
    )


def _decode_dims(a: Attributes, p: str) -> tuple[int, ...]:
    n = a.integer(p + "dimensions", low=1)
    if n > 4:
        raise a.error(p + "dimensions", f"is {n}; a layer has 1 to 4 dimensions; {_REFRESH}")
    sizes = [a.integer(p + axis, low=1) for axis in ("Nx", "Ny", "Nz")] + [a.integer(p + "Nw", 1, low=1)]
    for axis in range(n, 4):
        if sizes[axis] != 1:
            name = p + ("Nx", "Ny", "Nz", "Nw")[axis]
            raise a.error(name, f"is {sizes[axis]} but {p}dimensions is {n}, so it should be 1; {_REFRESH}")
    return tuple(sizes[:n])


def _decode_window(a: Attributes, p: str, layer_type: LayerType, units: tuple[int, ...]):
    n = a.integer(p + "kernelDimensions",
                  min(3, max(1, len(units) - 1)) if layer_type == LayerType.CONVOLUTIONAL else 1, low=1)
    if n > 3:
        raise a.error(p + "kernelDimensions", f"is {n}; a kernel has 1 to 3 axes; {_REFRESH}")
    kernel = tuple(a.integer(p + "kernel" + axis, low=1) for axis in "XYZ")[:n]
    stride = tuple(a.integer(p + "kernelStride" + axis, low=1) for axis in "XYZ")[:n]
    return kernel, stride


def _decode_layer(a: Attributes, i: int, network: Mapping[str, Any],
                  shared: Mapping[str, list[SharedWeights]]) -> tuple[LayerConfig, tuple[int, ...]]:
    """Layer i and its dimensions; network: the decoded network-level values."""
    p = f"layer{i}_"
    name = a.checked(p + "name", LayerConfig, "name", a.text(p + "name"))
    kind = a.enum(p + "kind", LayerKind)
    layer_type = a.enum(p + "type", LayerType)
    pooling = a.enum(p + "poolingfunction", PoolingFunction,
                     REQUIRED if layer_type == LayerType.POOLING else 0)
    units = _decode_dims(a, p)
    kernel, stride = _decode_window(a, p, layer_type, units)
    bits = a.integer(p + "attributes")
    if bits & ~(SPARSE | DENOISING | BATCH_NORM):
        raise a.error(p + "attributes", f"is {bits}; only the bits Sparse (1), Denoising (2) and "
                                        f"BatchNormalization (4) exist; {_REFRESH}")
    if bits & BATCH_NORM and kind != LayerKind.HIDDEN:
        raise a.error(p + "attributes", f"has BatchNormalization on {kind.json} layer '{name}'; "
                                        "only Hidden layers have batch normalization")
    sources = tuple(a.text(f"{p}source{k}") for k in range(a.integer(p + "sources")))
    skips = tuple(a.text(f"{p}skip{k}") for k in range(a.integer(p + "skips", 0)))
    if kind == LayerKind.INPUT and sources:
        raise a.error(p + "sources", f"is {len(sources)}, but Input layer '{name}' has no sources; {_REFRESH}")
    if kind not in _WEIGHTED and skips:
        raise a.error(p + "skips", f"is {len(skips)}, but only Hidden and Output layers have skips; {_REFRESH}")
    values: dict[str, Any] = dict(
        kind=kind, type=layer_type, name=name, n=_unit_count(kind, layer_type, units),
        sparse=bool(bits & SPARSE),
        p_dropout=a.checked(p + "pDropout", LayerConfig, "p_dropout", a.number(p + "pDropout", 0.0), name),
        dataset=(a.text(p + "dataSet") or None) if kind in (LayerKind.INPUT, LayerKind.OUTPUT) else None,
        sources=sources,
    )
    activation = a.enum(p + "activation", Activation)
    if kind in _WEIGHTED:
        values.update(_decode_weighted(a, p, name, activation, network, shared.get(name, ())))
        values["skips"] = skips
    if kind == LayerKind.HIDDEN:
        values["batch_norm"] = bool(bits & BATCH_NORM)
        own = SparsenessPenalty(*(
            a.checked(p + attr, SparsenessPenalty, field, a.number(p + attr, 0.0), name)
            for attr, field in (("sparsenessPenalty_p", "p"), ("sparsenessPenalty_beta", "beta"))))
        values["sparseness_penalty"] = None if own == SparsenessPenalty() else own
    if kind != LayerKind.INPUT and layer_type != LayerType.FULLY_CONNECTED:
        values.update(_layer_window(layer_type, pooling, kernel, stride))
    if layer_type == LayerType.POOLING:
        if pooling == PoolingFunction.NONE:
            raise a.error(p + "poolingfunction", f"is 0 (None) on Pooling layer '{name}'; a Pooling layer "
                                                 f"needs a function (1 Max, 2 Average, ...); {_REFRESH}")
        values["pooling_function"] = pooling  # (on other layers DSSTNE writes 0; it means nothing)
    return LayerConfig(**values), units


def _unit_count(kind: LayerKind, layer_type: LayerType, units: tuple[int, ...]):
    """LayerConfig.n from the dimensions: none for Pooling (derived), the output channels for
    Convolutional, else the dimensions (an int when 1-D)."""
    if layer_type == LayerType.POOLING:
        return None
    if layer_type == LayerType.CONVOLUTIONAL and kind != LayerKind.INPUT:
        return units[-1]
    return units[0] if len(units) == 1 else units


def _layer_window(layer_type: LayerType, pooling: PoolingFunction, kernel, stride) -> dict[str, Any]:
    if layer_type == LayerType.POOLING and pooling not in WINDOWED and kernel == stride == (1,):
        return {}  # LRN, Maxout, DotProduct, Cosine: no window
    return {"kernel": kernel, "kernel_stride": None if all(s == 1 for s in stride) else stride}


def _decode_weighted(a: Attributes, p: str, name: str, activation: Activation, network: Mapping[str, Any],
                     shared: list[SharedWeights] | tuple) -> dict[str, Any]:
    """The keys only Hidden and Output layers have."""
    def own(attr: str, field: str) -> float | None:  # None: the network's
        value = a.checked(p + attr, LayerConfig, field, a.number(p + attr, network[field]), name)
        return None if np.float32(value) == np.float32(network[field]) else value

    return dict(
        activation=activation,
        weight_init=WeightInit(
            a.enum(p + "weightInit", WeightInitScheme, 0),
            a.checked(p + "weightInitScale", WeightInit, "scale", a.number(p + "weightInitScale", 1.0), name),
            a.checked(p + "biasInit", WeightInit, "bias", a.number(p + "biasInit", 0.0), name)),
        weight_norm=a.checked(p + "weightNorm", LayerConfig, "weight_norm", a.number(p + "weightNorm", 0.0), name),
        delta_norm=a.checked(p + "deltaNorm", LayerConfig, "delta_norm", a.number(p + "deltaNorm", 0.0), name),
        relu_slope=own("RELUSlope", "relu_slope"),
        elu_alpha=own("ELUAlpha", "elu_alpha"),
        selu_lambda=own("SELULambda", "selu_lambda"),
        shared_weights=tuple(shared),
    )


def check_dims(config: NetworkConfig, dims: Mapping[str, tuple[int, ...]], path: str) -> None:
    """The stored dimensions of convolution and pooling layers must be what their sources and
    kernels give (those of the other layers are their N)."""
    try:
        resolved = resolve_shapes(config, source=path)
    except ConfigError as exc:
        raise NetworkFileError(f"{exc} (in the network the file's attributes describe; Layers[i] "
                               f"is layer<i>_...); {_REFRESH}") from None
    for i, layer in enumerate(config.layers):
        if resolved[layer.name] != dims[layer.name]:
            raise NetworkFileError(
                f"{path}: layer '{layer.name}' is stored as {_fmt(dims[layer.name])} (attributes "
                f"layer{i}_Nx..Nw), but its sources and kernel give {_fmt(resolved[layer.name])}; "
                f"{_REFRESH}")


def _fmt(dims) -> str:
    return "×".join(str(d) for d in dims)


__all__ = ["Attributes", "DecodedNetwork", "WeightHeader", "check_dims", "check_network_file",
           "decode_network"]
