"""Weights saved by PyTorch (a ``state_dict`` in a .pt file, or a .safetensors file) plus the
DSSTNE JSON that describes the network → a network file.

The JSON gives the layers, their activations and widths; the file gives the numbers. Keys are
grouped by module (``fc1.weight`` and ``fc1.bias`` are the group ``fc1``): a matrix group has a
2-D (``nn.Linear``) or 3- to 5-D (``nn.Conv*d``) ``weight`` and a ``bias``; a batch-norm group has
``weight``, ``bias``, ``running_mean`` and ``running_var``. Groups are matched to the config's
matrices (each layer's sources, layers in JSON order: DSSTNE's order) and to its
BatchNormalization layers by name first — the group named after the layer (``H1.weight``, or
``model.H1.weight``), ``<layer>.<source>`` for a layer of several sources, ``<layer>.bn`` for its
normalisation — then the remaining ones in order. A state dict of ``destiny.interop.to_torch``
(``linears.w<j>.weight``) is matched matrix by matrix.

Layouts: ``nn.Linear.weight`` is (out, in), DSSTNE's matrix (in, out): it is transposed on the
way in; ``transposed=True`` reads (in, out) matrices (Keras, Flax, DSSTNE) as they are. A
matrix whose shape is the transpose of what the layer needs is refused with that explanation.
"""

from __future__ import annotations

import os
import pickle
from collections import OrderedDict
from typing import Mapping

import numpy as np

from destiny.config import LayerKind, LayerType, NetworkConfig
from destiny.errors import ModelImportError, UsageError
from destiny.io.network_file import BatchNormArrays, NetworkFile, WeightArrays

_BN = ("running_mean", "running_var")
_KNOWN = {"weight", "bias", "running_mean", "running_var", "num_batches_tracked"}
_WRAPPERS = ("state_dict", "model_state_dict", "model", "module", "net", "network")


def load_tensors(path: str, kind: str) -> "OrderedDict[str, np.ndarray]":
    """The float tensors of a .pt state dict or a .safetensors file, by key, in file order."""
    if kind == "safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise UsageError(f"{path} is a safetensors file: reading it needs the safetensors package "
                             "(pip install safetensors)") from None
        try:
            tensors = load_file(path)
        except Exception as exc:  # noqa: BLE001 - the library's own SafetensorError
            raise ModelImportError(f"{path}: not a readable safetensors file ({exc})") from None
    else:
        tensors = _torch_load(path)
    out: OrderedDict[str, np.ndarray] = OrderedDict()
    for key, value in tensors.items():
        if hasattr(value, "is_floating_point") and value.is_floating_point():
            out[str(key)] = value.detach().float().cpu().numpy()
    if not out:
        raise ModelImportError(f"{path}: holds no float tensors; save the model's weights with "
                               "torch.save(model.state_dict(), path) or safetensors' save_file")
    return out


def _torch_load(path: str) -> Mapping:
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise ModelImportError(f"{path}: holds Python objects besides tensors (a whole pickled model?), which "
                               "Destiny does not unpickle (torch.load's weights_only); save model.state_dict() "
                               "instead") from None
    except Exception as exc:  # noqa: BLE001 - a damaged zip, a foreign pickle
        raise ModelImportError(f"{path}: not a PyTorch state dict ({type(exc).__name__}: "
                               f"{str(exc).splitlines()[0] if str(exc) else ''}); save one with "
                               "torch.save(model.state_dict(), path)") from None
    if isinstance(state, Mapping) and not any(hasattr(v, "is_floating_point") for v in state.values()):
        for key in _WRAPPERS:  # a training checkpoint: {"state_dict": {...}, "epoch": ...}
            if isinstance(state.get(key), Mapping):
                return state[key]
    if not isinstance(state, Mapping):
        raise ModelImportError(f"{path}: holds a {type(state).__name__}, not a state dict; save "
                               "model.state_dict() instead")
    return state


def _groups(tensors: Mapping[str, np.ndarray], source: str) -> "OrderedDict[str, dict]":
    groups: OrderedDict[str, dict] = OrderedDict()
    for key, value in tensors.items():
        prefix, _, param = key.rpartition(".")
        if param not in _KNOWN:
            raise ModelImportError(f"{source}: key '{key}' is not a weight, bias or batch-norm statistic (its last "
                                   "part is not weight, bias, running_mean or running_var); rename it after "
                                   "PyTorch's modules or remove it from the file")
        if param != "num_batches_tracked":
            groups.setdefault(prefix, {})[param] = value
    return groups


