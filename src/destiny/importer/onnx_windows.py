"""Windowed ONNX operations → DSSTNE layers: Conv (a Convolutional layer's sum), MaxPool /
AveragePool / their Global forms and LRN (Pooling layers), and the Softmax axis check.

DSSTNE does not store a window's padding: it derives it per axis of width w, kernel k, stride s
(``nn.conv.padding``, ``config.shapes.output_size``): one output if w ≤ k, "same" padding
(k // 2) at stride 1, no padding at larger strides. A window maps when its padding before each
axis and its number of outputs are those; otherwise the error says which axis and what DSSTNE
would pad. Spatial axes are ONNX's (…, y, x) order reversed into DSSTNE's (x, y, …).
"""

from __future__ import annotations

import math

import numpy as np

from destiny.config.shapes import output_size
from destiny.importer.layers import Layer, Term, f32
from destiny.importer.onnx_graph import attributes, node_name
from destiny.importer.onnx_values import Pending
from destiny.nn.conv import padding


def _pads(a: dict, spatial, kernel, strides) -> list[int]:
    """ONNX's pads (all the befores, then all the afters), ``auto_pad`` resolved."""
    n = len(spatial)
    auto = a.get("auto_pad", "NOTSET") or "NOTSET"
    if auto == "NOTSET":
        return list(a.get("pads", [0] * (2 * n)))
    if auto == "VALID":
        return [0] * (2 * n)
    begin, end = [], []
    for w, k, s in zip(spatial, kernel, strides):
        total = max((math.ceil(w / s) - 1) * s + k - w, 0)
        first = total // 2 if auto == "SAME_UPPER" else total - total // 2
        begin.append(first)
        end.append(total - first)
    return begin + end


