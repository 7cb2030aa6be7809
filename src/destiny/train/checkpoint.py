"""Networks to and from files in DSSTNE's layout, with Destiny's training state beside them.

A checkpoint is an ordinary network file that DSSTNE can read; Destiny adds the optimizer's
state (``extras``: ``optimizer.<parameter>.<state>``) and the counters needed to resume
exactly (``info``: epoch, steps, seed, optimizer, hyperparameters, batch size, fingerprint).

Model parallel: the file is the same ordinary, whole network. Saving gathers every shard to
rank 0 (one shard at a time through rank 0's device into its host memory), which writes the
file atomically; loading on N processes reads the file on each and keeps each process's slice
(``Network.sharding``), so a file saved from N processes loads on 1 and vice versa.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import torch

from destiny.errors import NetworkFileError
from destiny.io.network_file import BatchNormArrays, NetworkFile, WeightArrays, read_network, write_network
from destiny.nn.network import Network
from destiny.parallel import World, broadcast_object, gather_to_root
from destiny.train.fingerprint import fingerprint_file


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().to("cpu", torch.float32).contiguous().numpy()


def whole(network: Network, name: str, tensor: torch.Tensor, keep_dtype: bool = False) -> np.ndarray | None:
    """The whole array of parameter/buffer ``name`` (as in ``state_dict``; also an optimizer
    state of that parameter) from this rank's ``tensor``, float32 (keep_dtype: the tensor's
    dtype): gathered to rank 0 under model parallelism (every rank must call it, in the same
    order; None on ranks > 0)."""
    layout = network.sharding(name)
    if not network.world.parallel or layout is None:
        if not network.world.is_root:
            return None
        return tensor.detach().cpu().numpy().copy() if keep_dtype else _numpy(tensor)
    dtype = torch.empty(0, dtype=tensor.dtype).numpy().dtype if keep_dtype else np.float32
    return gather_to_root(tensor, network.world, *layout, dtype=dtype)


def shard(network: Network, name: str, array) -> torch.Tensor:
    """This rank's part of the whole array of parameter/buffer ``name`` (``Network.sharding``)."""
    array = np.asarray(array)
    layout = network.sharding(name)
    if layout is not None and network.world.parallel:
        axis, n = layout
        lo, hi = network.world.bounds(n)
        array = array[(slice(None),) * axis + (slice(lo, hi),)]
    return torch.from_numpy(np.ascontiguousarray(array))


def network_to_file(network: Network, info: dict | None = None, extras: dict | None = None) -> NetworkFile | None:
    """A NetworkFile holding the network's weights (float32), plus Destiny's info and extras.
    Model parallel: every rank calls it; rank 0 gets the whole network, the others None."""
    weights = []
    for spec in network.specs:
        layer = network.config.layer(spec.output_layer)
        own = None if spec.shared_from else whole(network, f"weights.w{spec.index}", network.weights[f"w{spec.index}"])
        weights.append(WeightArrays(spec.input_layer, spec.output_layer, own,
                                    whole(network, f"biases.b{spec.index}", network.bias(spec)),
                                    spec.shared_from, spec.transposed, False, layer.weight_norm))
    batch_norm = {}
    for name in network.bn_scale:
        arrays = [whole(network, key, tensor) for key, tensor in (
            (f"bn_scale.{name}", network.bn_scale[name]), (f"bn_shift.{name}", network.bn_shift[name]),
            (f"bn_mean_{name}", getattr(network, f"bn_mean_{name}")),
            (f"bn_var_{name}", getattr(network, f"bn_var_{name}")))]
        batch_norm[name] = BatchNormArrays(*arrays)
    if not network.world.is_root:
        return None
    nf = NetworkFile(network.config, dict(network.dims), weights, batch_norm,
                     extras=dict(extras or {}), info={"seed": network.seed, **(info or {})})
    nf.info["fingerprint"] = fingerprint_file(nf)
    return nf


def check_finite(nf: NetworkFile, source: str = "<file>") -> None:
    """NetworkFileError naming the layer when a matrix, a bias or a batch normalisation of the
    file holds NaN or infinite values: every score computed from it would be NaN (recommending
    nothing), so such a network is not used at all."""
    arrays = [(f"the weights {w.input_layer} → {w.output_layer}", w.output_layer, w.weights) for w in nf.weights]
    arrays += [(f"the biases of {w.input_layer} → {w.output_layer}", w.output_layer, w.bias) for w in nf.weights]
    arrays += [(f"the batch normalisation ({field.name})", name, getattr(bn, field.name))
               for name, bn in nf.batch_norm.items() for field in dataclasses.fields(bn)]
    for what, layer, array in arrays:
        if array is None:
            continue
        bad = np.size(array) - int(np.count_nonzero(np.isfinite(array)))
        if bad:
            raise NetworkFileError(f"{source}: layer '{layer}' has NaN or infinite values in {what} ({bad:,} of "
                                   f"{np.size(array):,}): the run that wrote it diverged, or the file is damaged; "
                                   "retrain it (destiny train --nan-check 1 stops at the first NaN) or use an "
                                   "earlier checkpoint")


