"""A network built from a NetworkConfig: parameters, forward pass, loss.

Layers run in topological order. A layer's pre-activation sums, over its sources, the source
times its weight matrix plus that matrix's bias (DSSTNE keeps one bias per matrix), plus its
Skip layers; BatchNormalization, DeltaNorm, the activation and dropout follow. A sparse input
is never densified: ``sparse_linear`` gathers the weight rows of its features and its weight
gradient holds only those rows. The loss of an output layer is computed from its
pre-activations against sparse or dense targets without a dense target tensor.

Randomness (dropout, denoising) comes from counter-based streams keyed by (seed, epoch, step,
layer), so a run is reproducible and a resumed run draws the same numbers.

Model parallel (``world`` of N processes, ``destiny.parallel``): every layer's units are split
by ``shard_bounds`` and this process holds, computes and stores its units only — activations
(batch, its units), each matrix's slice (``parallel.plan``: split by output columns with the
input all-gathered, or by input rows with the partial products reduce-scattered and the bias
added after), biases, batch-norm parameters and statistics. Input layers are held whole (every
process reads the same data): a matrix split by input rows reads the process's features
(``SparseBatch.columns``), one split by output columns reads them all. Initial weights and
dropout masks are the one-process numbers' slices (counter-based streams indexed by the
element's place in the whole layer). The loss an output layer computes is the process's part
(its units); the sum over processes is the loss. At world size 1 none of this runs.
"""

from __future__ import annotations

import collections
import math
from typing import Mapping

import torch
import torch.nn.functional as F

from destiny.config import Activation, LayerConfig, LayerKind, LayerType, NetworkConfig
from destiny.config.shapes import WeightSpec, batch_norm_size, resolve_shapes, weight_specs
from destiny.errors import DataError
from destiny.nn import conv  # Convolutional and Pooling layers
from destiny.nn import footprint  # memory and what a network file can hold, checked before allocating
from destiny.nn import itemitem, recipes  # ZeroDiagonal layers; Normalize, Denoising.Rescale, FrequencyBias
from destiny.nn import variational  # Variational layers (Mult-VAE)
from destiny.nn.activations import ActivationSpec, activate
from destiny.nn.init import layer_weight
from destiny.nn.losses import LossSpec, target_columns
from destiny.nn.noise import Noise
from destiny.nn.penalties import ClipRowGrad, apply_weight_norms, sparseness_penalty  # DeltaNorm, WeightNorm, …
from destiny.ops import functional as ops
from destiny.ops.dense import dense_linear, needs_padding
from destiny.ops.sparse import SparseBatch
from destiny.parallel import (OUTPUT, MatrixShard, World, gather_units, gathered_linear, plan_matrices,
                              reduce_scatter_units)

BN_EPSILON = 1e-5  # cuDNN's CUDNN_BN_MIN_EPSILON, as DSSTNE


class _Values(dict):
    """Layer values by name (what ``forward`` returns), with a model-parallel pass's
    all-gathered and column-restricted values cached beside them."""

    def __init__(self):
        super().__init__()
        self.full: dict[str, object] = {}
        self.shard: dict[str, object] = {}
        self.kl: dict[str, torch.Tensor] = {}  # Variational layers' KL sums of a training pass