def window(m, node, shape, kernel, strides, pads, ceil: bool = False):
    """(kernel, stride) in DSSTNE's axis order and the output's spatial sizes in ONNX's order,
    for a window over a (channels, …spatial) tensor; the mapper's error if DSSTNE pads otherwise."""
    spatial = shape[1:]
    n = len(spatial)
    out = []
    for i, (w, k, s) in enumerate(zip(spatial, kernel, strides)):
        before, after = pads[i], pads[i + n]
        span = w + before + after - k
        got = (-(-span // s) if ceil else span // s) + 1
        want_pad, want_out = padding(w, k, s), output_size(w, k, s)
        if before != want_pad or got != want_out:
            axis = "xyz"[n - 1 - i]
            raise m.g.error(node, f"along axis {axis} ({w} wide, kernel {k}, stride {s}) it pads {before} before and "
                            f"{after} after, giving {got} positions",
                            f"DSSTNE's padding there: {want_pad} before, giving {want_out} positions (\"same\" at "
                            "stride 1, none at larger strides)")
        out.append(want_out)
    return tuple(reversed(kernel)), tuple(reversed(strides)), tuple(out)


def _source(m, node):
    """The layer values a window reads, as (channels, [z,] [y,] x)."""
    x = m.out(node.input[0], node)
    if not x.canonical() or not 2 <= len(x.shape) <= 4:
        raise m.g.error(node, f"it reads layer '{x.layer.name}' as a tensor of shape {list(x.shape)} in another "
                        "order or rank", f"the layer's values as (batch, channels, [z,] [y,] x): dims "
                        f"{list(reversed(x.layer.dims))} as they come, 1 to 3 spatial axes")
    return x


def conv(m, node) -> None:
    """Conv → a Convolutional layer's weighted sum (its activation comes next)."""
    a = attributes(node)
    w = m.g.const(node.input[1])
    if w is None:
        raise m.g.error(node, "its filters depend on the data", "constant filters")
    if a.get("group", 1) != 1:
        raise m.g.error(node, f"it is a grouped (or depthwise) convolution, group={a['group']}",
                        "group=1: every output channel reads every input channel")
    if any(d != 1 for d in a.get("dilations", [])):
        raise m.g.error(node, f"it is dilated ({a['dilations']})", "dilations of 1")
    x = _source(m, node)
    kernel = list(a.get("kernel_shape", w.shape[2:]))
    if w.ndim != len(x.shape) + 1 or w.shape[1] != x.shape[0] or list(w.shape[2:]) != kernel:
        raise m.g.error(node, f"its filters {list(w.shape)} do not fit its input {list(x.shape)}",
                        "filters (out, in channels, kernel…)")
    strides = list(a.get("strides", [1] * len(kernel)))
    kd, sd, out = window(m, node, x.shape, kernel, strides, _pads(a, x.shape[1:], kernel, strides))
    filters = np.ascontiguousarray(np.transpose(np.asarray(w, np.float32), (0, 1, *range(w.ndim - 1, 1, -1))))
    bias = None
    if len(node.input) > 2 and node.input[2]:
        bias = m.g.const(node.input[2])
        if bias is None:
            raise m.g.error(node, "its bias depends on the data", "a constant bias")
        bias = np.asarray(bias, np.float32).reshape(-1)
    x.layer.readers += 1
    m.env[node.output[0]] = Pending("Convolutional", [Term(x.layer, filters, bias)], (w.shape[0], *out), node, kd, sd)


def pool(m, node) -> None:
    """MaxPool, AveragePool, GlobalMaxPool, GlobalAveragePool → a Pooling layer (no activation)."""
    a, op = attributes(node), node.op_type
    function = "Max" if "Max" in op else "Average"
    if any(m.g.used(o) for o in node.output[1:]):
        raise m.g.error(node, "its indices output is used", "a MaxPool whose indices are not read")
    x = _source(m, node)
    spatial = list(x.shape[1:])
    if op.startswith("Global"):
        kernel, strides, pads, ceil = spatial, spatial, [0] * (2 * len(spatial)), False
    else:
        kernel = list(a["kernel_shape"])
        strides = list(a.get("strides", [1] * len(kernel)))
        pads, ceil = _pads(a, spatial, kernel, strides), bool(a.get("ceil_mode", 0))
        if any(d != 1 for d in a.get("dilations", [])):
            raise m.g.error(node, f"it is dilated ({a['dilations']})", "dilations of 1")
        if function == "Average" and any(pads) and a.get("count_include_pad", 0):
            raise m.g.error(node, "its averages count the padding (count_include_pad=1)",
                            "count_include_pad=0: DSSTNE's average pooling leaves the padding out")
    kd, sd, out = window(m, node, x.shape, kernel, strides, pads, ceil)
    x.layer.readers += 1
    layer = Layer(m.name_from(node), "Hidden", "Pooling", (*reversed(out), x.shape[0]), [Term(x.layer, None)],
                  function=function, kernel=kd, stride=sd, origin=f"node '{node_name(node)}'")
    m.add_layer(layer, node.output[0], (x.shape[0], *out))


def lrn(m, node) -> None:
    """LRN → a Pooling layer with Function LRN; its parameters are the network's (DSSTNE has one set)."""
    a = attributes(node)
    size = int(a["size"])
    if size % 2 == 0:
        raise m.g.error(node, f"its window has an even size ({size})", "an odd size: a window centred on each channel")
    params = {"k": f32(a.get("bias", 1.0)), "n": size, "alpha": f32(a.get("alpha", 1e-4)),
              "beta": f32(a.get("beta", 0.75))}
    if m.lrn is not None and m.lrn != params:
        raise m.g.error(node, f"its parameters {params} differ from an earlier LRN's {m.lrn}",
                        "one set of LRN parameters (DSSTNE's LocalResponseNormalization is the network's)")
    m.lrn = params
    x = m.out(node.input[0], node)
    if not x.canonical():
        raise m.g.error(node, f"it reads layer '{x.layer.name}' in another order", "the layer's values channels first")
    x.layer.readers += 1
    layer = Layer(m.name_from(node), "Hidden", "Pooling", x.layer.dims, [Term(x.layer, None)], function="LRN",
                  origin=f"node '{node_name(node)}'")
    m.add_layer(layer, node.output[0], x.shape)


def check_softmax(m, node, shape) -> None:
    """DSSTNE's SoftMax spans a layer's units: a Softmax over one axis of a larger tensor does not map."""
    a = attributes(node)
    rank = len(shape) + 1
    if m.g.opset < 13:  # the tensor seen as (batch, everything else) from axis on
        ok = a.get("axis", 1) % rank == 1
    else:
        axis = a.get("axis", -1) % rank
        ok = all(d == 1 for i, d in enumerate(shape) if i + 1 != axis)
    if not ok:
        raise m.g.error(node, f"it normalises one axis of a {list(shape)} tensor",
                        "a Softmax over all of a layer's units (a Flatten before it)")


__all__ = ["check_softmax", "conv", "lrn", "pool", "window"]
