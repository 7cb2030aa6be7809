"""The layers an imported model maps to, and the DSSTNE network they make.

Both front ends (``onnx_map``: a graph; ``state_dict``: weights plus their JSON) end here: a
list of ``Layer`` records, each with its incoming matrices (``Term``) in DSSTNE's layouts, becomes
a DSSTNE JSON description (``document``) and a ``NetworkFile`` (``network_file``) whose config is
that description, checked as Destiny checks any other (``config_from_json``, ``resolve_shapes``,
the convolution plans).

Layouts (``io.network_file``): a FullyConnected matrix is (input units, output units), DSSTNE's
``W[i * out + o]`` (``nn.Linear.weight`` transposed); a Convolutional filter is (out channels,
in channels, kx[, ky[, kz]]) (torch's (out, in, [kz,] [ky,] kx) with its spatial axes reversed).
A layer's dims are DSSTNE's (x[, y[, z]], channels): an ONNX tensor (batch, C, H, W) is a layer of
dims (W, H, C), whose values in DSSTNE's order (x fastest, then y, then channels) are the tensor's
own row-major order.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import numpy as np

from destiny.errors import ConfigError, ModelImportError
from destiny.io.network_file import BatchNormArrays, NetworkFile, WeightArrays

BN_EPSILON = 1e-5  # = destiny.nn.network.BN_EPSILON: what Destiny's batch normalisation adds to the variance


def f32(value: float) -> float:
    """``value`` rounded to float32 and written with the fewest digits that read back to it:
    a graph's 1.050701 (stored as 1.0507010221…) is 1.050701 again in the JSON."""
    return float(str(np.float32(value)))


@dataclass(eq=False)
class Term:
    """One incoming matrix of a layer (DSSTNE keeps a bias per matrix)."""

    source: "Layer"
    weights: np.ndarray | None  # float32 (in, out) or (out, in, kx[, ky[, kz]]); None: shared, or Pooling
    bias: np.ndarray | None = None  # float32 (units,) or (channels,); None: zeros
    shared_from: "Term | None" = None  # the matrix it reuses (SharedWeights)
    transposed: bool = False
    origin: tuple[str, bool] | None = None  # (graph constant, read transposed?): tied weights are found by it
    layer: "Layer | None" = None  # the layer it feeds, once that layer exists


@dataclass(eq=False)
class Layer:
    """One DSSTNE layer of an imported model."""

    name: str
    kind: str  # Input, Hidden, Output
    type: str  # FullyConnected, Convolutional, Pooling
    dims: tuple[int, ...]  # (x[, y[, z]], channels) or (units,)
    terms: list[Term] = field(default_factory=list)  # one per source; Pooling: weights None
    skips: list["Layer"] = field(default_factory=list)
    activation: str = "Linear"
    params: dict[str, float] = field(default_factory=dict)  # RELUSlope, ELUAlpha, SELULambda
    batch_norm: BatchNormArrays | None = None
    kernel: tuple[int, ...] | None = None  # DSSTNE order (x[, y[, z]])
    stride: tuple[int, ...] | None = None
    function: str | None = None  # Pooling: Max, Average, LRN
    p_dropout: float = 0.0
    sparse: bool = False
    dataset: str | None = None
    origin: str = ""  # the node or key it comes from, for messages
    readers: int = 0  # how many matrices, skips and outputs read it

    @property
    def units(self) -> int:
        return math.prod(self.dims)

    @property
    def sources(self) -> list["Layer"]:
        return [t.source for t in self.terms]


def layer_json(layer: Layer) -> dict:
    """The layer's object in DSSTNE's JSON."""
    doc: dict = {"Name": layer.name, "Kind": layer.kind}
    if layer.type != "FullyConnected":
        doc["Type"] = layer.type
    if layer.kind == "Input":
        doc["N"] = layer.dims[0] if len(layer.dims) == 1 else list(layer.dims)
    elif layer.type == "Convolutional":
        doc["N"] = layer.dims[-1]  # out channels; the spatial dims follow from Kernel and KernelStride
    elif layer.type == "FullyConnected":
        doc["N"] = layer.units
    if layer.dataset is not None:
        doc["DataSet"] = layer.dataset
    if layer.sparse:
        doc["Sparse"] = True
    if layer.kind != "Input":
        doc["Source"] = [t.source.name for t in layer.terms]
        if layer.skips:
            doc["Skip"] = [s.name for s in layer.skips]
        doc["Activation"] = layer.activation
        doc.update(layer.params)
    if layer.batch_norm is not None:
        doc["BatchNormalization"] = True
    if layer.function is not None:
        doc["Function"] = layer.function
    if layer.kernel is not None and layer.function != "LRN":
        doc["Kernel"] = list(layer.kernel)
        doc["KernelStride"] = list(layer.stride)
    if layer.p_dropout > 0:
        doc["pDropout"] = f32(layer.p_dropout)
    shared = [t for t in layer.terms if t.shared_from is not None]
    if shared:
        doc["SharedWeights"] = [{"InputLayer": t.source.name, "SourceInputLayer": t.shared_from.source.name,
                                 "SourceOutputLayer": t.shared_from.layer.name, "Transposed": t.transposed}
                                for t in shared]
    return doc


