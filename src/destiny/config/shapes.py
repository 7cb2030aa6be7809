"""Layer dimensions and weight matrices of a network, once its datasets' dimensions are known.

DSSTNE derives the dimensions of "auto" layers from their dataset and those of convolution
and pooling layers from their sources (reference/dsstne.md §1.3); ``resolve_shapes`` does the
same, and ``weight_specs`` lists the weight matrices in DSSTNE's order (for each non-pooling
layer in JSON order, one per source in Source order), which is also the order of network files.

Dimensions are tuples (x[, y[, z[, w]]]); for images x is the width, y the height and the last
axis the channels. A convolution over ``k`` kernel axes treats the first ``k`` axes of its
source as spatial and the rest as channels; its ``N`` is the number of output channels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

from destiny.config.enums import LayerKind, LayerType, PoolingFunction
from destiny.config.fields import Place
from destiny.config.schema import LayerConfig, NetworkConfig
from destiny.errors import ConfigError


@dataclass(frozen=True)
class WeightSpec:
    """One weight matrix (and its bias) from ``input_layer`` into ``output_layer``.

    shape: (input units, output units) for FullyConnected — 2 × the units into a Variational
    layer, its μ then its log-variance —, (out channels, in channels, kx[, ky[, kz]]) for
    Convolutional. A shared matrix stores no weights of its own; it reuses
    the matrix of ``shared_from`` (transposed if ``transposed``) and has its own bias.
    """

    index: int
    input_layer: str
    output_layer: str
    shape: tuple[int, ...]
    bias_size: int
    convolutional: bool = False
    shared_from: tuple[str, str] | None = None
    transposed: bool = False

    @property
    def parameters(self) -> int:
        own = 0 if self.shared_from else math.prod(self.shape)
        return own + self.bias_size


def parse_dims(text: str) -> tuple[int, ...]:
    """'27278' or '227x227x3' → a tuple of positive ints (ValueError otherwise)."""
    parts = text.lower().replace("×", "x").split("x")
    dims = tuple(int(p) for p in parts)
    if not 1 <= len(dims) <= 4 or any(d < 1 for d in dims):
        raise ValueError(text)
    return dims


def resolve_shapes(
    config: NetworkConfig,
    dataset_dims: Mapping[str, Sequence[int]] | None = None,
    *,
    strict: bool = True,
    source: str = "<config>",
) -> dict[str, tuple[int, ...] | None]:
    """The dimensions of every layer, by name.

    dataset_dims gives the dimensions of the datasets that "auto" layers read. With
    strict=False a missing one leaves that layer (and what depends on it) as None instead of
    raising ConfigError.
    """
    dataset_dims = dataset_dims or {}
    index = {layer.name: i for i, layer in enumerate(config.layers)}
    dims: dict[str, tuple[int, ...] | None] = {}
    for layer in config.topological_order():
        at = Place(source, f"Layers[{index[layer.name]}]", layer.name)
        dims[layer.name] = _layer_dims(config, layer, dims, dataset_dims, strict, at)
    for layer in config.layers:  # skips, once every layer has its dimensions
        at = Place(source, f"Layers[{index[layer.name]}]", layer.name)
        for skip in layer.skips:
            if dims[layer.name] is not None and dims[skip] is not None and \
                    math.prod(dims[skip]) != math.prod(dims[layer.name]):
                raise at.child("Skip").error(
                    f"'{skip}' has {_fmt(dims[skip])} units but this layer has "
                    f"{_fmt(dims[layer.name])}; a Skip adds units one to one, so the sizes must match")
    return dims


def _layer_dims(config, layer: LayerConfig, dims, dataset_dims, strict, at: Place):
    if layer.is_auto:
        if layer.dataset in dataset_dims:
            return tuple(int(d) for d in dataset_dims[layer.dataset])
        if strict:
            raise at.child("N").error(
                f"is \"auto\": the dimensions come from dataset '{layer.dataset}', which was not "
                "given; load the dataset or pass its width (destiny check --input-width/--output-width)")
        return None
    if layer.kind == LayerKind.INPUT:
        return _as_dims(layer.n)
    sources = [dims[s] for s in layer.sources]
    if any(s is None for s in sources):
        return None if layer.type != LayerType.FULLY_CONNECTED else _as_dims(layer.n)
    if layer.type == LayerType.FULLY_CONNECTED:
        return _as_dims(layer.n)
    if layer.type == LayerType.CONVOLUTIONAL:
        outs = {_conv_dims(layer, src, at, channels=layer.n) for src in sources}
    else:
        outs = {_pool_dims(layer, src, at, len(layer.sources)) for src in sources}
    if len(outs) > 1:
        raise at.child("Source").error(
            "its sources give different output dimensions (" + ", ".join(_fmt(o) for o in sorted(outs))
            + "); sources of one layer must have the same dimensions")
    return outs.pop()


def _as_dims(n) -> tuple[int, ...]:
    return (n,) if isinstance(n, int) else tuple(n)


def _window(layer: LayerConfig, spatial_axes: int, at: Place) -> tuple[tuple[int, ...], tuple[int, ...]]:
    kernel = layer.kernel or (1,) * spatial_axes
    stride = layer.kernel_stride or (1,) * len(kernel)
    if len(stride) != len(kernel):
        raise at.child("KernelStride").error(
            f"has {len(stride)} axes but Kernel has {len(kernel)}; give one stride per kernel axis")
    return kernel, stride


def output_size(width: int, kernel: int, stride: int) -> int:
    """DSSTNE's rule: 1 if the window covers the input; "same" padding (kernel // 2) at
    stride 1; otherwise a valid window."""
    if width <= kernel:
        return 1
    if stride == 1:
        return width
    return (width - kernel) // stride + 1


def _spatial(layer, src: tuple[int, ...], at: Place, what: str) -> tuple[tuple[int, ...], tuple[int, ...], int]:
    kernel_axes = len(layer.kernel) if layer.kernel else max(1, len(src) - 1)
    kernel, stride = _window(layer, kernel_axes, at)
    if len(kernel) > len(src):
        raise at.child("Kernel").error(
            f"has {len(kernel)} axes but the source has only {len(src)} ({_fmt(src)}); "
            f"a {what} needs a kernel with at most as many axes as its input")
    for axis, (size, k) in enumerate(zip(src, kernel)):
        if k > size:
            raise at.child("Kernel").error(
                f"is {_fmt(kernel)} but the input is only {size} wide along axis {'xyz'[axis]} "
                f"({_fmt(src)}); the kernel must fit inside the input")
    spatial = tuple(output_size(size, k, s) for size, k, s in zip(src, kernel, stride))
    channels = math.prod(src[len(kernel):])
    return spatial, kernel, channels


def _conv_dims(layer, src, at, channels) -> tuple[int, ...]:
    spatial, _, _ = _spatial(layer, src, at, "convolution")
    out_channels = channels if isinstance(channels, int) else math.prod(channels)
    return spatial + (out_channels,)


def _pool_dims(layer, src, at, n_sources: int) -> tuple[int, ...]:
    fn = layer.pooling_function
    if fn in (PoolingFunction.DOT_PRODUCT, PoolingFunction.COSINE):
        return (n_sources - 1,)
    if fn in (PoolingFunction.LRN, PoolingFunction.MAXOUT):
        return src
    spatial, kernel, _ = _spatial(layer, src, at, "pooling window")
    return spatial + tuple(src[len(kernel):])


def _fmt(dims) -> str:
    return "×".join(str(d) for d in dims)


def weight_specs(config: NetworkConfig, dims: Mapping[str, tuple[int, ...] | None],
                 source: str = "<config>") -> list[WeightSpec]:
    """The weight matrices in DSSTNE's order; a layer with unknown dimensions gets none."""
    specs: list[WeightSpec] = []
    shapes: dict[tuple[str, str], tuple[int, ...]] = {}
    for i, layer in enumerate(config.layers):
        if layer.kind == LayerKind.INPUT or layer.type == LayerType.POOLING:
            continue
        out = dims.get(layer.name)
        for src in layer.sources:
            inp = dims.get(src)
            if out is None or inp is None:
                continue
            at = Place(source, f"Layers[{i}]", layer.name)
            spec = _weight_spec(layer, src, inp, out, len(specs), at)
            shapes[(src, layer.name)] = spec.shape
            specs.append(spec)
    for spec in specs:  # shared matrices must fit where they are used
        if spec.shared_from and spec.shared_from in shapes:
            owner = shapes[spec.shared_from]
            wanted = owner[::-1] if spec.transposed else owner
            if wanted != spec.shape:
                layer_index = next(i for i, l in enumerate(config.layers) if l.name == spec.output_layer)
                raise Place(source, f"Layers[{layer_index}].SharedWeights", spec.output_layer).error(
                    f"the matrix {spec.shared_from[0]} → {spec.shared_from[1]} is {_fmt(owner)}"
                    f"{' (transposed: ' + _fmt(wanted) + ')' if spec.transposed else ''}, but "
                    f"{spec.input_layer} → {spec.output_layer} needs {_fmt(spec.shape)}")
    return specs


