"""Destiny networks as plain PyTorch and ONNX, and PyTorch MLP weights into Destiny.

    module = destiny.interop.to_torch(network)        # a torch.nn.Module: same outputs
    torch.save(module.state_dict(), "net.pt")        # nn.Linear weights (out, in), biases, ...
    destiny.interop.to_onnx(network, "net.onnx")      # for onnxruntime, Triton server, ...
    network = destiny.interop.from_torch_mlp(config, torch_mlp)   # an nn.Linear stack → Destiny
    network = destiny.interop.from_onnx("model.onnx")              # an ONNX graph → Destiny
    network = destiny.interop.from_state_dict("model.pt", config)  # .pt / .safetensors weights + JSON

``to_torch`` builds a ``TorchNetwork``: one ``nn.Linear`` per weight matrix (DSSTNE stores W as
(input units, output units); ``nn.Linear.weight`` is its transpose, (out, in)), a bias-only
entry for a matrix shared with another pair of layers (it reads the owner's weight, transposed
where the config says ``Transposed``), ``nn.BatchNorm1d`` in evaluation mode for
BatchNormalization layers, and each layer's activation as a torch module. Skip connections,
several sources, several Input and Output layers are followed as Destiny follows them
(topological order; a layer reading an Output layer reads its activations).

Its ``forward(*inputs)`` takes one tensor per Input layer, in ``module.input_names`` order:

* dense: (batch, units) float — a multi-hot row (1.0 at each item) for an indicator dataset,
  the values for an analog one. This is what ``to_onnx`` exports (ONNX has no ragged input).
* sparse: a tuple ``(indices, offsets[, values])`` in CSR form — ``offsets`` has batch + 1
  entries like scipy's ``indptr`` and Destiny's ``SparseBatch``; ``values`` default to 1. The
  layers reading it gather weight rows with ``torch.nn.functional.embedding_bag`` (sum mode),
  so a 10M-wide input never becomes a dense batch.

It returns the activations of the Output layers: one tensor, or a tuple in
``module.output_names`` order. In ``train()`` mode the hidden layers' dropout is torch's
(``nn.Dropout``; ``nn.AlphaDropout`` for ELU/SELU layers), not Destiny's seeded streams, and
there is no denoising: the module is for serving and fine-tuning in plain PyTorch, its outputs
in ``eval()`` mode (the default) are Destiny's ``network.predict``. Convolutional and Pooling
layers are not exported yet (``NotImplementedError``).
"""

from __future__ import annotations

import os
import re
import warnings
from typing import Mapping

import torch
import torch.nn.functional as F

from destiny.config import Activation, LayerKind, LayerType, NetworkConfig
from destiny.errors import UsageError

BN_EPSILON = 1e-5  # = destiny.nn.network.BN_EPSILON (cuDNN's minimum, as DSSTNE)


class ScaledELU(torch.nn.Module):
    """SELU with Destiny's parameters: lam · (z if z > 0 else alpha · (e^z − 1)).
    (``nn.SELU`` has fixed constants; DSSTNE's λ is 1.050701 and α may be set per layer.)"""

    def __init__(self, lam: float, alpha: float):
        super().__init__()
        self.lam, self.alpha = float(lam), float(alpha)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.lam * F.elu(z, alpha=self.alpha)

    def extra_repr(self) -> str:
        return f"lam={self.lam}, alpha={self.alpha}"


def activation_module(spec) -> torch.nn.Module:
    """The torch module computing ``destiny.nn.activations.activate(z, spec)`` on (batch, units)."""
    kind = spec.kind
    if kind == Activation.SIGMOID:
        return torch.nn.Sigmoid()
    if kind == Activation.TANH:
        return torch.nn.Tanh()
    if kind == Activation.RELU:
        return torch.nn.ReLU()
    if kind == Activation.LEAKY_RELU:
        return torch.nn.LeakyReLU(spec.slope)
    if kind == Activation.ELU:
        return torch.nn.ELU(spec.alpha)
    if kind == Activation.SELU:
        return ScaledELU(spec.lam, spec.alpha)
    if kind == Activation.SOFTPLUS:
        return torch.nn.Softplus()
    if kind == Activation.SOFTSIGN:
        return torch.nn.Softsign()
    if kind == Activation.SOFTMAX:
        return torch.nn.Softmax(dim=1)
    return torch.nn.Identity()  # Linear (and ReluMax / LinearMax, which DSSTNE never implemented)


