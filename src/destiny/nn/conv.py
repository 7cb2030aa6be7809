"""Convolutional and Pooling layers of DSSTNE networks: cuDNN through torch on GPU, torch's CPU
kernels elsewhere.

Memory layout. Every layer's value is kept flat, (batch, units), in DSSTNE's order: x fastest,
then y, then z, then channels — which is NCHW flattened, and exactly the rows of a
``DenseDataset`` (data (N, C, H, W)), so an image dataset feeds a convolution with no transpose.
A windowed layer views its source as (batch, channels, [z,] [y,] x) (a view, no copy) and
flattens its result back (also a view). A source of dims (x[, y[, z]], c...) read by a kernel of
k axes has its first k axes spatial and the product of the rest as channels
(``destiny.config.shapes``).

Weights stay in the ``WeightSpec`` layout, (out, in, kx[, ky[, kz]]), which is what network
files and checkpoints hold (``io.network_file.WeightArrays``); the forward pass permutes the view
to torch's (out, in, [kz,] [ky,] kx). Fans for the initial weights: fan_in = in·∏kernel,
fan_out = out·∏kernel (``fans``).

Padding, as DSSTNE derives it (reference/dsstne.md §1.3, ``shapes.output_size``), per axis of
width w, kernel k, stride s: if w ≤ k one output ((k − w + 1) // 2 padding); at stride 1
"same", k // 2 padding; else none (a valid window). An even kernel at stride 1 would give w + 1
outputs with symmetric k // 2 padding (DSSTNE's cuDNN call then disagreed with its own derived
dimensions); Destiny keeps the first w (the windows that start at −k // 2), so every layer has
exactly the dimensions ``resolve_shapes`` gives.

Layers (reference/dsstne.md §1.8):

- Convolutional: Σ over sources of conv(source) + that matrix's per-channel bias, + Skips, then
  BatchNormalization per channel (cuDNN's SPATIAL mode, as DSSTNE), DeltaNorm, activation,
  dropout — as a FullyConnected layer.
- Pooling Max / Average (Average excludes the padding: cuDNN's COUNT_EXCLUDE_PADDING), LRN
  across channels with the network's k, n, alpha, beta: b = a / (k + alpha/n · Σ a²)^beta over
  n neighbouring channels — cuDNN divides the alpha it is given by n, and so does
  ``F.local_response_norm``, so DSSTNE's alpha is passed as is. Several sources: their pooled
  values are added (DSSTNE accumulates with beta = 1). Maxout: the element-wise max over the
  sources. DotProduct / Cosine: source 0 against each other source, (batch, #sources − 1).
  Then Skips. A Pooling layer has no activation (DSSTNE never calls one on it, whatever its
  Activation says); Destiny applies its pDropout and BatchNormalization (per unit, the size
  ``shapes.batch_norm_size`` gives) when a config asks for them.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Mapping

import torch
import torch.nn.functional as F

from destiny.config import LayerConfig, LayerKind, LayerType, NetworkConfig
from destiny.config.enums import PoolingFunction
from destiny.config.fields import Place
from destiny.config.shapes import WeightSpec, output_size
from destiny.nn.activations import activate

WINDOWED = (PoolingFunction.MAX, PoolingFunction.AVERAGE)
_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_MAX = {1: F.max_pool1d, 2: F.max_pool2d}
_AVG = {1: F.avg_pool1d, 2: F.avg_pool2d}


@dataclass(frozen=True)
class Window:
    """How a windowed layer sees one source. Sizes per spatial axis in DSSTNE's order (x, y, z);
    torch takes them reversed."""

    channels: int
    spatial: tuple[int, ...]  # the source's spatial sizes
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    padding: tuple[int, ...]  # symmetric, per axis
    out: tuple[int, ...]  # output spatial sizes (= shapes.output_size)

    def view(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, units) → (batch, channels, [z,] [y,] x); a view of a contiguous x."""
        return x.reshape(x.shape[0], self.channels, *reversed(self.spatial))

    def torch_args(self) -> dict:
        return {"stride": tuple(reversed(self.stride)), "padding": tuple(reversed(self.padding))}

    def crop(self, y: torch.Tensor) -> torch.Tensor:
        """Keep the first ``out`` positions per axis (even kernels at stride 1), flattened."""
        want = tuple(reversed(self.out))
        if tuple(y.shape[2:]) != want:
            y = y[(slice(None), slice(None)) + tuple(slice(0, n) for n in want)]
        return y.reshape(y.shape[0], -1)