def _weight_spec(layer: LayerConfig, src: str, inp, out, index: int, at: Place) -> WeightSpec:
    shared = next((s for s in layer.shared_weights if s.input_layer == src), None)
    shared_from = (shared.source_input_layer, shared.source_output_layer) if shared else None
    transposed = bool(shared and shared.transposed)
    if layer.type == LayerType.CONVOLUTIONAL:
        kernel_axes = len(layer.kernel) if layer.kernel else max(1, len(inp) - 1)
        kernel = layer.kernel or (1,) * kernel_axes
        in_channels = math.prod(inp[len(kernel):])
        return WeightSpec(index, src, layer.name, (out[-1], in_channels, *kernel), out[-1],
                          convolutional=True, shared_from=shared_from, transposed=transposed)
    units = math.prod(out) * (2 if layer.variational else 1)  # Variational: μ and log-variance (nn/variational.py)
    return WeightSpec(index, src, layer.name, (math.prod(inp), units), units,
                      shared_from=shared_from, transposed=transposed)


def batch_norm_size(layer: LayerConfig, dims: tuple[int, ...] | None) -> int:
    """Number of scale (and of shift) parameters of a BatchNormalization layer: one per unit
    for FullyConnected, one per channel for Convolutional."""
    if not layer.batch_norm or dims is None:
        return 0
    return dims[-1] if layer.type == LayerType.CONVOLUTIONAL else math.prod(dims)


def count_parameters(config: NetworkConfig, dims: Mapping[str, tuple[int, ...] | None]) -> dict[str, int | None]:
    """Trainable parameters of each layer (weights, biases, batch-norm scale and shift);
    None where a dimension is unknown."""
    specs = weight_specs(config, dims)
    counts: dict[str, int | None] = {}
    for layer in config.layers:
        if layer.kind == LayerKind.INPUT or layer.type == LayerType.POOLING:  # no weights; batch norm maybe
            counts[layer.name] = 2 * batch_norm_size(layer, dims.get(layer.name))
            continue
        known = dims.get(layer.name) is not None and all(dims.get(s) is not None for s in layer.sources)
        if not known:
            counts[layer.name] = None
            continue
        total = sum(s.parameters for s in specs if s.output_layer == layer.name)
        counts[layer.name] = total + 2 * batch_norm_size(layer, dims[layer.name])
    return counts


__all__ = ["ConfigError", "WeightSpec", "batch_norm_size", "count_parameters", "output_size",
           "parse_dims", "resolve_shapes", "weight_specs"]