class TorchNetwork(torch.nn.Module):
    """A Destiny network as plain PyTorch modules (see the module docstring).

    State dict keys: ``linears.w<j>.weight`` (out, in) and ``.bias`` for matrix j in DSSTNE's
    order (``network.specs``), ``shared_biases.w<j>`` for a shared matrix's own bias,
    ``batch_norms.bn<i>.*`` and nothing else, so ``load_state_dict`` works on a module built
    from the same config (``to_torch`` of any network with that config and dimensions)."""

    def __init__(self, network):
        super().__init__()
        _check_exportable(network)
        config: NetworkConfig = network.config
        index = {layer.name: i for i, layer in enumerate(config.layers)}
        self.input_names = [layer.name for layer in config.input_layers]
        self.normalize = {layer.name: getattr(layer, "normalize", None) for layer in config.input_layers}
        self.output_names = [layer.name for layer in config.output_layers]
        self.units = dict(network.units)
        self.linears = torch.nn.ModuleDict()
        self.shared_biases = torch.nn.ParameterDict()
        self.batch_norms = torch.nn.ModuleDict()
        self.activations = torch.nn.ModuleDict()
        self.dropouts = torch.nn.ModuleDict()
        self._owner: dict[str, tuple[str, bool]] = {}  # shared matrix → (owner's key, transposed)
        spec_of = {(s.input_layer, s.output_layer): s for s in network.specs}
        dtype, device = network.dtype, network.device
        with torch.no_grad():
            for spec in network.specs:
                key = f"w{spec.index}"
                if spec.shared_from:
                    owner = spec_of[spec.shared_from]
                    self._owner[key] = (f"w{owner.index}", spec.transposed)
                    self.shared_biases[key] = torch.nn.Parameter(network.bias(spec).detach().clone())
                    continue
                n_in, n_out = spec.shape
                w, b = network.weight(spec), network.bias(spec)
                if getattr(config.layer(spec.output_layer), "variational", False):  # μ: the first half (evaluation)
                    n_out //= 2
                    w, b = w[:, :n_out], b[:n_out]
                linear = torch.nn.Linear(n_in, n_out, dtype=dtype, device=device)
                linear.weight.copy_(w.t())  # DSSTNE's (in, out) → torch's (out, in)
                linear.bias.copy_(b)
                self.linears[key] = linear
        # (layer, source terms [(source, matrix key)], skips, batch-norm key, activation key, dropout key)
        self._plan: list[tuple[str, list[tuple[str, str]], list[str], str | None, str, str | None]] = []
        for layer in network.order:
            if layer.kind == LayerKind.INPUT:
                continue
            i = index[layer.name]
            terms = [(src, f"w{spec_of[(src, layer.name)].index}") for src in layer.sources]
            bn = None
            if layer.batch_norm:
                bn = f"bn{i}"
                norm = torch.nn.BatchNorm1d(self.units[layer.name], eps=BN_EPSILON, dtype=dtype, device=device)
                with torch.no_grad():
                    norm.weight.copy_(network.bn_scale[layer.name])
                    norm.bias.copy_(network.bn_shift[layer.name])
                    norm.running_mean.copy_(getattr(network, f"bn_mean_{layer.name}"))
                    norm.running_var.copy_(getattr(network, f"bn_var_{layer.name}"))
                self.batch_norms[bn] = norm
            act = network.activation[layer.name]
            self.activations[f"a{i}"] = activation_module(act)
            drop = None
            if layer.kind == LayerKind.HIDDEN and layer.p_dropout > 0:
                drop = f"d{i}"
                alpha = act.kind in (Activation.ELU, Activation.SELU)
                self.dropouts[drop] = (torch.nn.AlphaDropout if alpha else torch.nn.Dropout)(layer.p_dropout)
            self._plan.append((layer.name, terms, list(layer.skips), bn, f"a{i}", drop))
        self.eval()

    def _matrix(self, key: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(weight (out, in), bias) of matrix ``key``, following shared weights."""
        if key in self._owner:
            owner, transposed = self._owner[key]
            w = self.linears[owner].weight
            return (w.t() if transposed else w), self.shared_biases[key]
        linear = self.linears[key]
        return linear.weight, linear.bias

    def forward(self, *inputs):
        if len(inputs) != len(self.input_names):
            raise UsageError(f"this network takes {len(self.input_names)} input(s) ({', '.join(self.input_names)}); "
                             f"got {len(inputs)}")
        values: dict[str, object] = {}
        for name, x in zip(self.input_names, inputs):
            values[name] = _normalized(_as_input(x, self.units[name], name), self.normalize[name])
        for name, terms, skips, bn, act, drop in self._plan:
            z = None
            for src, key in terms:
                w, b = self._matrix(key)
                x = values[src]
                term = _gather_sum(x, w, b) if isinstance(x, tuple) else F.linear(x, w, b)
                z = term if z is None else z + term
            for skip in skips:
                z = z + _dense(values[skip], self.units[skip])
            if bn is not None:
                z = self.batch_norms[bn](z)
            a = self.activations[act](z)
            if drop is not None:
                a = self.dropouts[drop](a)
            values[name] = a
        outputs = tuple(values[name] for name in self.output_names)
        return outputs[0] if len(outputs) == 1 else outputs


def _check_exportable(network) -> None:
    world = getattr(network, "world", None)
    if world is not None and world.parallel:
        raise UsageError("to_torch needs the whole network in one process; save it (network.save) and export "
                         "destiny.Network.load(path) instead of a model-parallel shard")
    for layer in network.config.layers:
        if layer.kind != LayerKind.INPUT and layer.type != LayerType.FULLY_CONNECTED:
            raise NotImplementedError(
                f"layer '{layer.name}' is {layer.type.json}: exporting to plain PyTorch or ONNX supports "
                "FullyConnected layers only for now (convolutional and pooling layers are not exported yet)")


def _as_input(x, units: int, name: str):
    if isinstance(x, (tuple, list)):
        if len(x) not in (2, 3):
            raise UsageError(f"sparse input of layer '{name}' must be (indices, offsets[, values]); got {len(x)} items")
        return tuple(x) if len(x) == 3 else (x[0], x[1], None)
    if not isinstance(x, torch.Tensor):
        raise UsageError(f"input of layer '{name}' must be a tensor (batch, {units}) or a tuple "
                         f"(indices, offsets[, values]); got {type(x).__name__}")
    x = x.flatten(1)
    if not torch.jit.is_tracing() and x.shape[1] != units:
        raise UsageError(f"input layer '{name}' has {units} units but got {x.shape[1]} values per example")
    return x


def _normalized(x, norm: str | None):
    """An input's rows scaled to unit L2 or L1 norm (``"Normalize"``; ``reference.normalize_rows_ref``:
    an empty or all-zero row stays zero), dense (batch, units) or sparse (indices, offsets, values)."""
    if norm is None:
        return x
    p = 2.0 if norm == "L2" else 1.0
    if not isinstance(x, tuple):
        return F.normalize(x, p=p, dim=1, eps=1e-30)
    indices, offsets, values = x
    lengths = offsets.diff()
    rows = torch.repeat_interleave(torch.arange(lengths.numel(), device=offsets.device), lengths)
    v = torch.ones(indices.numel(), device=indices.device) if values is None else values
    terms = v * v if norm == "L2" else v.abs()
    sums = torch.zeros(lengths.numel(), dtype=terms.dtype, device=terms.device).index_add_(0, rows, terms)
    size = sums.sqrt() if norm == "L2" else sums
    scale = torch.where(size > 0, 1.0 / torch.where(size > 0, size, torch.ones_like(size)), torch.zeros_like(size))
    return indices, offsets, v * scale[rows]


def _gather_sum(x: tuple, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Σ of the weight columns of each example's features (+ bias): a sparse (indices, CSR
    offsets, values) batch times W, without densifying it."""
    indices, offsets, values = x
    out = F.embedding_bag(indices.long(), w.t(), offsets.long(), mode="sum", per_sample_weights=values,
                          include_last_offset=True)
    return out + b