def padding(width: int, kernel: int, stride: int) -> int:
    """DSSTNE's padding of one axis (see the module docstring)."""
    if width <= kernel:
        return (kernel - width + 1) // 2
    return kernel // 2 if stride == 1 else 0


def window(layer: LayerConfig, src: tuple[int, ...]) -> Window:
    """The window of a Convolutional or Max/Average Pooling layer over a source of dims src."""
    axes = len(layer.kernel) if layer.kernel else max(1, len(src) - 1)
    kernel = tuple(layer.kernel or (1,) * axes)
    stride = tuple(layer.kernel_stride or (1,) * axes)
    spatial = tuple(src[:axes])
    return Window(math.prod(src[axes:]), spatial, kernel, stride,
                  tuple(padding(w, k, s) for w, k, s in zip(spatial, kernel, stride)),
                  tuple(output_size(w, k, s) for w, k, s in zip(spatial, kernel, stride)))


def fans(spec: WeightSpec) -> tuple[int, int]:
    """(fan_in, fan_out) of a convolution's filters: in·∏kernel, out·∏kernel."""
    out_channels, in_channels, *kernel = spec.shape
    area = math.prod(kernel)
    return in_channels * area, out_channels * area


def torch_weight(w: torch.Tensor) -> torch.Tensor:
    """(out, in, kx[, ky[, kz]]) → torch's (out, in, [kz,] [ky,] kx), a view."""
    return w.permute(0, 1, *range(w.dim() - 1, 1, -1))


class _TorchFilters(torch.autograd.Function):
    """``torch_weight(w)`` as a contiguous copy, and its gradient in w's layout, contiguous: each
    filter's positions permuted by an index_select over its out·in rows. Copying the permuted
    view instead does not vectorise (innermost axes of 3): 120 µs against 45 for a
    96 × 96 × 3 × 3 bank on 2 CPU threads, and autograd then copies the gradient that way again."""

    @staticmethod
    def forward(ctx, w, order, inverse):
        ctx.save_for_backward(inverse)
        ctx.shape = w.shape
        rows = w.reshape(w.shape[0] * w.shape[1], -1)
        return torch.index_select(rows, 1, order).view(*w.shape[:2], *reversed(w.shape[2:]))

    @staticmethod
    def backward(ctx, grad):
        (inverse,) = ctx.saved_tensors
        rows = grad.reshape(ctx.shape[0] * ctx.shape[1], -1)
        return torch.index_select(rows, 1, inverse).view(ctx.shape), None, None


def torch_filters(w: torch.Tensor) -> torch.Tensor:
    """``torch_weight(w)``, contiguous, differentiable (``_TorchFilters``)."""
    kernel = tuple(w.shape[2:])
    if len(kernel) == 1:  # one spatial axis: the layouts agree
        return w
    strides = [math.prod(kernel[d + 1:]) for d in range(len(kernel))]  # of w's (kx, ky[, kz])
    order = [sum(i * s for i, s in zip(reversed(at), strides))  # w's position of each of torch's
             for at in itertools.product(*(range(k) for k in reversed(kernel)))]
    inverse = sorted(range(len(order)), key=order.__getitem__)
    return _TorchFilters.apply(w, torch.tensor(order, device=w.device), torch.tensor(inverse, device=w.device))


# -- plans: checked once when the network is built ------------------------------------------


@dataclass(frozen=True)
class Plan:
    """What a Convolutional or Pooling layer does: its windows by source (Convolutional and
    Max/Average Pooling), the LRN view (channels, spatial) of each source, or nothing (Maxout,
    DotProduct, Cosine)."""

    windows: Mapping[str, Window]
    lrn: Mapping[str, tuple[int, tuple[int, ...]]]


