"""ONNX graph → DSSTNE layers.

Nodes are read in the graph's (topological) order. A product (Gemm, or MatMul then an Add of its
bias) starts a layer's weighted sum (``Pending``); Add of another such sum gives the layer a
second source, Add of a layer's values a Skip, BatchNormalization its normalisation, a Mul by a
constant is folded into its weights; the activation that follows finishes the layer (a sum read
by anything else is finished as a Linear layer). Conv starts a Convolutional layer the same way;
MaxPool / AveragePool / LRN are Pooling layers of their own. Flatten, Reshape and Transpose only
change how later nodes see a layer's values (``Out``): a product reading them in another order
gets its rows reordered (the NHWC Transposes tf2onnx writes around a convolution). Concat of
layers' values read by a product is one matrix per part. Graph outputs become Output layers,
graph inputs Input layers (the Transpose / Reshape / Flatten right after an input choose its
dimensions).

A node that fits none of this stops the import with an error naming the node, its op type and
what Destiny would need (``Graph.error``).
"""

from __future__ import annotations

import re

import numpy as np

from destiny.importer import onnx_ends, onnx_windows
from destiny.importer.layers import Layer, Term, batch_norm_arrays, f32
from destiny.importer.onnx_ends import show
from destiny.importer.onnx_graph import Graph, attributes, node_name
from destiny.importer.onnx_values import Cat, Out, Pending, rows_in_order

SELU_ALPHA, SELU_GAMMA = 1.67326319217681884765625, 1.05070102214813232421875  # ONNX's Selu defaults
_ACTIVATIONS = {"Relu": "Relu", "Sigmoid": "Sigmoid", "Tanh": "Tanh", "Softplus": "SoftPlus",
                "Softsign": "SoftSign", "Softmax": "SoftMax", "LeakyRelu": "LRelu", "Elu": "ELU", "Selu": "SELU"}
_OP_WORDS = {"gemm", "matmul", "conv", "convolution", "add", "biasadd", "mul", "relu", "sigmoid", "tanh", "softmax",
             "maxpool", "averagepool", "avgpool", "batchnormalization", "fusedbatchnorm", "flatten", "reshape",
             "transpose", "elu", "selu", "leakyrelu", "softplus", "softsign", "lrn", "dropout", "concat", "identity",
             "cast", "globalaveragepool", "globalmaxpool", "mean", "linear", "dense"}
MAPPED = ("Gemm, MatMul (+ Add), Conv, MaxPool, AveragePool, GlobalMaxPool, GlobalAveragePool, LRN, "
          "BatchNormalization, Flatten, Reshape, Transpose, Concat, Add, Mul by a constant, Dropout, Identity and "
          "DSSTNE's activations (Relu, LeakyRelu, Elu, Selu, Sigmoid, Tanh, Softplus, Softsign, Softmax)")


def activation_of(node) -> tuple[str, dict]:
    """(DSSTNE activation, its JSON parameters) of an activation node."""
    kind = _ACTIVATIONS[node.op_type]
    a = attributes(node)
    if kind == "LRelu":
        return kind, {"RELUSlope": f32(a.get("alpha", 0.01))}
    if kind == "ELU":
        alpha = a.get("alpha", 1.0)
        return kind, ({} if alpha == 1.0 else {"ELUAlpha": f32(alpha)})
    if kind == "SELU":
        return kind, {"ELUAlpha": f32(a.get("alpha", SELU_ALPHA)), "SELULambda": f32(a.get("gamma", SELU_GAMMA))}
    return kind, {}


def _monotone(kind: str, params: dict) -> bool:
    """Whether the activation never decreases (it then commutes with max pooling)."""
    if kind == "SoftMax":
        return False
    return params.get("RELUSlope", 0.0) >= 0 and params.get("ELUAlpha", 1.0) >= 0