def network_from_file(nf: NetworkFile, *, dtype: torch.dtype = torch.float32, source: str = "<file>",
                      world: World | None = None) -> Network:
    """A Network with the file's config and weights; with a model-parallel ``world``, this
    rank's slices of them (on the world's device). NetworkFileError if any is NaN or infinite
    (``check_finite``)."""
    check_finite(nf, source)
    seed = int(nf.info.get("seed", 12134))
    network = Network(nf.config, nf.dims, seed=seed, dtype=dtype, source=source, initialize=False, world=world)
    with torch.no_grad():
        for spec, arrays in zip(network.specs, nf.weights):
            if arrays.weights is not None:
                network.weights[f"w{spec.index}"].copy_(shard(network, f"weights.w{spec.index}", arrays.weights))
            network.bias(spec).copy_(shard(network, f"biases.b{spec.index}", arrays.bias))
        for name, bn in nf.batch_norm.items():
            network.bn_scale[name].copy_(shard(network, f"bn_scale.{name}", bn.scale))
            network.bn_shift[name].copy_(shard(network, f"bn_shift.{name}", bn.bias))
            getattr(network, f"bn_mean_{name}").copy_(shard(network, f"bn_mean_{name}", bn.running_mean))
            getattr(network, f"bn_var_{name}").copy_(shard(network, f"bn_var_{name}", bn.running_variance))
    return network


def save_network(network: Network, path: str | os.PathLike, info: dict | None = None,
                 extras: dict | None = None) -> str:
    """Write the network atomically; returns its fingerprint. Model parallel: every rank
    calls it; rank 0 writes the whole network and every rank returns the fingerprint once the
    file is written."""
    nf = network_to_file(network, info, extras)
    if nf is not None:
        write_network(path, nf)
    return broadcast_object(nf.info["fingerprint"] if nf is not None else None, network.world)


def load_network(path: str | os.PathLike, *, device: torch.device | str | None = "cpu",
                 dtype: torch.dtype = torch.float32, world: World | None = None) -> Network:
    """Read a network file (DSSTNE's or Destiny's) into a Network on ``device``; with a
    model-parallel ``world``, this rank's shards on the world's device."""
    nf = read_network(path)
    network = network_from_file(nf, dtype=dtype, source=os.fspath(path), world=world)
    if world is not None and world.parallel:
        return network.to(world.device)
    return network.to(device)


def trainer_state(trainer, optimizer_state: bool = True) -> tuple[dict, dict]:
    """(info, extras) that let ``restore_trainer`` continue a run exactly (optimizer_state
    False: info only, extras empty). Model parallel: every rank calls it; the optimizer's state
    is gathered whole to rank 0 (extras empty on the other ranks)."""
    opt = trainer.optimizer
    network = trainer.network
    extras = {}
    for k, v in opt.state_dict().items():
        if k != "steps" and optimizer_state:
            array = whole(network, k.rsplit(".", 1)[0], v, keep_dtype=True)
            if array is not None:
                extras[f"optimizer.{k}"] = array
    info = {"epoch": trainer.epoch, "steps": opt.steps, "optimizer": opt.kind.value, "seed": trainer.seed,
            "batch_size": trainer.batch_size, "shuffle": int(trainer.shuffle)}
    for field in dataclasses.fields(opt.hyper):
        info[f"hyper.{field.name}"] = float(getattr(opt.hyper, field.name))
    for i, name in _batch_norm_layers(network):  # the running averages' call counts (their momentum)
        info[f"bn_calls.{i}"] = int(getattr(network, f"bn_calls_{name}"))
    batches = getattr(trainer, "batches_done", 0)
    if batches:  # mid-epoch: where in epoch + 1 the run is, and the loss summed so far there
        info["batch"] = batches
        info["loss_sum"] = float(trainer._runner[1].loss_sum)  # this process's part (model parallel)
    if getattr(trainer, "brake", None) is not None:
        info.update(trainer.brake.state())
    if getattr(trainer, "data_fingerprint", None):  # what it trains on: --resume refuses other data
        info["data"] = trainer.data_fingerprint
    return info, extras


def _batch_norm_layers(network) -> list[tuple[int, str]]:
    """(position in the config, name) of each batch-normalised layer."""
    return [(i, layer.name) for i, layer in enumerate(network.config.layers) if layer.name in network.bn_scale]


def restore_trainer(trainer, nf: NetworkFile, path: str = "<checkpoint>") -> None:
    """Put a freshly built Trainer (on the checkpoint's network) back where the run stopped."""
    try:
        network = trainer.network  # this rank's slice of each state (model parallel)
        state = {k[len("optimizer."):]: shard(network, k[len("optimizer."):].rsplit(".", 1)[0], v)
                 for k, v in nf.extras.items() if k.startswith("optimizer.")}
        state["steps"] = torch.tensor(int(nf.info["steps"]))
        trainer.optimizer.load_state_dict({k: v.to(trainer.device) for k, v in state.items()})
        trainer.epoch = int(nf.info["epoch"])
        trainer.resume_batch = int(nf.info.get("batch", 0))  # mid-epoch: batches of the next epoch done
        trainer.resume_loss = float(nf.info.get("loss_sum", 0.0))
        trainer.resumed_data = (path, nf.info.get("data"))  # fit checks its data against it
        if getattr(trainer, "brake", None) is not None:
            trainer.brake.load(nf.info)
        for i, name in _batch_norm_layers(network):
            if f"bn_calls.{i}" in nf.info:  # absent from checkpoints written before they were kept
                getattr(network, f"bn_calls_{name}").fill_(int(nf.info[f"bn_calls.{i}"]))
    except KeyError as exc:
        raise NetworkFileError(f"{path}: not a Destiny checkpoint with optimizer state (missing {exc}); "
                               "resume needs a checkpoint written by `destiny train --checkpoint-every`") from None
