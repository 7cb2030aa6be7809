"""What a network needs in memory, estimated from its config before anything is allocated.

A hidden layer of 10^12 units, or an "auto" layer over a dataset 4·10^9 wide, must end in a
ResourceError with the numbers and the layer to change, not in an allocator's traceback (or
in minutes of initialising weights that cannot be trained). The estimate is coarse on purpose
(right within a factor of two, as ``train.memory``'s): the parameters at the network's dtype;
to train, also their gradients, the optimizer's state (0–2 arrays a parameter) and a
minibatch's activations (four values an example of every hidden unit, three of every output
unit). Model parallel: each of N processes holds about 1/N of it.

``check_network``: building or loading a network, against the memory of the device it is
built on; ``Network`` calls it through ``check_buildable``, with ``io.storable``'s check that a
network file can hold the network. ``check_training``: before building a network to train,
against the training device (``destiny train``, ``Recommender.fit``).
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import torch

from destiny.config import LayerKind, NetworkConfig
from destiny.config.shapes import WeightSpec, batch_norm_size, resolve_shapes, weight_specs
from destiny.data.budget import require_memory

HIDDEN_VALUES = 4  # values kept per hidden unit and example during a training step
OUTPUT_VALUES = 3  # per output unit and example
# arrays of state an optimizer keeps beside each parameter
SMALL = 256 << 20  # bytes every machine has: not checked (no /proc or driver query per small network)


def parameter_count(config: NetworkConfig, dims: Mapping[str, tuple[int, ...]], specs: Sequence[WeightSpec]) -> int:
    """Trainable parameters of the whole network: weights, biases, batch-norm scales and shifts."""
    return sum(s.parameters for s in specs) + sum(2 * batch_norm_size(l, dims.get(l.name)) for l in config.layers)


def activation_values(config: NetworkConfig, dims: Mapping[str, tuple[int, ...]]) -> int:
    """Values one example of a minibatch keeps during a training step."""
    total = 0
    for layer in config.layers:
        if layer.kind != LayerKind.INPUT:
            per_unit = OUTPUT_VALUES if layer.kind == LayerKind.OUTPUT else HIDDEN_VALUES
            total += per_unit * math.prod(dims[layer.name])
    return total


def _culprit(config: NetworkConfig, dims: Mapping[str, tuple[int, ...]], specs: Sequence[WeightSpec]) -> str:
    """The largest weight matrix and the layer whose size makes it large, for the message."""
    own = [s for s in specs if not s.shared_from]
    if not own:
        return ""
    spec = max(own, key=lambda s: math.prod(s.shape))
    name = max((spec.input_layer, spec.output_layer), key=lambda n: math.prod(dims[n]))
    index = next(i for i, layer in enumerate(config.layers) if layer.name == name)
    layer = config.layers[index]
    units = math.prod(dims[name])
    why = (f"the width of dataset '{layer.dataset}', as its N is \"auto\"" if layer.n == "auto"
           else f"Layers[{index}].N")
    shape = " × ".join(f"{d:,}" for d in spec.shape)
    return (f"; its largest matrix, {spec.input_layer} → {spec.output_layer}, is {shape}: layer '{name}' has "
            f"{units:,} units ({why})")


def check_network(config: NetworkConfig, dims: Mapping[str, tuple[int, ...]], specs: Sequence[WeightSpec], *,
                  dtype: torch.dtype = torch.float32, device=None, world_size: int = 1,
                  source: str = "<config>") -> None:
    """ResourceError when the network's parameters would not fit in the free memory of
    ``device`` (this process's share of them, model parallel)."""
    itemsize = torch.empty((), dtype=dtype).element_size()
    n = parameter_count(config, dims, specs)
    nbytes = n * itemsize // max(1, world_size)
    if nbytes < SMALL:
        return
    require_memory(nbytes, f"{source}: the network ({n:,} parameters{_culprit(config, dims, specs)})", device,
                   "make that layer smaller, or split the network over several GPUs (torchrun --nproc-per-node N)")


def check_buildable(config: NetworkConfig, dims: Mapping[str, tuple[int, ...]], specs: Sequence[WeightSpec], *,
                    seed, dtype: torch.dtype, world, source: str) -> None:
    """What ``Network`` checks before it allocates: its parameters fit the free memory of the
    device (``check_network``), then a network file can hold it (``io.storable``)."""
    from destiny.io.storable import check_storable

    check_network(config, dims, specs, dtype=dtype, device=world.device, world_size=world.size, source=source)
    check_storable(config, dims, specs, seed, source)


def check_training(config: NetworkConfig, dataset_dims: Mapping[str, Sequence[int]], *, optimizer: str,
                   batch_size: int, device=None, world_size: int = 1, dtype: torch.dtype = torch.float32,
                   source: str = "<config>") -> None:
    """ResourceError when training the network of ``config`` (its "auto" layers as wide as
    ``dataset_dims``) with ``optimizer`` and minibatches of ``batch_size`` would not fit in
    the free memory of ``device``: parameters, gradients, optimizer state and activations."""
    dims = resolve_shapes(config, dataset_dims, source=source)
    specs = weight_specs(config, dims, source)
    itemsize = torch.empty((), dtype=dtype).element_size()
    n = parameter_count(config, dims, specs)
    from destiny.train.optimizers import state_slots

    slots = state_slots(optimizer)
    activations = batch_size * activation_values(config, dims)
    nbytes = ((2 + slots) * n + activations) * itemsize // max(1, world_size)
    if nbytes < SMALL:
        return
    what = (f"{source}: training the network ({n:,} parameters{_culprit(config, dims, specs)}) with their gradients, "
            f"the optimizer's state and minibatches of {batch_size:,}")
    require_memory(nbytes, what, device, "make that layer smaller, lower the batch size (--batch-size), or split "
                   "the network over several GPUs (torchrun --nproc-per-node N)")
