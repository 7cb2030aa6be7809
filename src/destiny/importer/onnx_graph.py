"""An ONNX model read for import: its constants folded, each tensor's readers and shape known.

A tensor is *static* when it does not depend on the data: an initializer, a Constant, a shape
(``Shape`` of a data tensor) and whatever is computed from those alone. Static tensors with
values are folded into ``consts`` (each such node run once by ONNX's reference evaluator, in the
model's opset), so a weight read through Identity, Cast, Transpose or Reshape nodes (as tf2onnx
writes them) is a plain array. Nodes whose outputs are all static are not mapped: they are the
arithmetic of shapes (a Reshape's target) and of weights.

onnx is imported here, where it is used: machines without it import the rest of Destiny.
"""

from __future__ import annotations

import os
from collections import defaultdict

import numpy as np

from destiny.errors import ModelImportError, UsageError

SHAPE_OPS = ("Shape", "Size")  # static outputs from data inputs


class Graph:
    """The nodes, constants, readers and inferred shapes of a model's main graph."""

    def __init__(self, model, source: str):
        import onnx
        from onnx import numpy_helper

        self.source = source
        self.model = model
        graph = model.graph
        self.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)
        self.consts: dict[str, np.ndarray] = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
        self.inputs = [i for i in graph.input if i.name not in self.consts]  # old models list initializers too
        self.outputs = [o.name for o in graph.output]
        self.nodes = list(graph.node)
        self.readers: dict[str, list] = defaultdict(list)
        for node in self.nodes:
            for name in node.input:
                if name:
                    self.readers[name].append(node)
        try:
            inferred = onnx.shape_inference.infer_shapes(model).graph
        except Exception:  # noqa: BLE001 - shapes are a help, not a requirement
            inferred = graph
        infos = (*inferred.value_info, *inferred.input, *inferred.output)
        self.shapes = {vi.name: tensor_dims(vi) for vi in infos}
        self.static: set[str] = set(self.consts)
        self._fold()

    # -- constants ------------------------------------------------------------------------------

    def _fold(self) -> None:
        for node in self.nodes:
            inputs = [name for name in node.input if name]
            if node.op_type == "Constant":
                self.consts[node.output[0]] = _constant(node)
            elif node.op_type in SHAPE_OPS or (inputs and all(name in self.static for name in inputs)):
                if all(name in self.consts for name in inputs) and node.op_type not in SHAPE_OPS:
                    self._evaluate(node)
            else:
                continue
            self.static.update(name for name in node.output if name)

    def _evaluate(self, node) -> None:
        """Run one all-constant node; its outputs stay unknown (static only) if it cannot run."""
        from onnx import helper
        from onnx.reference import ReferenceEvaluator

        inputs = [name for name in node.input if name]
        try:
            values = [self.consts[name] for name in inputs]
            infos = [helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
                     for name, v in zip(inputs, values)]
            outputs = [helper.make_tensor_value_info(name, 0, None) for name in node.output if name]
            graph = helper.make_graph([node], "fold", infos, outputs)
            model = helper.make_model(graph, opset_imports=list(self.model.opset_import))
            results = ReferenceEvaluator(model).run(None, dict(zip(inputs, values)))
        except Exception:  # noqa: BLE001 - an op the evaluator lacks: the tensor stays static, unknown
            return
        for name, value in zip([n for n in node.output if n], results):
            self.consts[name] = np.asarray(value)

    def const(self, name: str) -> np.ndarray | None:
        return self.consts.get(name) if name else None

    # -- reading nodes --------------------------------------------------------------------------

    def is_data(self, name: str) -> bool:
        return bool(name) and name not in self.static

    def data_inputs(self, node) -> list[str]:
        return [name for name in node.input if self.is_data(name)]

    def only_reader(self, name: str, node) -> bool:
        """Whether ``node`` is the one node reading ``name`` and no graph output is ``name``."""
        return self.readers.get(name) == [node] and name not in self.outputs

    def used(self, name: str) -> bool:
        return bool(name) and (bool(self.readers.get(name)) or name in self.outputs)

    def error(self, node, why: str, need: str) -> ModelImportError:
        """The one-line error for a node that has no DSSTNE layer."""
        return ModelImportError(f"{self.source}: node '{node_name(node)}' ({node.op_type}) cannot be mapped to a "
                                f"DSSTNE layer: {why}; Destiny would need {need}")


def node_name(node) -> str:
    return node.name or (node.output[0] if node.output else node.op_type)


def attributes(node) -> dict:
    from onnx import helper

    out = {}
    for a in node.attribute:
        value = helper.get_attribute_value(a)
        out[a.name] = value.decode() if isinstance(value, bytes) else value
    return out


def _constant(node) -> np.ndarray:
    from onnx import numpy_helper

    attrs = {a.name: a for a in node.attribute}
    if "value" in attrs:
        return numpy_helper.to_array(attrs["value"].t)
    values = attributes(node)
    for key, dtype in (("value_float", np.float32), ("value_floats", np.float32), ("value_int", np.int64),
                       ("value_ints", np.int64)):
        if key in values:
            return np.asarray(values[key], dtype)
    raise ModelImportError(f"Constant node '{node_name(node)}' holds {', '.join(values) or 'nothing'}: Destiny reads "
                           "tensor, float and int constants")


def tensor_dims(value_info) -> tuple[int | None, ...] | None:
    tensor = value_info.type.tensor_type
    if not tensor.HasField("shape"):
        return None
    return tuple(d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim)


def load(path: str | os.PathLike):
    """The ONNX model at ``path`` (its external data beside it), ModelImportError if it is not one."""
    path = os.fspath(path)
    try:
        import onnx
    except ImportError:
        raise UsageError(f"{path}: reading ONNX models needs the onnx package (pip install destiny[onnx])") from None
    try:
        model = onnx.load(path)
    except Exception as exc:  # noqa: BLE001 - protobuf's DecodeError and friends
        reason = str(exc).splitlines()[0] if str(exc) else ""
        raise ModelImportError(f"{path}: not an ONNX model, a PyTorch state dict or a safetensors file "
                               f"({type(exc).__name__}: {reason}); export one with "
                               "torch.onnx.export or tf2onnx, or give a .pt state dict or a .safetensors file "
                               "with --config") from None
    if not model.graph.node or model.ir_version <= 0:
        raise ModelImportError(f"{path}: not an ONNX model (no graph nodes); export one with torch.onnx.export or "
                               "tf2onnx, or give a .pt state dict or a .safetensors file with --config")
    return model


__all__ = ["Graph", "attributes", "load", "node_name", "tensor_dims"]
