"""The ends of an ONNX graph: its inputs become Input layers (their dimensions chosen by the
Transpose / Reshape / Flatten right after them: tf2onnx's NHWC → NCHW Transpose makes an Input
layer of channels-first images), its outputs Output layers; and how a Reshape's target is known
(a constant, or shape inference for a target computed from ``Shape``)."""

from __future__ import annotations

import numpy as np

from destiny.errors import ModelImportError
from destiny.importer.layers import Layer
from destiny.importer.onnx_graph import tensor_dims, attributes
from destiny.importer.onnx_values import Cat, Out


def read_input(m, info) -> None:
    """A graph input → an Input layer; the Transpose / Reshape / Flatten nodes right after it
    (read by nothing else) choose its dimensions."""
    where = f"{m.g.source}: input '{info.name}'"
    elem = info.type.tensor_type.elem_type
    if elem not in (1, 10, 11, 16):  # float, float16, double, bfloat16
        raise ModelImportError(f"{where} holds integers (ONNX type {elem}), such as ids for an embedding lookup; "
                               "Destiny's Input layers read float rows (a multi-hot row of items for a sparse "
                               "input): export the model with a float input multiplied by the embedding matrix")
    dims = tensor_dims(info)
    if dims is None or len(dims) < 2 or any(d is None for d in dims[1:]):
        raise ModelImportError(f"{where} has shape {show(dims)}; Destiny needs (batch, features…) with every "
                               "size but the batch known: export the model with fixed feature sizes")
    m.batch = dims[0]
    shape, name, moved = tuple(dims[1:]), info.name, False
    while m.g.readers.get(name) and len(m.g.readers[name]) == 1 and name not in m.g.outputs:
        node = m.g.readers[name][0]
        new = _input_view(m, node, shape)
        if new is None:
            break
        moved |= node.op_type == "Transpose" and new != shape
        shape, name = new, node.output[0]
        m.handled.add(id(node))
    layer = Layer(m.unique(info.name), "Input", "FullyConnected", tuple(reversed(shape)),
                  origin=f"input '{info.name}'")
    m.layers.append(layer)
    m.env[name] = Out(layer, shape, value=name)
    if moved:
        m.notes.append(f"input '{info.name}' is {show(dims)} in the graph; its Input layer reads examples "
                       f"as (batch, {', '.join(map(str, shape))}): give Destiny the data in that order "
                       "(channels first)")


def _input_view(m, node, shape: tuple[int, ...]) -> tuple[int, ...] | None:
    """The shape an input has after a view node that reads it, or None (not a view)."""
    op, a = node.op_type, attributes(node)
    if op == "Identity":
        return shape
    if op == "Flatten" and a.get("axis", 1) == 1:
        return (int(np.prod(shape)),)
    if op == "Transpose":
        perm = list(a.get("perm", range(len(shape), -1, -1)))
        return tuple(shape[p - 1] for p in perm[1:]) if perm[0] == 0 else None
    if op == "Reshape":
        return reshape_target(m, node, shape)
    return None


def reshape_target(m, node, shape: tuple[int, ...]) -> tuple[int, ...] | None:
    """The shape (batch left out) a Reshape gives a tensor of ``shape``, or None if it
    moves the batch axis or is not known before running."""
    units = int(np.prod(shape))
    target = m.g.const(node.input[1])
    if target is not None:
        full = (m.batch, *shape)
        dims = [int(v) for v in target.reshape(-1)]
        if not attributes(node).get("allowzero", 0):
            dims = [full[i] if v == 0 and i < len(full) else v for i, v in enumerate(dims)]
        if not dims or dims[0] not in (-1, None, m.batch):
            return None
        rest = dims[1:]
        if rest.count(-1) == 1:
            known = int(np.prod([d for d in rest if d != -1]))
            rest[rest.index(-1)] = units // known if known else -1
        return tuple(rest) if all(d is not None and d > 0 for d in rest) and np.prod(rest) == units else None
    inferred = m.g.shapes.get(node.output[0])
    if inferred and len(inferred) > 1 and all(d is not None for d in inferred[1:]) and \
            np.prod(inferred[1:]) == units:
        return tuple(inferred[1:])
    length = m.g.shapes.get(node.input[1])
    return (units,) if length == (2,) else None  # a computed (batch, -1): a flatten


def read_outputs(m) -> None:
    """Each graph output → an Output layer named after it (its DataSet is set later)."""
    source = m.g.source
    for name in m.g.outputs:
        if not m.g.is_data(name) or name not in m.env:
            raise ModelImportError(f"{source}: output '{name}' does not depend on the inputs; Destiny's Output "
                                   "layers compute from the data: export the model without it")
        v = m.env[name]
        if isinstance(v, Cat):
            raise ModelImportError(f"{source}: output '{name}' is a Concat of several layers; Destiny would need "
                                   "one graph output per layer (each an Output layer)")
        o = m.out(name, None)
        layer = o.layer
        if o.index is not None:
            raise ModelImportError(f"{source}: output '{name}' gives layer '{layer.name}'s values in another "
                                   "order (a Transpose after it); Destiny's layers give theirs channels first: it "
                                   "would need the output without that Transpose")
        if layer.kind == "Input":
            raise ModelImportError(f"{source}: output '{name}' is the input '{layer.name}' itself; Destiny's "
                                   "Output layers compute from the data: export the model without it")
        if layer.batch_norm is not None:
            raise ModelImportError(f"{source}: output '{name}' comes from a batch-normalised layer "
                                   f"('{layer.origin}'); DSSTNE normalises Hidden layers only: Destiny would "
                                   "need another layer after the normalisation")
        layer.readers += 1
        if layer.kind != "Output":
            layer.kind = "Output"
            m.names.discard(layer.name)
            layer.name = m.unique(name)


def show(shape) -> str:
    """A shape for messages, the batch axis written "batch"."""
    return "?" if shape is None else "(" + ", ".join("batch" if d is None else str(d) for d in shape) + ")"


__all__ = ["read_input", "read_outputs", "reshape_target", "show"]