def _kind(group: dict) -> str:
    if any(p in group for p in _BN):
        return "bn"
    return "matrix" if "weight" in group and group["weight"].ndim >= 2 else "bias" if set(group) == {"bias"} else "?"


def _slots(config: NetworkConfig) -> list[tuple[str, str, str | None, list[str]]]:
    """(kind, layer, source, names it may go by) of every matrix and normalisation, DSSTNE's order."""
    slots = []
    for layer in config.layers:
        if layer.kind == LayerKind.INPUT or layer.type == LayerType.POOLING:
            continue
        shared = {s.input_layer for s in layer.shared_weights}
        for src in layer.sources:
            names = [layer.name] if len(layer.sources) == 1 else [f"{layer.name}.{src}", f"{layer.name}_{src}"]
            slots.append(("bias" if src in shared else "matrix", layer.name, src, names))
        if layer.batch_norm:
            slots.append(("bn", layer.name, None, [f"{layer.name}.bn", f"{layer.name}_bn", f"bn_{layer.name}"]))
    return slots


def _named(prefix: str, names: list[str]) -> bool:
    return any(prefix == n or prefix.endswith("." + n) for n in names)


def match(config: NetworkConfig, tensors: Mapping[str, np.ndarray], source: str, config_source: str) -> dict:
    """{(kind, layer, source): (group name, group)}: each slot's group, by name then in order."""
    groups = _groups(tensors, source)
    slots = _slots(config)
    found: dict = {}
    free = OrderedDict(groups)
    for kind, layer, src, names in slots:
        hit = next((g for g in free if _named(g, names) and _kind(free[g]) == kind), None)
        if hit is not None:
            found[(kind, layer, src)] = (hit, free.pop(hit))
    for kind, layer, src, names in slots:
        if (kind, layer, src) in found:
            continue
        hit = next((g for g in free if _kind(free[g]) == kind), None)
        if hit is None:
            what = {"matrix": f"the matrix {src} → {layer}", "bn": f"the batch normalisation of {layer}",
                    "bias": f"the bias of {src} → {layer} (shared weights)"}[kind]
            param = {"matrix": "weight", "bias": "bias", "bn": "running_mean"}[kind]
            raise ModelImportError(f"{source}: has nothing for {what} of {config_source}; add a key "
                                   f"'{names[0]}.{param}' (or give the config that describes this file)")
        found[(kind, layer, src)] = (hit, free.pop(hit))
    if free:
        key = next(iter(free))
        first = f"{key}.{next(iter(free[key]))}" if key else next(iter(free[key]))
        listed = ", ".join(n for _, _, _, (n, *_) in slots)
        raise ModelImportError(f"{source}: key '{first}' matches no layer of {config_source} (its matrices and "
                               f"normalisations: {listed}); name it after a layer ('<layer>.weight') or remove it")
    return found


def _widths(config: NetworkConfig, found: dict, transposed: bool) -> dict[str, tuple[int, ...]]:
    """The dimensions of the datasets of "auto" layers, as the matrices give them."""
    widths: dict[str, int] = {}
    for (kind, layer, src), (_, group) in found.items():
        if kind == "matrix" and group["weight"].ndim == 2:
            out, inp = group["weight"].shape[::-1] if transposed else group["weight"].shape
            widths.setdefault(src, int(inp))
            widths.setdefault(layer, int(out))
        elif kind == "bias":
            widths.setdefault(layer, int(group["bias"].size))
    return {layer.dataset: (widths[layer.name],) for layer in config.layers
            if layer.is_auto and layer.name in widths}


