"""Networks to and from files in DSSTNE's layout, with Destiny's training state beside them.

A checkpoint is an ordinary network file that DSSTNE can read; Destiny adds the optimizer's
state (``extras``: ``optimizer.<parameter>.<state>``) and the counters needed to resume
exactly (``info``: epoch, steps, seed, optimizer, hyperparameters, batch size, fingerprint).
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import torch

from destiny.errors import NetworkFileError
from destiny.io.network_file import BatchNormArrays, NetworkFile, WeightArrays, read_network, write_network
from destiny.nn.network import Network
from destiny.train.fingerprint import fingerprint_file


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().to("cpu", torch.float32).contiguous().numpy()


def network_to_file(network: Network, info: dict | None = None, extras: dict | None = None) -> NetworkFile:
    """A NetworkFile holding the network's weights (float32), plus Destiny's info and extras."""
    weights = []
    for spec in network.specs:
        layer = network.config.layer(spec.output_layer)
        own = None if spec.shared_from else _numpy(network.weights[f"w{spec.index}"])
        weights.append(WeightArrays(spec.input_layer, spec.output_layer, own, _numpy(network.bias(spec)),
                                    spec.shared_from, spec.transposed, False, layer.weight_norm))
    batch_norm = {}
    for name in network.bn_scale:
        batch_norm[name] = BatchNormArrays(_numpy(network.bn_scale[name]), _numpy(network.bn_shift[name]),
                                           _numpy(getattr(network, f"bn_mean_{name}")),
                                           _numpy(getattr(network, f"bn_var_{name}")))
    nf = NetworkFile(network.config, dict(network.dims), weights, batch_norm,
                     extras=dict(extras or {}), info={"seed": network.seed, **(info or {})})
    nf.info["fingerprint"] = fingerprint_file(nf)
    return nf


def network_from_file(nf: NetworkFile, *, dtype: torch.dtype = torch.float32, source: str = "<file>") -> Network:
    """A Network with the file's config and weights."""
    seed = int(nf.info.get("seed", 12134))
    network = Network(nf.config, nf.dims, seed=seed, dtype=dtype, source=source, initialize=False)
    with torch.no_grad():
        for spec, arrays in zip(network.specs, nf.weights):
            if arrays.weights is not None:
                network.weights[f"w{spec.index}"].copy_(torch.from_numpy(np.asarray(arrays.weights)))
            network.bias(spec).copy_(torch.from_numpy(np.asarray(arrays.bias)))
        for name, bn in nf.batch_norm.items():
            network.bn_scale[name].copy_(torch.from_numpy(bn.scale))
            network.bn_shift[name].copy_(torch.from_numpy(bn.bias))
            getattr(network, f"bn_mean_{name}").copy_(torch.from_numpy(bn.running_mean))
            getattr(network, f"bn_var_{name}").copy_(torch.from_numpy(bn.running_variance))
    return network


def save_network(network: Network, path: str | os.PathLike, info: dict | None = None,
                 extras: dict | None = None) -> str:
    """Write the network atomically; returns its fingerprint."""
    nf = network_to_file(network, info, extras)
    write_network(path, nf)
    return nf.info["fingerprint"]


def load_network(path: str | os.PathLike, *, device: torch.device | str = "cpu",
                 dtype: torch.dtype = torch.float32) -> Network:
    """Read a network file (DSSTNE's or Destiny's) into a Network on ``device``."""
    nf = read_network(path)
    return network_from_file(nf, dtype=dtype, source=os.fspath(path)).to(device)


def trainer_state(trainer) -> tuple[dict, dict]:
    """(info, extras) that let ``restore_trainer`` continue a run exactly."""
    opt = trainer.optimizer
    extras = {f"optimizer.{k}": v.detach().cpu().numpy() for k, v in opt.state_dict().items() if k != "steps"}
    info = {"epoch": trainer.epoch, "steps": opt.steps, "optimizer": opt.kind.value, "seed": trainer.seed,
            "batch_size": trainer.batch_size, "shuffle": int(trainer.shuffle)}
    for field in dataclasses.fields(opt.hyper):
        info[f"hyper.{field.name}"] = float(getattr(opt.hyper, field.name))
    return info, extras


def restore_trainer(trainer, nf: NetworkFile, path: str = "<checkpoint>") -> None:
    """Put a freshly built Trainer (on the checkpoint's network) back where the run stopped."""
    try:
        state = {k[len("optimizer."):]: torch.from_numpy(np.asarray(v)) for k, v in nf.extras.items()
                 if k.startswith("optimizer.")}
        state["steps"] = torch.tensor(int(nf.info["steps"]))
        trainer.optimizer.load_state_dict({k: v.to(trainer.device) for k, v in state.items()})
        trainer.epoch = int(nf.info["epoch"])
    except KeyError as exc:
        raise NetworkFileError(f"{path}: not a Destiny checkpoint with optimizer state (missing {exc}); "
                               "resume needs a checkpoint written by `destiny train --checkpoint-every`") from None