def _dense(x, units: int) -> torch.Tensor:
    if not isinstance(x, tuple):
        return x
    indices, offsets, values = x
    rows = torch.repeat_interleave(torch.arange(offsets.numel() - 1, device=offsets.device), offsets.diff())
    out = torch.zeros(offsets.numel() - 1, units, device=indices.device)
    out.index_put_((rows, indices.long()), values if values is not None else torch.ones_like(rows, dtype=out.dtype),
                   accumulate=True)
    return out


def to_torch(network) -> TorchNetwork:
    """A plain ``torch.nn.Module`` that computes ``network.predict``'s outputs (in eval mode),
    on the network's device and dtype, holding copies of its weights. See the module docstring
    for its inputs, outputs and state dict."""
    return TorchNetwork(network)


def example_inputs(network, batch: int = 2) -> tuple[torch.Tensor, ...]:
    """Dense zero inputs of ``batch`` examples, one a Input layer (for tracing and export)."""
    return tuple(torch.zeros(batch, network.units[layer.name], dtype=network.dtype, device=network.device)
                 for layer in network.input_layers())


def to_onnx(network, path: str | os.PathLike, *, opset: int | None = None) -> str:
    """Export ``network`` to an ONNX file at ``path`` (written atomically); returns the path.

    Inputs are dense (batch, units) float tensors named after the Input layers, outputs the
    Output layers' activations named after them; the batch axis is dynamic. Uses
    ``torch.onnx.export`` (the TorchScript-based exporter where this PyTorch has it, else
    torch.export's, which needs ``onnxscript``); needs ``pip install destiny[onnx]`` to run the
    file (onnx, onnxruntime)."""
    from destiny.io.atomic import atomic_path

    module = to_torch(network).cpu().float().eval()
    names_in = [_onnx_name(n) for n in module.input_names]
    names_out = [_onnx_name(n) for n in module.output_names]
    if len(set(names_in + names_out)) != len(names_in) + len(names_out):
        raise UsageError("layer names collide once made ONNX identifiers; rename the Input and Output layers")
    args = tuple(x.cpu().float() for x in example_inputs(network))
    axes = {name: {0: "batch"} for name in names_in + names_out}
    path = os.fspath(path)
    with atomic_path(path, ".onnx") as tmp:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # the legacy exporter announces its successor
            try:
                torch.onnx.export(module, args, tmp, dynamo=False, input_names=names_in, output_names=names_out,
                                  dynamic_axes=axes, opset_version=opset)
            except TypeError:  # a PyTorch without the TorchScript-based exporter
                dims = {name: {0: torch.export.Dim("batch")} for name in names_in}
                torch.onnx.export(module, args, tmp, input_names=names_in, output_names=names_out,
                                  dynamic_shapes=tuple(dims.values()), opset_version=opset, external_data=False)
    return path