def plan_layers(config: NetworkConfig, dims: Mapping[str, tuple[int, ...]], specs: list[WeightSpec],
                source: str = "<config>") -> dict[str, Plan]:
    """The plans of every Convolutional and Pooling layer, by name; ConfigError (with the
    layer's JSON path) for what DSSTNE's shape rules accept but cannot be computed."""
    plans: dict[str, Plan] = {}
    for i, layer in enumerate(config.layers):
        if layer.kind == LayerKind.INPUT or layer.type == LayerType.FULLY_CONNECTED:
            continue
        at = Place(source, f"Layers[{i}]", layer.name)
        srcs = {name: tuple(dims[name]) for name in layer.sources}
        fn = layer.pooling_function
        windows, lrn = {}, {}
        if layer.type == LayerType.CONVOLUTIONAL or fn in WINDOWED:
            for name, src in srcs.items():
                _check_kernel_axes(layer, name, src, at)
                windows[name] = window(layer, src)
        elif fn == PoolingFunction.LRN:
            lrn = {name: (src[-1], tuple(src[:-1])) for name, src in srcs.items()}
        else:
            _check_same_units(layer, srcs, at)
        if layer.type == LayerType.CONVOLUTIONAL:
            for spec in specs:
                if spec.output_layer == layer.name and spec.transposed:
                    raise at.child("SharedWeights").error(
                        f"a convolution's filters cannot be shared transposed ({spec.shared_from[0]} → "
                        f"{spec.shared_from[1]}); DSSTNE rejects it too: share them untransposed")
        plans[layer.name] = Plan(windows, lrn)
    return plans


def _fmt(dims) -> str:
    return "×".join(str(d) for d in dims)


def _check_kernel_axes(layer: LayerConfig, name: str, src: tuple[int, ...], at: Place) -> None:
    if layer.kernel and len(src) > len(layer.kernel) + 1:
        k = len(layer.kernel)
        raise at.child("Kernel").error(
            f"has {k} ax{'is' if k == 1 else 'es'} ({_fmt(layer.kernel)}) but source '{name}' is {_fmt(src)}: "
            f"{len(src) - 1} spatial axes and channels; give one kernel size per spatial axis "
            f"(such as [{', '.join(['3'] * (len(src) - 1))}]), or make the source's dimensions match")


def _check_same_units(layer: LayerConfig, srcs: Mapping[str, tuple[int, ...]], at: Place) -> None:
    units = {name: math.prod(d) for name, d in srcs.items()}
    if len(set(units.values())) > 1:
        listed = ", ".join(f"'{n}' {_fmt(srcs[n])}" for n in srcs)
        raise at.child("Source").error(
            f"{layer.pooling_function.json} pooling compares its sources unit by unit, so they must have the "
            f"same number of units; got {listed}")


# -- the forward pass -----------------------------------------------------------------------


def convolve(x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor, win: Window) -> torch.Tensor:
    """conv(x) + bias: x (batch, units) flat, w (out, in, kx[, ky[, kz]]) → (batch, out units).
    The filters are copied to torch's layout once (``torch_filters``): given the permuted view,
    the CPU's forward and backward would each copy it themselves."""
    y = _CONV[len(win.kernel)](win.view(x), torch_filters(w), bias, **win.torch_args())
    return win.crop(y)


def _pool(v: torch.Tensor, fn: PoolingFunction, kernel, stride, pad) -> torch.Tensor:
    """torch pooling over the trailing len(kernel) axes (torch order: kernel etc. given x last)."""
    op = (_MAX if fn == PoolingFunction.MAX else _AVG)[len(kernel)]
    extra = {} if fn == PoolingFunction.MAX else {"count_include_pad": False}
    return op(v, kernel_size=tuple(kernel), stride=tuple(stride), padding=tuple(pad), **extra)


def pool(x: torch.Tensor, fn: PoolingFunction, win: Window) -> torch.Tensor:
    """Max or Average (padding excluded) pooling: (batch, units) → (batch, out units).

    A 3-D window runs as a (y, x) window then a z window: max and the padding-excluding
    average are separable (the average's count is the product of the axes' counts), and
    CUDA has no deterministic backward for MaxPool3d / AvgPool3d, which Destiny's
    deterministic mode would refuse."""
    kernel, stride, pad = (tuple(reversed(t)) for t in (win.kernel, win.stride, win.padding))  # torch order
    v = win.view(x)
    if len(kernel) < 3:
        return win.crop(_pool(v, fn, kernel, stride, pad))
    b, c, z, h, w = v.shape
    plane = _pool(v.reshape(b, c * z, h, w), fn, kernel[1:], stride[1:], pad[1:])  # (b, c·z, h', w')
    h2, w2 = plane.shape[-2:]
    deep = _pool(plane.reshape(b, c, z, h2 * w2), fn, (kernel[0], 1), (stride[0], 1), (pad[0], 0))
    return win.crop(deep.reshape(b, c, deep.shape[2], h2, w2))