class Network(torch.nn.Module):
    """The parameters and computation of a DSSTNE network description.

    dims: every layer's unit dimensions (``destiny.config.shapes.resolve_shapes``).
    seed: initial weights and all training randomness derive from it. initialize=False leaves
    the weights unset, for loading them from a file. world: the processes of a model-parallel
    run (``destiny.parallel.World``; default one process on the CPU); this process then holds
    its shards, created on ``world.device``.
    """

    def __init__(self, config: NetworkConfig, dims: Mapping[str, tuple[int, ...]], *, seed: int = 12134,
                 dtype: torch.dtype = torch.float32, source: str = "<config>", initialize: bool = True,
                 world: World | None = None):
        super().__init__()
        self.world = world if world is not None else World.single()
        for i, layer in enumerate(config.layers):
            if self.world.parallel and layer.type != LayerType.FULLY_CONNECTED:
                from destiny.errors import ConfigError

                raise ConfigError(f"{source}: Layers[{i}] (layer '{layer.name}'): {layer.type.json} layers "
                                  f"do not run model-parallel ({self.world.size} processes) yet; train this "
                                  "network in one process")
        variational.check_world(config, self.world, source)
        self.config = config
        self.dims = {name: tuple(d) for name, d in dims.items()}
        self.specs: list[WeightSpec] = weight_specs(config, self.dims, source)
        self.conv_plans = conv.plan_layers(config, self.dims, self.specs, source)  # conv hook: nn/conv.py
        self.seed = seed
        self.order = config.topological_order()
        self.units = {name: math.prod(d) for name, d in self.dims.items()}
        self.activation = {l.name: ActivationSpec.of(config, l) for l in config.layers if l.kind != LayerKind.INPUT}
        self.loss_spec = {l.name: LossSpec.of(config, l, source) for l in config.output_layers}
        self._spec_of = {(s.input_layer, s.output_layer): s for s in self.specs}
        self.bounds = {name: self.world.bounds(n) for name, n in self.units.items()}  # this rank's units
        data_layers = {l.name for l in config.layers if l.kind == LayerKind.INPUT}
        self.plan: dict[int, MatrixShard] = plan_matrices([s for s in self.specs if not s.convolutional],
                                                          self.world.size, self.world.rank, data_layers)
        self._gathered_readers = collections.Counter(  # hidden layers all-gathered by matrices split by columns
            s.input_layer for s in self.specs if s.index in self.plan and self.plan[s.index].mode == OUTPUT
            and s.input_layer not in data_layers)
        footprint.check_buildable(config, self.dims, self.specs, seed=seed, dtype=dtype, world=self.world, source=source)
        device = self.world.device  # World.single(): the CPU
        self.weights = torch.nn.ParameterDict()
        self.biases = torch.nn.ParameterDict()
        for spec in self.specs:
            layer = config.layer(spec.output_layer)
            if not spec.shared_from:  # shard None: convolutional, held whole
                w = layer_weight(spec, layer.weight_init, self.plan.get(spec.index), seed, dtype, device, initialize)
                self.weights[f"w{spec.index}"] = torch.nn.Parameter(w)
            lo, hi = self.plan[spec.index].bias if spec.index in self.plan else (0, spec.bias_size)
            bias = torch.full((hi - lo,), layer.weight_init.bias, dtype=dtype, device=device)
            self.biases[f"b{spec.index}"] = torch.nn.Parameter(bias)
        self.bn_scale = torch.nn.ParameterDict()
        self.bn_shift = torch.nn.ParameterDict()
        for layer in config.layers:
            size = batch_norm_size(layer, self.dims.get(layer.name))
            if size and self.world.parallel:  # FullyConnected: one per unit, split with the units
                size = self.bounds[layer.name][1] - self.bounds[layer.name][0]
            if size:
                self.bn_scale[layer.name] = torch.nn.Parameter(torch.ones(size, dtype=dtype, device=device))
                self.bn_shift[layer.name] = torch.nn.Parameter(torch.zeros(size, dtype=dtype, device=device))
                self.register_buffer(f"bn_mean_{layer.name}", torch.zeros(size, dtype=dtype, device=device))
                self.register_buffer(f"bn_var_{layer.name}", torch.ones(size, dtype=dtype, device=device))
                self.register_buffer(f"bn_calls_{layer.name}", torch.zeros((), dtype=torch.int64, device=device))
        self.diagonals = itemitem.diagonal_plan(self, source)  # ZeroDiagonal: zero from the start
        itemitem.zero_diagonals(self)
        self.fresh = initialize  # recipes.start_training: FrequencyBias and its warning for new weights only

    # -- construction -------------------------------------------------------------------------

    @classmethod
    def from_config(cls, config: NetworkConfig, dataset_dims: Mapping[str, tuple[int, ...]] | None = None,
                    **kwargs) -> "Network":
        """Build from a config; ``dataset_dims`` gives the dimensions of the datasets of
        "auto" layers, by dataset name."""
        source = kwargs.get("source", "<config>")
        dims = resolve_shapes(config, dataset_dims or {}, source=source)
        return cls(config, dims, **kwargs)

    # -- parameters ---------------------------------------------------------------------------

    def weight(self, spec: WeightSpec) -> torch.Tensor:
        """The (input units, output units) matrix of a spec, following shared weights."""
        if spec.shared_from:
            owner = self._spec_of[spec.shared_from]
            w = self.weights[f"w{owner.index}"]
            return w.t() if spec.transposed else w
        return self.weights[f"w{spec.index}"]

    def bias(self, spec: WeightSpec) -> torch.Tensor:
        return self.biases[f"b{spec.index}"]

    def sharding(self, name: str) -> tuple[int, int] | None:
        """How the parameter or buffer ``name`` (as in ``state_dict``) is split over the
        processes: (axis, whole length along it) — this rank holds ``shard_bounds`` of that
        length — or None if every process holds all of it. At world size 1 the bounds are the
        whole length."""
        kind, _, key = name.partition(".")
        if kind == "weights":
            spec = self.specs[int(key[1:])]
            shard = self.plan.get(spec.index)
            return None if shard is None else (shard.axis, spec.shape[shard.axis])
        if kind == "biases":
            spec = self.specs[int(key[1:])]
            return (0, spec.bias_size) if spec.index in self.plan else None
        for prefix in ("bn_scale.", "bn_shift.", "bn_mean_", "bn_var_"):
            if name.startswith(prefix) and self.config.layer(name[len(prefix):]).type == LayerType.FULLY_CONNECTED:
                return 0, self.units[name[len(prefix):]]
        return None

    def n_parameters(self) -> int:
        """Trainable parameters of the whole network (all processes together)."""
        total = sum(s.parameters for s in self.specs)
        return total + sum(2 * batch_norm_size(l, self.dims.get(l.name)) for l in self.config.layers)

    @property
    def device(self) -> torch.device:
        return next(iter(self.biases.values())).device

    @property
    def dtype(self) -> torch.dtype:
        return next(iter(self.biases.values())).dtype

    def input_layers(self) -> list[LayerConfig]:
        return self.config.input_layers

    def output_layers(self) -> list[LayerConfig]:
        return self.config.output_layers

    # -- forward ------------------------------------------------------------------------------

    def forward(self, inputs: Mapping[str, SparseBatch | torch.Tensor], noise: Noise | None = None,
                stop_at: set[str] | None = None) -> dict[str, torch.Tensor | SparseBatch]:
        """Values of every layer, by name: Input layers their (possibly denoised) batch,
        hidden layers their activations (after dropout when ``noise`` is given, i.e. in
        training), Output layers their pre-activations. ``stop_at``: compute only these
        layers and what they need."""
        values: dict[str, torch.Tensor | SparseBatch] = _Values()
        needed = self._needed(stop_at) if stop_at else None
        for layer in self.order:
            if needed is not None and layer.name not in needed:
                continue
            if layer.kind == LayerKind.INPUT:
                values[layer.name] = self._input(layer, inputs, noise)
            else:
                values[layer.name] = self._layer(layer, values, noise)
        return values

    def noise_streams(self) -> list[tuple[str, str]]:
        """The (purpose, layer) of every random stream a training forward pass may draw (a
        superset: an input layer lists denoising and dropout, whatever its data)."""
        streams = []
        for layer in self.order:
            if layer.kind == LayerKind.INPUT:
                if self.config.denoising.p > 0 and layer.sparse:
                    streams.append(("denoise", layer.name))
                if layer.p_dropout > 0:
                    streams.append(("dropout", layer.name))
            elif layer.kind != LayerKind.OUTPUT and layer.p_dropout > 0:
                streams.append(("dropout", layer.name))
            if layer.variational:  # the sample's ε (nn/variational.py)
                streams.append((variational.STREAM, layer.name))
        return streams

    def _needed(self, targets: set[str]) -> set[str]:
        needed, todo = set(), list(targets)
        while todo:
            name = todo.pop()
            if name not in needed:
                needed.add(name)
                layer = self.config.layer(name)
                todo.extend(layer.sources)
                todo.extend(layer.skips)
        return needed

    def _input(self, layer: LayerConfig, inputs, noise: Noise | None):
        if layer.name not in inputs:
            raise DataError(f"no data for input layer '{layer.name}' (dataset '{layer.dataset}')")
        x = inputs[layer.name]
        if isinstance(x, SparseBatch):
            if x.n_features != self.units[layer.name]:
                raise DataError(f"input layer '{layer.name}' has {self.units[layer.name]} units but its "
                                f"data has {x.n_features} features; the dataset does not fit this network")
            return recipes.sparse_input(self, layer, x, noise)  # Normalize, then Denoising in training
        x = x.to(self.dtype).flatten(1)
        if x.shape[1] != self.units[layer.name]:
            raise DataError(f"input layer '{layer.name}' has {self.units[layer.name]} units but its data "
                            f"has {x.shape[1]} values per example")
        if noise is not None and layer.p_dropout > 0:
            x = ops.dropout(x, layer.p_dropout, noise.seed_for("dropout", layer.name))
        return x

    def _layer(self, layer: LayerConfig, values, noise: Noise | None) -> torch.Tensor:
        if layer.type != LayerType.FULLY_CONNECTED:  # conv hook: Convolutional and Pooling, nn/conv.py
            return conv.layer_forward(self, layer, values, noise)
        z = self.preactivation(layer, values)
        if layer.batch_norm:
            z = self._batch_norm(layer, z, training=noise is not None)
        if layer.delta_norm > 0 and noise is not None:
            z = ClipRowGrad.apply(z, layer.delta_norm, self.world)
        if layer.kind == LayerKind.OUTPUT:
            return z
        if layer.variational:  # z is (μ, logvar): μ + ε·σ in training, μ in evaluation
            a = variational.sample(layer, z, noise, values.kl)
        else:
            a = self._activate(layer.name, z)
        if noise is not None and layer.p_dropout > 0:
            a = self._dropout(layer, a, noise)
        return a

    def preactivation(self, layer: LayerConfig, values) -> torch.Tensor:
        """Σ over the sources of source × weight + bias, plus the skips: (batch, units) of a
        FullyConnected layer; over N processes this rank's units (the module docstring)."""
        if self.world.parallel:
            return self._preactivation_shard(layer, values)
        z = None
        for src in layer.sources:
            spec = self._spec_of[(src, layer.name)]
            x, w = self._source_value(src, values), self.weight(spec)
            term = ops.sparse_linear(x, w, self.bias(spec)) if isinstance(x, SparseBatch) else \
                dense_linear(x, w, self.bias(spec))
            z = term if z is None else z + term
        for skip in layer.skips:
            z = z + self._source_value(skip, values)
        return z

    def _preactivation_shard(self, layer: LayerConfig, values) -> torch.Tensor:
        z = None
        for src in layer.sources:
            spec = self._spec_of[(src, layer.name)]
            w, b = self.weight(spec), self.bias(spec)
            if self.plan[spec.index].mode == OUTPUT and self._overlaps(src, spec):  # the one reader of src's gather
                x = self.shard_value(src, values)
                term = gathered_linear(x, w, b, self.world, spec.shape[0])
            elif self.plan[spec.index].mode == OUTPUT:  # all the input × my columns
                x = self.full_value(src, values)
                term = ops.sparse_linear(x, w, b) if isinstance(x, SparseBatch) else dense_linear(x, w, b)
            else:  # my input units × my rows: a partial sum of every unit, reduce-scattered
                x = self.shard_value(src, values)
                partial = ops.sparse_linear(x, w) if isinstance(x, SparseBatch) else dense_linear(x, w)  # all units
                term = reduce_scatter_units(partial, self.world, spec.shape[1]) + b
            z = term if z is None else z + term
        for skip in layer.skips:
            z = z + self.shard_value(skip, values)
        return z

    def _overlaps(self, src: str, spec: WeightSpec) -> bool:
        """Whether this matrix (split by output columns) gathers ``src`` itself, overlapping the
        backward's exchange with its weight gradient (``parallel.gathered_linear``): src is a
        hidden layer whose gathered activations feed only this matrix, and the product is a
        plain one (no autocast, no padded widths: ``ops.dense``)."""
        if self._gathered_readers.get(src) != 1 or spec.shared_from:
            return False
        w = self.weights[f"w{spec.index}"]
        return not torch.is_autocast_enabled(w.device.type) and not needs_padding(w, w)  # x: on w's device

    def _activate(self, name: str, z: torch.Tensor) -> torch.Tensor:
        act = self.activation[name]
        if self.world.parallel and act.kind == Activation.SOFTMAX:  # the whole row's sum
            return ops.sharded_softmax(z, self.world)
        return activate(z, act)

    def _source_value(self, name: str, values):
        """What a layer reads from ``name``: its activations (an Output layer's values are its
        pre-activations, kept for the loss, so a layer reading it activates them)."""
        value = values[name]
        layer = self.config.layer(name)
        if layer.kind == LayerKind.OUTPUT:
            value = self._activate(name, value)
        return value

    def full_value(self, name: str, values):
        """What a matrix split by output columns reads from layer ``name``: all its units —
        an Input layer's batch as it is, another layer's activations all-gathered (once a pass,
        cached in ``values``). At world size 1: its activations."""
        if not self.world.parallel:
            return self._source_value(name, values)
        cache = getattr(values, "full", {})
        if name not in cache:
            value = self._source_value(name, values)
            if self.config.layer(name).kind != LayerKind.INPUT:
                value = gather_units(value, self.world, self.units[name])
            cache[name] = value
        return cache[name]

    def shard_value(self, name: str, values):
        """What a matrix split by input rows (or a skip) reads from layer ``name``: this rank's
        units — an Input layer's batch restricted to them (``SparseBatch.columns``, or a column
        slice), another layer's activations as they are. At world size 1: its activations."""
        if not self.world.parallel:
            return self._source_value(name, values)
        cache = getattr(values, "shard", {})
        if name not in cache:
            value = self._source_value(name, values)
            if self.config.layer(name).kind == LayerKind.INPUT:
                lo, hi = self.bounds[name]
                value = value.columns(lo, hi) if isinstance(value, SparseBatch) else value[:, lo:hi]
            cache[name] = value
        return cache[name]

    def _batch_norm(self, layer: LayerConfig, z: torch.Tensor, training: bool) -> torch.Tensor:
        calls = getattr(self, f"bn_calls_{layer.name}")
        momentum = 1.0 / (1.0 + float(calls)) if training else 0.0  # cumulative average, as DSSTNE
        out = F.batch_norm(z, getattr(self, f"bn_mean_{layer.name}"), getattr(self, f"bn_var_{layer.name}"),
                           self.bn_scale[layer.name], self.bn_shift[layer.name], training=training,
                           momentum=momentum, eps=BN_EPSILON)
        if training:
            calls += 1
        return out

    def _dropout(self, layer: LayerConfig, a: torch.Tensor, noise: Noise) -> torch.Tensor:
        seed = noise.seed_for("dropout", layer.name)
        act = self.activation[layer.name]
        # a shard draws its elements' numbers of the whole layer's mask
        shard = (self.bounds[layer.name][0], self.units[layer.name]) if self.world.parallel else (0, None)
        if act.kind in (Activation.ELU, Activation.SELU):
            lam = act.lam if act.kind == Activation.SELU else 1.0
            return ops.alpha_dropout(a, layer.p_dropout, seed, -lam * act.alpha, *shard)
        return ops.dropout(a, layer.p_dropout, seed, *shard)

    # -- losses and predictions ---------------------------------------------------------------

    def loss(self, inputs, targets: Mapping[str, SparseBatch | torch.Tensor], noise: Noise | None = None,
             grad_scale: torch.Tensor | None = None,
             updates: int | torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Summed loss over the batch and its parts: each output layer's error, the
        sparseness penalty and, in training, the KL term of Variational layers ("KL", its β
        annealed by ``updates``, the optimizer's updates so far: an int or a 0-d int64 device
        tensor; None: the full Beta; ``nn.variational``). Differentiate ``total / batch`` for
        DSSTNE's gradient, or pass grad_scale, a 0-d tensor s = 1/batch, and call
        ``total.backward(s)``: fused losses then fold s into their gradient
        (``ops.functional.output_loss``). Over N processes: this
        rank's part of them (its output units, its hidden units' penalties; targets are given
        whole); the loss is the sum over ranks (``destiny.parallel.sum_float``)."""
        values = self.forward(inputs, noise)
        parts: dict[str, torch.Tensor] = {}
        for layer in self.output_layers():
            if layer.name not in targets:
                raise DataError(f"no targets for output layer '{layer.name}' (dataset '{layer.dataset}')")
            target = targets[layer.name]
            n = target.n_features if isinstance(target, SparseBatch) else math.prod(target.shape[1:])
            if n != self.units[layer.name]:
                raise DataError(f"output layer '{layer.name}' has {self.units[layer.name]} units but its "
                                f"targets have {n}; the dataset does not fit this network")
            if self.world.parallel:
                target = target_columns(target, self.loss_spec[layer.name], *self.bounds[layer.name], self.dtype)
            parts[layer.name] = ops.output_loss(values[layer.name], target, self.loss_spec[layer.name],
                                                grad_scale=grad_scale, world=self.world).sum()
        penalty = sparseness_penalty(self.config, values) if noise is not None else None
        if penalty is not None:
            parts["SparsenessPenalty"] = penalty
        kl = variational.kl_part(self.config, values.kl, updates) if noise is not None else None
        if kl is not None:
            parts[variational.PART] = kl
        total = torch.stack(list(parts.values())).sum()
        return total, parts

    @torch.no_grad()
    def predict(self, inputs, layers: list[str] | None = None) -> dict[str, torch.Tensor]:
        """Activations of the output layers (or of ``layers``) for a batch, in evaluation mode.

        inputs: {input layer: SparseBatch or tensor}, or anything ``destiny.predict.api.as_batch``
        takes (a SparseDataset, a scipy sparse matrix, an array, a mapping by DataSet name)."""
        from destiny.predict.api import as_batch

        inputs = as_batch(self, inputs)
        wanted = layers or [layer.name for layer in self.output_layers()]
        values = self.forward(inputs, None, stop_at=set(wanted))
        out = {}
        for name in wanted:
            value = values[name]
            layer = self.config.layer(name)
            if layer.kind == LayerKind.OUTPUT:
                value = self._activate(name, value)
            if self.world.parallel and layer.kind != LayerKind.INPUT:  # all the units, on every rank
                value = gather_units(value, self.world, self.units[name])
            out[name] = value
        return out

    def recommend(self, x, k: int = 10, *, filter_seen: bool = True, **options):
        """The k best items of the output layer for each example of ``x`` (scores, items),
        with the example's own items removed when ``filter_seen``; see
        ``destiny.predict.api.recommend_batch`` for the options."""
        from destiny.predict.api import recommend_batch

        return recommend_batch(self, x, k, filter_seen=filter_seen, **options)

    def encode(self, x, layer: str | None = None, *, batch_size: int = 1024):
        """(examples, units) float32 numpy activations of ``layer`` (default: the last Hidden
        layer) for every example of ``x`` (what ``predict`` takes), in evaluation mode: the
        embeddings DSSTNE's encoder writes; see ``destiny.predict.encode``."""
        import numpy as np

        from destiny.predict.api import as_datasets
        from destiny.predict.encode import default_layer, iter_encodings

        layer = layer or default_layer(self)
        parts = [values for _, values in iter_encodings(self, as_datasets(self, x), layer, batch_size=batch_size)]
        return np.concatenate(parts) if parts else np.zeros((0, self.units[layer]), np.float32)

    def save(self, path, info: dict | None = None) -> str:
        """Write the network to ``path`` in DSSTNE's network file layout (atomically; readable by
        DSSTNE and ``destiny predict``); returns its fingerprint. See ``destiny.train.checkpoint``."""
        from destiny.train.checkpoint import save_network

        return save_network(self, path, info)

    @classmethod
    def load(cls, path, device: torch.device | str | None = "cpu") -> "Network":
        """Read a network file written by Destiny or DSSTNE onto ``device``."""
        from destiny.train.checkpoint import load_network

        return load_network(path, device=device)

    def start_training(self, datasets: Mapping[str, object]) -> bool:
        """Called as training starts (``Trainer.fit``): ZeroDiagonal diagonals zeroed; for a
        freshly initialised network, FrequencyBias biases and ClosedForm matrices from
        ``datasets`` (by DataSet name) and a warning about wide Sigmoid outputs at bias 0
        (``nn.recipes.start_training``). True when a closed form was solved (epoch 0's model)."""
        return recipes.start_training(self, datasets)

    def init_biases_from(self, datasets: Mapping[str, object]) -> list[str]:
        """Set the biases of the Output layers with ``WeightInit.FrequencyBias`` from their
        target datasets' column counts now (``nn.recipes.init_frequency_biases``)."""
        return recipes.init_frequency_biases(self, datasets)

    def apply_weight_norms(self) -> None:
        """ZeroDiagonal diagonals back to zero, then DSSTNE's WeightNorm (``nn.penalties``)."""
        itemitem.zero_diagonals(self)
        apply_weight_norms(self)