def _onnx_name(name: str) -> str:
    return re.sub(r"\W", "_", name)


# ---------------------------------------------------------------------------------------------
# PyTorch → Destiny


def _weight_pairs(config: NetworkConfig) -> list[tuple[str, str, bool]]:
    """(source, layer, shared?) of every weight matrix, in DSSTNE's order (``weight_specs``)."""
    pairs = []
    for layer in config.layers:
        if layer.kind == LayerKind.INPUT or layer.type == LayerType.POOLING:
            continue
        shared = {s.input_layer for s in layer.shared_weights}
        pairs.extend((src, layer.name, src in shared) for src in layer.sources)
    return pairs


def _linears(module_or_state_dict) -> tuple[list[tuple[torch.Tensor, torch.Tensor | None]], dict | None]:
    """The (weight (out, in), bias) of each linear layer in order, and the whole state dict
    when it is one of ``TorchNetwork`` (matched by matrix number instead of order)."""
    if isinstance(module_or_state_dict, torch.nn.Module):
        if isinstance(module_or_state_dict, TorchNetwork):
            return [], module_or_state_dict.state_dict()
        found = [(m.weight, m.bias) for m in module_or_state_dict.modules() if isinstance(m, torch.nn.Linear)]
        return found, None
    if not isinstance(module_or_state_dict, Mapping):
        raise UsageError("from_torch_mlp needs a torch.nn.Module or a state dict; "
                         f"got {type(module_or_state_dict).__name__}")
    state = dict(module_or_state_dict)
    if any(re.fullmatch(r"linears\.w\d+\.weight", k) for k in state):
        return [], state
    found = []
    for key, value in state.items():
        if key.endswith("weight") and isinstance(value, torch.Tensor) and value.dim() == 2:
            found.append((value, state.get(key[:-len("weight")] + "bias")))
    return found, None