def lrn(x: torch.Tensor, channels: int, spatial: tuple[int, ...], config: NetworkConfig) -> torch.Tensor:
    """Cross-channel local response normalisation with the network's parameters. The positions
    are one axis, (batch, channels, positions): torch then sums the window with a 2-D average
    pool, whose CUDA backward is deterministic (its 4-D path uses AvgPool3d, whose is not)."""
    p = config.lrn
    view = x.reshape(x.shape[0], channels, math.prod(spatial))
    return F.local_response_norm(view, p.n, alpha=p.alpha, beta=p.beta, k=p.k).reshape(x.shape[0], -1)


def compare(first: torch.Tensor, others: list[torch.Tensor], cosine: bool) -> torch.Tensor:
    """(batch, len(others)): dot product or cosine of ``first`` with each other source."""
    a = first.flatten(1)
    cols = []
    for b in others:
        b = b.flatten(1)
        cols.append(F.cosine_similarity(a, b, dim=1) if cosine else (a * b).sum(1))
    return torch.stack(cols, dim=1)


def layer_forward(net, layer: LayerConfig, values, noise) -> torch.Tensor:
    """The value of a Convolutional or Pooling layer (``Network._layer``'s contract: Output
    layers return pre-activations, hidden layers activations after dropout in training)."""
    plan = net.conv_plans[layer.name]
    training = noise is not None
    if layer.type == LayerType.CONVOLUTIONAL:
        z = None
        for src in layer.sources:
            spec = net._spec_of[(src, layer.name)]
            term = convolve(net._source_value(src, values), net.weight(spec), net.bias(spec), plan.windows[src])
            z = term if z is None else z + term
    else:
        z = _pool_layer(net, layer, plan, [net._source_value(src, values) for src in layer.sources])
    for skip in layer.skips:
        z = z + net._source_value(skip, values)
    if layer.batch_norm:
        if layer.type == LayerType.CONVOLUTIONAL:  # per channel: (batch, channels, positions)
            z = net._batch_norm(layer, z.reshape(z.shape[0], net.dims[layer.name][-1], -1), training).flatten(1)
        else:
            z = net._batch_norm(layer, z, training)
    if layer.delta_norm > 0 and training:
        from destiny.nn.penalties import ClipRowGrad

        z = ClipRowGrad.apply(z, layer.delta_norm)
    if layer.kind == LayerKind.OUTPUT:
        return z
    a = z
    if layer.type == LayerType.CONVOLUTIONAL:
        a = activate(z, net.activation[layer.name])
    if training and layer.p_dropout > 0:
        a = net._dropout(layer, a, noise)
    return a


def _pool_layer(net, layer: LayerConfig, plan: Plan, xs: list[torch.Tensor]) -> torch.Tensor:
    fn = layer.pooling_function
    if fn == PoolingFunction.MAXOUT:
        z = xs[0]
        for x in xs[1:]:
            z = torch.maximum(z, x)
        return z
    if fn in (PoolingFunction.DOT_PRODUCT, PoolingFunction.COSINE):
        return compare(xs[0], xs[1:], cosine=fn == PoolingFunction.COSINE)
    z = None
    for src, x in zip(layer.sources, xs):
        if fn == PoolingFunction.LRN:
            channels, spatial = plan.lrn[src]
            term = lrn(x, channels, spatial, net.config)
        else:
            term = pool(x, fn, plan.windows[src])
        z = term if z is None else z + term
    return z


def apply_weight_norm(w: torch.Tensor, limit: float) -> None:
    """DSSTNE's WeightNorm on filters: each output channel's filter to L2 norm ≤ limit (in place)."""
    norms = w.flatten(1).norm(dim=1).clamp(min=1e-30)
    w.mul_(torch.clamp(limit / norms, max=1.0).view(-1, *([1] * (w.dim() - 1))))


__all__ = ["Plan", "Window", "apply_weight_norm", "compare", "convolve", "fans", "layer_forward", "lrn",
           "padding", "plan_layers", "pool", "torch_filters", "torch_weight", "window"]