def default_error_function(layers: list[Layer]) -> str:
    """CrossEntropy for Sigmoid and SoftMax outputs (classifiers, recommenders), else L2."""
    outputs = [layer for layer in layers if layer.kind == "Output"]
    return "CrossEntropy" if outputs and all(o.activation in ("Sigmoid", "SoftMax") for o in outputs) else "L2"


def document(layers: list[Layer], *, name: str, error_function: str | None = None,
             lrn: dict | None = None) -> dict:
    """The DSSTNE JSON description of ``layers`` (the ONNX graph has no loss: ``error_function``
    defaults to ``default_error_function``)."""
    doc: dict = {"Version": 0.9, "Name": name, "Kind": "FeedForward",
                 "ErrorFunction": error_function or default_error_function(layers)}
    if lrn is not None:
        doc["LocalResponseNormalization"] = lrn
    doc["Layers"] = [layer_json(layer) for layer in layers]
    return doc


def network_file(layers: list[Layer], doc: dict, source: str) -> NetworkFile:
    """The network file of ``layers`` described by ``doc``: ModelImportError where Destiny
    derives other dimensions than the model's (a window it pads differently)."""
    from destiny.config import config_from_json
    from destiny.config.shapes import resolve_shapes, weight_specs
    from destiny.nn.conv import plan_layers
    from destiny.train.fingerprint import fingerprint_file

    where = f"{source} (imported)"
    try:
        config = config_from_json(doc, where)
        dims = resolve_shapes(config, {}, source=where)
        specs = weight_specs(config, dims, where)
        plan_layers(config, dims, specs, where)
    except ConfigError as exc:
        raise ModelImportError(f"{source}: the imported network does not hold together: {exc}") from None
    for layer in layers:
        if tuple(dims[layer.name]) != tuple(layer.dims):
            raise ModelImportError(
                f"{source}: layer '{layer.name}' (from {layer.origin}) has dims {_fmt(layer.dims)} in the model but "
                f"Destiny derives {_fmt(dims[layer.name])} from its Kernel, KernelStride and source; the model's "
                "window does not pad as DSSTNE does")
    by_pair = {(t.source.name, layer.name): t for layer in layers for t in layer.terms}
    weights = []
    for spec in specs:
        term = by_pair[(spec.input_layer, spec.output_layer)]
        bias = np.zeros(spec.bias_size, np.float32) if term.bias is None else _array(term.bias)
        own = None if term.shared_from is not None else _array(term.weights)
        weights.append(WeightArrays(spec.input_layer, spec.output_layer, own, bias, spec.shared_from,
                                    spec.transposed, False, 0.0))
    batch_norm = {layer.name: layer.batch_norm for layer in layers if layer.batch_norm is not None}
    nf = NetworkFile(config, {name: tuple(d) for name, d in dims.items()}, weights, batch_norm,
                     info={"seed": 12134, "imported_from": os.path.basename(source)})
    nf.info["fingerprint"] = fingerprint_file(nf)
    return nf


def _array(a) -> np.ndarray:
    """float32, C-contiguous and writable (an ONNX initializer's array is read-only): copied only if not."""
    return np.require(a, np.float32, ["C", "W"])


def _fmt(dims) -> str:
    return "×".join(str(d) for d in dims)


def batch_norm_arrays(scale, shift, mean, var, epsilon: float) -> tuple[BatchNormArrays, str | None]:
    """Batch-norm parameters for Destiny's ε = 1e-5 (a model's other ε goes into the variance:
    (x − mean) / √(var + ε) = (x − mean) / √((var + ε − 1e-5) + 1e-5)), and a note when moved."""
    arrays = [_array(np.asarray(a, np.float32).reshape(-1)) for a in (scale, shift, mean, var)]
    note = None
    if np.float32(epsilon) != np.float32(BN_EPSILON):
        arrays[3] = (arrays[3].astype(np.float64) + (float(epsilon) - BN_EPSILON)).astype(np.float32)
        note = f"epsilon {f32(epsilon):g} is added to the running variance (Destiny's batch normalisation adds 1e-5)"
    return BatchNormArrays(*arrays), note


__all__ = ["BN_EPSILON", "Layer", "Term", "batch_norm_arrays", "default_error_function", "document", "f32",
           "layer_json", "network_file"]