def network_file(config: NetworkConfig, tensors: Mapping[str, np.ndarray], source: str, config_source: str,
                 *, transposed: bool = False) -> tuple[NetworkFile, list[str]]:
    """The network file of ``config`` with the weights of ``tensors`` (see the module
    docstring), and notes on what was assumed."""
    from destiny.config.shapes import batch_norm_size, resolve_shapes, weight_specs
    from destiny.train.fingerprint import fingerprint_file

    found = match(config, tensors, source, config_source)
    dims = resolve_shapes(config, _widths(config, found, transposed), source=config_source)
    notes: list[str] = []
    weights = []
    for spec in weight_specs(config, dims, config_source):
        kind = "bias" if spec.shared_from else "matrix"
        name, group = found[(kind, spec.output_layer, spec.input_layer)]
        own = None if spec.shared_from else _matrix(spec, name, group["weight"], source, transposed)
        bias = group.get("bias")
        if bias is None:
            bias = np.zeros(spec.bias_size, np.float32)
            notes.append(f"'{name}' has no bias: {spec.input_layer} → {spec.output_layer} gets zeros")
        elif bias.size != spec.bias_size:
            raise ModelImportError(f"{source}: key '{name}.bias' has {bias.size} values but layer "
                                   f"'{spec.output_layer}' of {config_source} has {spec.bias_size} units; give the "
                                   "config this file was trained with")
        weights.append(WeightArrays(spec.input_layer, spec.output_layer, own, np.asarray(bias, np.float32).reshape(-1),
                                    spec.shared_from, spec.transposed, False, 0.0))
    batch_norm = {}
    for layer in config.layers:
        if not layer.batch_norm:
            continue
        name, group = found[("bn", layer.name, None)]
        size = batch_norm_size(layer, dims[layer.name])
        arrays = []
        for param in ("weight", "bias", "running_mean", "running_var"):
            value = group.get(param)
            if value is None or value.size != size:
                raise ModelImportError(f"{source}: key '{name}.{param}' " + ("is missing" if value is None else
                                       f"has {value.size} values") + f"; layer '{layer.name}' normalises {size} "
                                       "units (channels for a convolution)")
            arrays.append(np.asarray(value, np.float32).reshape(-1))
        batch_norm[layer.name] = BatchNormArrays(*arrays)
    nf = NetworkFile(config, {k: tuple(v) for k, v in dims.items()}, weights, batch_norm,
                     info={"seed": 12134, "imported_from": os.path.basename(source)})
    nf.info["fingerprint"] = fingerprint_file(nf)
    return nf, notes


def _matrix(spec, name: str, w: np.ndarray, source: str, transposed: bool) -> np.ndarray:
    """The spec's matrix in DSSTNE's layout from a PyTorch one (or an (in, out) one)."""
    key = f"'{name}.weight'"
    if spec.convolutional:
        out_c, in_c, *kernel = spec.shape
        wanted = (out_c, in_c, *reversed(kernel))  # torch's (out, in, [kz,] [ky,] kx)
        if tuple(w.shape) != wanted:
            raise ModelImportError(f"{source}: key {key} is {_fmt(w.shape)} but layer '{spec.output_layer}' needs "
                                   f"{_fmt(wanted)} (out channels, in channels, kernel as torch orders it); give "
                                   "the config this file was trained with")
        return np.ascontiguousarray(np.transpose(w, (0, 1, *range(w.ndim - 1, 1, -1))), dtype=np.float32)
    n_in, n_out = spec.shape
    wanted = (n_in, n_out) if transposed else (n_out, n_in)
    if tuple(w.shape) == wanted:
        return np.ascontiguousarray(w if transposed else w.T, dtype=np.float32)
    if tuple(w.shape) == wanted[::-1] and n_in != n_out:
        layout = "(in, out) as Keras, Flax and DSSTNE store it" if not transposed else "(out, in) as nn.Linear does"
        fix = "pass --transposed (transposed=True) or save W.T" if not transposed else "leave out --transposed"
        raise ModelImportError(f"{source}: key {key} is {_fmt(w.shape)}: {spec.input_layer} → {spec.output_layer} "
                               f"reads {n_in} units into {n_out}, so it needs {_fmt(wanted)}; the file holds the "
                               f"transpose, {layout}: {fix}")
    raise ModelImportError(f"{source}: key {key} is {_fmt(w.shape)} but {spec.input_layer} → {spec.output_layer} "
                           f"needs {_fmt(wanted)} ({'in, out' if transposed else 'out, in'}); give the config this "
                           "file was trained with, or check the layers' N")


def _fmt(shape) -> str:
    return "(" + ", ".join(str(d) for d in shape) + ")"


__all__ = ["load_tensors", "match", "network_file"]