def from_torch_mlp(config: NetworkConfig, module_or_state_dict, *, dataset_dims: Mapping | None = None,
                   seed: int = 12134):
    """A Destiny ``Network`` for ``config`` holding the weights of an equivalent PyTorch MLP.

    module_or_state_dict: a module or state dict whose ``nn.Linear`` layers (2-D ``*weight``
    entries of a state dict, with their ``*bias``), in order, are the config's weight matrices
    in DSSTNE's order (each layer's sources, layers in JSON order) — for a plain chain
    Input → Hidden… → Output, the MLP's linear layers one after the other. Activations are the
    config's: the MLP's own are not read. A ``to_torch`` module or its state dict is matched
    matrix by matrix (shared weights and batch norm included). dataset_dims: dimensions of the
    datasets of "auto" layers (default: the widths the linear layers give them)."""
    from destiny.nn.network import Network

    linears, state = _linears(module_or_state_dict)
    pairs = _weight_pairs(config)
    if state is not None:
        linears = []
        for j, (src, dst, shared) in enumerate(pairs):
            if shared:
                linears.append((None, state.get(f"shared_biases.w{j}")))
            elif f"linears.w{j}.weight" not in state:
                raise UsageError(f"the state dict has no linears.w{j}.weight for {src} → {dst}; it does not "
                                 "come from to_torch of a network with this config")
            else:
                linears.append((state[f"linears.w{j}.weight"], state.get(f"linears.w{j}.bias")))
    else:
        if any(shared for _, _, shared in pairs):
            raise UsageError("the config shares weight matrices (SharedWeights); load such a network from a "
                             "to_torch module or state dict, not from a plain MLP")
        if any(layer.batch_norm for layer in config.layers):
            raise UsageError("the config has BatchNormalization layers; load such a network from a to_torch "
                             "module or state dict, not from a plain MLP")
        if len(linears) != len(pairs):
            listed = ", ".join(f"{s} → {d}" for s, d, _ in pairs)
            raise UsageError(f"the module has {len(linears)} linear layer(s) but the config has {len(pairs)} "
                             f"weight matrices ({listed}); give an MLP with one nn.Linear per matrix, in that order")
    widths: dict[str, int] = {}  # units of the layers, as the matrices give them
    for (src, dst, _), (w, b) in zip(pairs, linears):
        if w is not None:
            widths.setdefault(src, int(w.shape[1]))
            widths.setdefault(dst, int(w.shape[0]))
        elif b is not None:  # a shared matrix: its own bias has the layer's width
            widths.setdefault(dst, int(b.numel()))
    dims = dict(dataset_dims or {})
    for layer in config.layers:
        if layer.is_auto and layer.dataset not in dims and layer.name in widths:
            dims[layer.dataset] = (widths[layer.name],)
    network = Network.from_config(config, dims, seed=seed, initialize=False)
    with torch.no_grad():
        for spec, (w, b) in zip(network.specs, linears):
            if not spec.shared_from:
                wanted = (spec.shape[1], spec.shape[0])
                if tuple(w.shape) != wanted:
                    raise UsageError(f"linear layer {spec.index} ({spec.input_layer} → {spec.output_layer}) has "
                                     f"weight {tuple(w.shape)} (out, in) but the config needs {wanted}")
                network.weights[f"w{spec.index}"].copy_(w.detach().t())
            bias = network.bias(spec)
            if b is None:
                bias.zero_()
            elif tuple(b.shape) != tuple(bias.shape):
                raise UsageError(f"linear layer {spec.index} ({spec.input_layer} → {spec.output_layer}) has "
                                 f"{b.numel()} biases but the layer has {bias.numel()} units")
            else:
                bias.copy_(b.detach())
        if state is not None:
            for i, layer in enumerate(config.layers):
                if layer.batch_norm:
                    prefix = f"batch_norms.bn{i}."
                    network.bn_scale[layer.name].copy_(state[prefix + "weight"])
                    network.bn_shift[layer.name].copy_(state[prefix + "bias"])
                    getattr(network, f"bn_mean_{layer.name}").copy_(state[prefix + "running_mean"])
                    getattr(network, f"bn_var_{layer.name}").copy_(state[prefix + "running_var"])
    return network