class Mapper:
    """Maps one graph (``run``); ``layers``, ``lrn`` and ``notes`` hold the result."""

    def __init__(self, graph: Graph):
        self.g = graph
        self.env: dict[str, Out | Pending | Cat] = {}
        self.layers: list[Layer] = []
        self.names: set[str] = set()
        self.notes: list[str] = []
        self.lrn: dict | None = None
        self.handled: set[int] = set()  # nodes folded into an input's view
        self.owners: dict[str, Term] = {}  # graph constant → the first matrix made of it (tied weights)
        self.tied: set[Term] = set()  # owners another matrix shares
        self.values: dict[Layer, str] = {}  # layer → the tensor it was finished as
        self.batch = None

    # -- driver ---------------------------------------------------------------------------------

    def run(self) -> list[Layer]:
        for info in self.g.inputs:
            onnx_ends.read_input(self, info)
        handlers = {"Gemm": self._product, "MatMul": self._product, "Add": self._add, "Mul": self._mul,
                    "BatchNormalization": self._batch_norm, "Concat": self._concat, "Abs": self._softsign,
                    "Conv": lambda n: onnx_windows.conv(self, n), "LRN": lambda n: onnx_windows.lrn(self, n)}
        for op in ("MaxPool", "AveragePool", "GlobalMaxPool", "GlobalAveragePool"):
            handlers[op] = lambda n: onnx_windows.pool(self, n)
        for op in ("Identity", "Cast", "Dropout", "Flatten", "Reshape", "Transpose"):
            handlers[op] = self._view
        for op in _ACTIVATIONS:
            handlers[op] = self._activation
        for node in self.g.nodes:
            if id(node) in self.handled or not any(self.g.is_data(n) and self.g.used(n) for n in node.output):
                continue  # shape and weight arithmetic, dead branches, nodes already taken
            handler = handlers.get(node.op_type) if node.domain in ("", "ai.onnx") else None
            if handler is None:
                raise self.g.error(node, f"{node.op_type} is not one of the operations Destiny maps ({MAPPED})",
                                   "the model without it (compute it before or after the network)")
            handler(node)
        onnx_ends.read_outputs(self)
        return self.layers

    # -- names and layers -----------------------------------------------------------------------

    def unique(self, name: str) -> str:
        base, i = name, 2
        while name in self.names:
            name, i = f"{base}_{i}", i + 1
        self.names.add(name)
        return name

    def name_from(self, node, kind: str = "Hidden") -> str:
        """The layer name a node's name suggests (/fc1/Gemm → fc1, model/dense_1/MatMul →
        dense_1), else DSSTNE's default (Hidden3: the kind and the layer's index)."""
        parts = [part for part in (node.name or "").split("/") if part]
        if parts and (re.sub(r"(_+\d+)+$", "", parts[-1]).lower() in _OP_WORDS or
                      parts[-1].lower().startswith(node.op_type.lower())):
            parts.pop()  # the operation's own name
        keep = [part for part in parts if part.isidentifier()]
        return self.unique(keep[-1] if keep else f"{kind}{len(self.layers)}")

    def add_layer(self, layer: Layer, value: str, shape: tuple[int, ...]) -> Out:
        for term in layer.terms:
            term.layer = layer
        self.layers.append(layer)
        self.values[layer] = value
        out = Out(layer, shape, value=value)
        self.env[value] = out
        return out

    def finish(self, p: Pending, value: str, activation: str = "Linear", params: dict | None = None) -> Out:
        """The layer of a weighted sum, finished with ``activation``, as the tensor ``value``."""
        layer = Layer(self.name_from(p.node), "Hidden", p.type, p.dims, p.terms, p.skips, activation,
                      dict(params or {}), p.batch_norm, p.kernel, p.stride, origin=f"node '{node_name(p.node)}'")
        return self.add_layer(layer, value, p.shape)

    # -- values ---------------------------------------------------------------------------------

    def out(self, name: str, node) -> Out:
        """The layer values tensor ``name`` holds (a weighted sum is finished as a Linear layer)."""
        v = self.env.get(name)
        if isinstance(v, Pending):
            v = self.finish(v, name)
        if isinstance(v, Cat):
            raise self.g.error(node, "it reads a Concat of layers other than through a product",
                               "the Concat to feed a Gemm or MatMul (one layer with several sources)")
        if v is None:
            raise self.g.error(node, f"it reads '{name}', which depends on the data but not through the inputs",
                               "tensors computed from the graph's inputs")
        return v

    def pending(self, name: str, node) -> Pending | None:
        """The weighted sum ``name`` holds, if ``node`` is its only reader (it may then extend it)."""
        v = self.env.get(name)
        return v if isinstance(v, Pending) and self.g.only_reader(name, node) else None

    def _fresh(self, name: str, node) -> Out | None:
        """A layer's values exactly as it was finished, read by ``node`` alone (its activation
        or normalisation may still be set)."""
        v = self.env.get(name)
        if isinstance(v, Out) and v.value == name and self.g.only_reader(name, node):
            return v
        return None

    def per_unit(self, p: Pending, c: np.ndarray, node, what: str) -> np.ndarray:
        """A constant added to or multiplied with a weighted sum, as one value per unit (per
        channel for a convolution)."""
        c = np.asarray(c, np.float32)
        n = p.units if p.type == "FullyConnected" else p.channels
        if c.size == 1:
            return np.full(n, c.reshape(-1)[0], np.float32)
        squeezed = [d for d in c.shape if d != 1]
        if p.type == "FullyConnected" and squeezed == [n] and c.shape[-1] == n:
            return c.reshape(-1)
        if p.type != "FullyConnected" and squeezed == [n] and c.ndim >= len(p.shape) and \
                c.shape[-len(p.shape)] == n:
            return c.reshape(-1)
        raise self.g.error(node, f"its {what} has shape {list(c.shape)}", f"one value per unit ({n},) or per channel")

    # -- products, sums and scales --------------------------------------------------------------

    def _product(self, node) -> None:
        a, b = node.input[0], node.input[1]
        w = self.g.const(b)
        if w is None:
            if self.g.const(a) is not None:
                raise self.g.error(node, "it multiplies a constant by the data (W·x)",
                                   "the data on the left (x·W), as a fully connected layer computes it")
            raise self.g.error(node, "both of its operands depend on the data", "a constant weight matrix "
                               "(DSSTNE's layers multiply data by weights; DotProduct pooling compares rows)")
        attrs = attributes(node) if node.op_type == "Gemm" else {}
        if attrs.get("transA", 0):
            raise self.g.error(node, "it transposes its data (transA=1)", "transA=0: the data as (batch, features)")
        if w.ndim != 2:
            raise self.g.error(node, f"its weights are {w.ndim}-D {list(w.shape)}", "a 2-D (inputs, outputs) matrix")
        trans, alpha, beta = bool(attrs.get("transB", 0)), attrs.get("alpha", 1.0), attrs.get("beta", 1.0)
        matrix = np.asarray(w, np.float32)
        matrix = matrix.T if trans else matrix
        if alpha != 1.0:
            matrix = matrix * np.float32(alpha)
        v = self.env.get(a)
        parts = v.parts if isinstance(v, Cat) else [self.out(a, node)]
        for part in parts:
            if len(part.shape) != 1:
                raise self.g.error(node, f"it reads layer '{part.layer.name}' as a {show(part.shape)} tensor",
                                   "a flat (batch, features) tensor: a Flatten before the product")
        if sum(p.units for p in parts) != matrix.shape[0]:
            raise self.g.error(node, f"its weights have {matrix.shape[0]} rows for {sum(p.units for p in parts)} "
                               "inputs", "one row per input feature")
        units = matrix.shape[1]
        p = Pending("FullyConnected", [], (units,), node)
        row = 0
        for part in parts:
            block = rows_in_order(matrix[row:row + part.units], part)
            row += part.units
            exact = len(parts) == 1 and part.index is None and alpha == 1.0
            term = Term(part.layer, block, origin=(b, trans) if exact else None)
            part.layer.readers += 1
            self._share(term)
            p.terms.append(term)
        if len(node.input) > 2 and node.input[2]:
            c = self.g.const(node.input[2])
            if c is None:
                raise self.g.error(node, "its bias C depends on the data", "a constant bias")
            p.terms[0].bias = self.per_unit(p, np.asarray(c, np.float32) * np.float32(beta), node, "bias C")
        self.env[node.output[0]] = p

    def _share(self, term: Term) -> None:
        """A matrix made of a constant an earlier one was made of reuses it (SharedWeights,
        Transposed when read the other way round): tied weights."""
        if term.origin is None:
            return
        owner = self.owners.get(term.origin[0])
        if owner is None:
            self.owners[term.origin[0]] = term
            return
        term.shared_from, term.transposed, term.weights = owner, term.origin[1] != owner.origin[1], None
        self.tied.add(owner)

    def _add(self, node) -> None:
        x, y = node.input[0], node.input[1]
        c = self.g.const(y) if self.g.const(y) is not None else self.g.const(x)
        out = node.output[0]
        if c is not None:  # a bias
            name = x if self.g.const(y) is not None else y
            p = self.pending(name, node)
            if p is None:
                raise self.g.error(node, "it adds a constant to values that are not a layer's weighted sum read only "
                                   "there", "the constant as the bias of the product right before it")
            bias = self.per_unit(p, c, node, "constant")
            if p.batch_norm is not None:  # after the normalisation: its shift
                p.batch_norm.bias = p.batch_norm.bias + bias
            else:
                term = p.terms[0]
                term.bias = bias if term.bias is None else term.bias + bias
            self.env[out] = p
            return
        pa, pb = self.pending(x, node), self.pending(y, node)
        if pa is not None and pb is not None:  # two products: a layer with several sources
            if (pa.type, pa.shape, pa.kernel, pa.stride) != (pb.type, pb.shape, pb.kernel, pb.stride) or \
                    pa.batch_norm is not None or pb.batch_norm is not None:
                raise self.g.error(node, "it adds weighted sums of different shapes, windows or normalisations",
                                   "sums of the same shape and window, before any BatchNormalization")
            self.env[out] = Pending(pa.type, pa.terms + pb.terms, pa.shape, pa.node, pa.kernel, pa.stride,
                                    pa.skips + pb.skips)
            return
        p, other = (pa, y) if pa is not None else (pb, x)
        if p is None:
            raise self.g.error(node, "neither operand is a weighted sum read only here",
                               "the Add right after a product (Gemm, MatMul, Conv) or another Add of one, before "
                               "its activation: DSSTNE adds Skips to a layer's weighted sum")
        skip = self.out(other, node)
        if p.batch_norm is not None:
            raise self.g.error(node, "it adds a skip after BatchNormalization",
                               "the skip before the normalisation (DSSTNE adds Skips, then normalises)")
        if skip.index is not None or skip.shape != p.shape:
            raise self.g.error(node, f"it adds layer '{skip.layer.name}' as a {show(skip.shape)} tensor to a "
                               f"{show(p.shape)} sum", "the same shape on both sides, in the layers' own order")
        skip.layer.readers += 1
        p.skips.append(skip.layer)
        self.env[out] = p

    def _mul(self, node) -> None:
        x, y = node.input[0], node.input[1]
        c = self.g.const(y) if self.g.const(y) is not None else self.g.const(x)
        if c is None:
            raise self.g.error(node, "it multiplies two data tensors", "DSSTNE's operations: a layer multiplies "
                               "data by weights only (PyTorch's nn.LocalResponseNorm exports as such a subgraph; "
                               "ONNX's LRN operation maps)")
        name, out = (x if self.g.const(y) is not None else y), node.output[0]
        v = self._fresh(name, node)
        if v is not None and v.layer.activation == "ELU" and c.size == 1:  # λ·elu(z): SELU (PyTorch's export)
            alpha = v.layer.params.get("ELUAlpha", 1.0)
            v.layer.activation = "SELU"
            v.layer.params = {"ELUAlpha": f32(alpha), "SELULambda": f32(float(c.reshape(-1)[0]))}
            self.values[v.layer] = out
            self.env[out] = Out(v.layer, v.shape, value=out)
            return
        p = self.pending(name, node)
        if p is None or p.skips or any(t.shared_from is not None or t in self.tied for t in p.terms):
            raise self.g.error(node, "it scales values that are not a layer's own weighted sum",
                               "the factor folded into the product's weights before export")
        scale = self.per_unit(p, c, node, "factor")
        if p.batch_norm is not None:
            p.batch_norm.scale = p.batch_norm.scale * scale
            p.batch_norm.bias = p.batch_norm.bias * scale
        else:
            for t in p.terms:
                t.weights = t.weights * (scale if p.type == "FullyConnected" else
                                         scale.reshape((-1,) + (1,) * (t.weights.ndim - 1)))
                t.bias = None if t.bias is None else t.bias * scale
                if t.origin is not None and self.owners.get(t.origin[0]) is t:
                    del self.owners[t.origin[0]]  # no longer the constant's matrix: nothing may share it
                t.origin = None
        self.env[out] = p

    # -- activations and normalisation ----------------------------------------------------------

    def _activation(self, node) -> None:
        kind, params = activation_of(node)
        x, out = node.input[0], node.output[0]
        p = self.pending(x, node)
        v = self.env.get(x)
        if kind == "SoftMax":
            onnx_windows.check_softmax(self, node, p.shape if p is not None else getattr(v, "shape", ()))
        if p is not None:
            self.finish(p, out, kind, params)
            return
        fresh = self._fresh(x, node)
        if fresh is not None:
            layer = fresh.layer
            if layer.activation == "Linear" and layer.type != "Pooling" and layer.kind != "Input":
                layer.activation, layer.params = kind, params
                self.values[layer] = out
                self.env[out] = Out(layer, fresh.shape, value=out)
                return
            if layer.function == "Max" and _monotone(kind, params) and self._commutes(layer):
                src = layer.terms[0].source
                src.activation, src.params = kind, params
                self.notes.append(f"{node.op_type} after max pooling '{layer.name}' is applied before it, by "
                                  f"'{src.name}' (the maximum of non-decreasing values commutes)")
                self.values[layer] = out
                self.env[out] = Out(layer, fresh.shape, value=out)
                return
        what = "an Input layer's data" if isinstance(v, Out) and v.layer.kind == "Input" else \
            "values other nodes read too, or already activated"
        raise self.g.error(node, f"its input is {what}, not a layer's weighted sum",
                           "the activation right after a product (Gemm, MatMul, Conv) or its BatchNormalization, "
                           "as the one node reading it")

    def _commutes(self, pool: Layer) -> bool:
        src = pool.terms[0].source
        return len(pool.terms) == 1 and src.activation == "Linear" and src.type != "Pooling" and \
            src.kind != "Input" and src.readers == 1 and self.values.get(src) not in self.g.outputs

    def _softsign(self, node) -> None:
        """x / (1 + |x|) (PyTorch's Softsign export): Abs, Add of 1, Div."""
        x = node.input[0]
        add = self.g.readers.get(node.output[0], [None])[0]
        div = self.g.readers.get(add.output[0], [None])[0] if add is not None and add.op_type == "Add" else None
        one = [self.g.const(n) for n in add.input if n != node.output[0]] if add is not None else []
        if div is None or div.op_type != "Div" or list(div.input) != [x, add.output[0]] or len(one) != 1 or \
                one[0] is None or one[0].size != 1 or float(one[0].reshape(-1)[0]) != 1.0 or \
                not self.g.only_reader(node.output[0], add) or not self.g.only_reader(add.output[0], div):
            raise self.g.error(node, "it is not part of x / (1 + |x|) (Softsign)", "DSSTNE's activations only")
        p = self.env.get(x)
        if not isinstance(p, Pending) or sorted(map(id, self.g.readers[x])) != sorted((id(node), id(div))) or \
                x in self.g.outputs:
            raise self.g.error(node, "its Softsign reads values that are not a layer's weighted sum",
                               "the activation right after a product")
        self.handled.update((id(add), id(div)))
        self.finish(p, div.output[0], "SoftSign")

    def _batch_norm(self, node) -> None:
        a = attributes(node)
        if a.get("training_mode", 0) or any(self.g.used(o) for o in node.output[1:]):
            raise self.g.error(node, "it runs in training mode", "the model exported for inference (model.eval())")
        if not a.get("spatial", 1):
            raise self.g.error(node, "it normalises each position (spatial=0)", "one mean and variance per channel")
        params = [self.g.const(n) for n in node.input[1:5]]
        if any(p is None for p in params):
            raise self.g.error(node, "its parameters depend on the data", "constant scale, shift, mean and variance")
        arrays, note = batch_norm_arrays(*params, a.get("epsilon", 1e-5))
        x, out = node.input[0], node.output[0]
        p = self.pending(x, node)
        if p is not None and p.batch_norm is None:
            size = p.units if p.type == "FullyConnected" else p.channels
            if arrays.scale.size == size:
                p.batch_norm = arrays
                self.env[out] = p
                if note:
                    self.notes.append(f"node '{node_name(node)}': {note}")
                return
        raise self.g.error(node, "it normalises values that are not one layer's weighted sum (or normalises it twice)",
                           "the BatchNormalization right after a product (Gemm, MatMul, Conv), before the activation")

    # -- views and joins ------------------------------------------------------------------------

    def _view(self, node) -> None:
        op, a = node.op_type, attributes(node)
        x, out = node.input[0], node.output[0]
        if op == "Dropout" and any(self.g.used(o) for o in node.output[1:]):
            raise self.g.error(node, "its mask is used", "a Dropout whose mask output is not read")
        if op == "Cast" and a.get("to") not in (1, 10, 11, 16):
            raise self.g.error(node, f"it casts to a non-float type ({a.get('to')})", "float values throughout")
        p = self.pending(x, node)
        if p is not None and (op in ("Identity", "Cast") or (op in ("Flatten", "Reshape") and
                                                              self._flat_target(node, p.shape) == p.shape)):
            self.env[out] = p  # a no-op: the sum goes on
            return
        v = self.out(x, node)
        keep = v.value == x and self.g.only_reader(x, node)
        if op in ("Identity", "Cast"):
            self.env[out] = Out(v.layer, v.shape, v.index, value=out if keep else None)
            if keep:
                self.values[v.layer] = out
        elif op == "Dropout":
            ratio = self.g.const(node.input[1]) if len(node.input) > 1 and node.input[1] else a.get("ratio", 0.5)
            ratio = float(np.asarray(ratio).reshape(-1)[0]) if ratio is not None else 0.5
            if 0 < ratio < 1:  # the layer's pDropout: dropout after its activation, in training
                v.layer.p_dropout = max(v.layer.p_dropout, ratio)
            self.env[out] = Out(v.layer, v.shape, v.index)
        elif op == "Transpose":
            perm = list(a.get("perm", range(len(v.shape), -1, -1)))
            if perm[0] != 0:
                raise self.g.error(node, f"it moves the batch axis (perm {perm})", "the batch axis kept first")
            self.env[out] = v.transposed([q - 1 for q in perm[1:]])
        else:
            target = self._flat_target(node, v.shape)
            if target is None:
                raise self.g.error(node, "it reshapes across the batch axis, or to a shape not known before running",
                                   "a Flatten from axis 1, or a Reshape to (batch, …) of known sizes")
            self.env[out] = v.reshaped(target)

    def _flat_target(self, node, shape: tuple[int, ...]) -> tuple[int, ...] | None:
        if node.op_type == "Flatten":
            axis = attributes(node).get("axis", 1) % (len(shape) + 1)
            return (int(np.prod(shape)),) if axis == 1 else None
        return onnx_ends.reshape_target(self, node, shape)

    def _concat(self, node) -> None:
        parts: list[Out] = []
        for name in node.input:
            if not self.g.is_data(name):
                raise self.g.error(node, "it joins constants to layers' values", "layers' values only")
            v = self.env.get(name)
            for part in (v.parts if isinstance(v, Cat) else [self.out(name, node)]):
                if len(part.shape) != 1:
                    raise self.g.error(node, f"it joins layer '{part.layer.name}' as a {show(part.shape)} tensor",
                                       "flat (batch, features) tensors joined along axis 1, read by a product")
                parts.append(part)
        if attributes(node).get("axis") not in (1, -1):
            raise self.g.error(node, f"it joins along axis {attributes(node).get('axis')}", "a join along axis 1")
        self.env[node.output[0]] = Cat(parts)


__all__ = ["MAPPED", "Mapper", "activation_of"]