# ---------------------------------------------------------------------------------------------
# Other frameworks → Destiny (destiny.importer; `destiny import`)


def from_onnx(path: str | os.PathLike, *, sparse_inputs: str = "auto", error_function: str | None = None,
              device: torch.device | str = "cpu"):
    """A Destiny ``Network`` from an ONNX model of the layers DSSTNE has (``destiny.importer``):
    Gemm / MatMul + Add, Conv, pooling, LRN, BatchNormalization, skips and DSSTNE's activations.
    sparse_inputs: "auto" (an input read only by narrower fully connected layers is Sparse),
    "sparse" or "dense". error_function: the config's (default: CrossEntropy for Sigmoid and
    SoftMax outputs, else L2). What the import assumed (an input's layout, ...) is warned once."""
    from destiny.importer import import_onnx

    return _network(import_onnx(path, sparse_inputs=sparse_inputs, error_function=error_function), device)


def from_state_dict(weights, config, *, transposed: bool = False, device: torch.device | str = "cpu"):
    """A Destiny ``Network`` for ``config`` (a NetworkConfig or a DSSTNE JSON file) with the
    weights of ``weights``: a PyTorch state dict (a mapping, or a .pt file) or a .safetensors
    file, matched to the config's layers by name, then in order (``destiny.importer.state_dict``).
    transposed: the 2-D matrices are stored (in, out) (Keras, Flax, DSSTNE), not (out, in)."""
    from destiny.config import load_config
    from destiny.importer import Imported, import_weights
    from destiny.importer.state_dict import network_file

    source = "the config"
    if not isinstance(config, NetworkConfig):
        source, config = os.fspath(config), load_config(config)
    if isinstance(weights, Mapping):
        if any(re.fullmatch(r"linears\.w\d+\.weight", str(k)) for k in weights):  # to_torch's own
            return from_torch_mlp(config, weights).to(device)
        tensors = {k: v.detach().float().cpu().numpy() for k, v in weights.items()
                   if isinstance(v, torch.Tensor) and v.is_floating_point()}
        nf, notes = network_file(config, tensors, "the state dict", source, transposed=transposed)
        return _network(Imported(nf, "torch", "the state dict", notes), device)
    return _network(import_weights(weights, config, transposed=transposed, config_source=source), device)


def _network(imported, device):
    from destiny.train.checkpoint import network_from_file

    for note in imported.notes:
        warnings.warn(f"{imported.source}: {note}", UserWarning, stacklevel=3)
    return network_from_file(imported.network, source=imported.source).to(device)


__all__ = ["ScaledELU", "TorchNetwork", "activation_module", "example_inputs", "from_onnx", "from_state_dict",
           "from_torch_mlp", "to_onnx", "to_torch"]
