"""Trained models from other frameworks → DSSTNE networks (``destiny import``).

    imported = import_model("model.onnx")                       # an ONNX graph: it describes itself
    imported = import_model("model.pt", config="net.json")      # weights + the JSON of their layers
    write_imported(imported, "net.nc", config_out="net.json")   # both written, or neither

An ONNX graph made of the operations DSSTNE has (``onnx_map.MAPPED``) becomes a DSSTNE JSON
description and its weights; a PyTorch state dict or a safetensors file needs the JSON that
describes it (``state_dict``). What cannot be mapped is refused with a one-line
``ModelImportError`` naming the node or key, why, and what Destiny would need.

Input layers: an Input read only by fully connected layers narrower than it (a one-hot or
multi-hot row of items, as Destiny's own autoencoder exports look) is made Sparse
(``sparse_inputs="auto"``; "sparse" for every input read by fully connected layers only, "dense"
for none). The graph has no loss: ``error_function`` defaults to CrossEntropy for Sigmoid and
SoftMax outputs, L2 otherwise.

onnx (and safetensors) are imported where used: machines without them import Destiny.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

from destiny.errors import ModelImportError, UsageError
from destiny.io.network_file import NetworkFile

KINDS = ("onnx", "torch", "safetensors")
SPARSE_INPUTS = ("auto", "sparse", "dense")


@dataclass
class Imported:
    """An imported model: its network file (the config inside) and notes on what was assumed."""

    network: NetworkFile
    kind: str  # onnx, torch, safetensors
    source: str
    notes: list[str] = field(default_factory=list)


def sniff(path: str) -> str:
    """onnx, torch or safetensors, by the file's first bytes; ModelImportError for anything else
    (an ONNX file has no magic number: what is none of the others is tried as ONNX)."""
    from destiny.io.inputs import binary_kind, open_input

    with open_input(path) as stream:
        head = stream.read(16)
    if head[:4] == b"PK\x03\x04" or head[:1] == b"\x80":  # torch.save's zip, or its legacy pickle
        return "torch"
    if len(head) >= 9 and head[8:9] == b"{" and 2 <= int.from_bytes(head[:8], "little") < 1 << 30:
        return "safetensors"
    kind = binary_kind(head)
    if kind is not None:
        what = "a NetCDF or HDF5 file (a network or dataset already, or a Keras .h5 model: convert that to ONNX with " \
            "tf2onnx first)" if kind.startswith("NetCDF") else f"a {kind}"
        raise ModelImportError(f"{path}: is {what}, not a model to import; destiny import reads ONNX models, PyTorch "
                               "state dicts (.pt) and safetensors files")
    if head.lstrip()[:1] in (b"{", b"["):
        raise ModelImportError(f"{path}: is JSON text (a DSSTNE network description?), not a model; give it as "
                               "--config beside the weights (a .pt state dict or a .safetensors file)")
    if not head:
        raise ModelImportError(f"{path}: is empty; give an ONNX model, a PyTorch state dict or a safetensors file")
    return "onnx"


def import_onnx(path: str | os.PathLike, *, sparse_inputs: str = "auto", error_function: str | None = None,
                name: str | None = None) -> Imported:
    """An ONNX model as a DSSTNE network (see the module docstring)."""
    from destiny.importer.layers import document, network_file
    from destiny.importer.onnx_graph import Graph, load
    from destiny.importer.onnx_map import Mapper

    path = os.fspath(path)
    _check_choice("sparse_inputs", sparse_inputs, SPARSE_INPUTS)
    mapper = Mapper(Graph(load(path), path))
    layers = mapper.run()
    _datasets(layers)
    notes = mapper.notes + _sparse(layers, sparse_inputs)
    doc = document(layers, name=name or _stem(path), error_function=error_function, lrn=mapper.lrn)
    return Imported(network_file(layers, doc, path), "onnx", path, notes)


def import_weights(path: str | os.PathLike, config, *, transposed: bool = False, kind: str | None = None,
                   config_source: str = "the config") -> Imported:
    """A PyTorch state dict (.pt) or safetensors file with the NetworkConfig that describes it."""
    from destiny.importer.state_dict import load_tensors, network_file

    path = os.fspath(path)
    kind = kind or sniff(path)
    tensors = load_tensors(path, kind)
    if any(re.fullmatch(r"linears\.w\d+\.weight", key) for key in tensors):  # destiny.interop.to_torch's
        return Imported(_from_to_torch(config, tensors, path), kind, path)
    nf, notes = network_file(config, tensors, path, config_source, transposed=transposed)
    return Imported(nf, kind, path, notes)


def import_model(path: str | os.PathLike, config: str | os.PathLike | None = None, *, sparse_inputs: str = "auto",
                 error_function: str | None = None, transposed: bool = False) -> Imported:
    """Whatever ``path`` holds (``sniff``): an ONNX model alone, or weights with ``config``, a
    DSSTNE JSON file."""
    from destiny.config import load_config

    path = os.fspath(path)
    kind = sniff(path)
    if kind == "onnx":
        if config is not None:
            raise UsageError(f"{path} is an ONNX model, which describes its own layers: leave out --config")
        if transposed:
            raise UsageError("--transposed is for the matrices of a state dict or safetensors file, not ONNX")
        return import_onnx(path, sparse_inputs=sparse_inputs, error_function=error_function)
    if config is None:
        raise UsageError(f"{path} holds weights only ({'a PyTorch state dict' if kind == 'torch' else 'safetensors'}):"
                         " give --config CONFIG.json, the DSSTNE JSON that describes its layers")
    if sparse_inputs != "auto" or error_function is not None:
        raise UsageError("--inputs and --error-function are for ONNX models; with a state dict the config says them")
    return import_weights(path, load_config(config), transposed=transposed, kind=kind,
                          config_source=os.fspath(config))


def write_imported(imported: Imported, output: str | os.PathLike, *,
                   config_out: str | os.PathLike | None = None) -> None:
    """Write the network file (and its JSON), atomically as a set: both, or neither."""
    from destiny.config import dumps_config
    from destiny.io.atomic import atomic_open, staged
    from destiny.io.network_file import write_network

    with staged() as stage:
        write_network(output, imported.network, stage=stage)
        if config_out is not None:
            with atomic_open(config_out, "w", stage=stage) as stream:
                stream.write(dumps_config(imported.network.config))


def _from_to_torch(config, tensors, path: str) -> NetworkFile:
    import torch

    from destiny.interop import from_torch_mlp
    from destiny.train.checkpoint import network_to_file

    state = {key: torch.from_numpy(value) for key, value in tensors.items()}
    try:
        network = from_torch_mlp(config, state)
    except UsageError as exc:
        raise ModelImportError(f"{path}: {exc}") from None
    nf = network_to_file(network, {"imported_from": os.path.basename(path)})
    return nf


def _datasets(layers) -> None:
    """DataSet names: "input" and "output" for a network of one of each, else the layers' names."""
    for kind, default in (("Input", "input"), ("Output", "output")):
        chosen = [layer for layer in layers if layer.kind == kind]
        for layer in chosen:
            layer.dataset = default if len(chosen) == 1 else layer.name


def _sparse(layers, mode: str) -> list[str]:
    """Mark Input layers Sparse (module docstring); notes for inputs "sparse" could not make so."""
    notes = []
    for layer in (l for l in layers if l.kind == "Input"):
        readers = [l for l in layers if any(t.source is layer for t in l.terms)]
        fc_only = len(layer.dims) == 1 and bool(readers) and all(l.type == "FullyConnected" for l in readers) and \
            not any(layer in l.skips for l in layers)
        wide = fc_only and all(l.units < layer.units for l in readers)
        layer.sparse = fc_only if mode == "sparse" else wide if mode == "auto" else False
        if mode == "sparse" and not fc_only:
            notes.append(f"input '{layer.name}' stays dense: it is not read by fully connected layers alone")
    return notes


def _stem(path: str) -> str:
    return os.path.splitext(os.path.basename(path))[0]


def _check_choice(what: str, value: str, choices) -> None:
    if value not in choices:
        raise UsageError(f"{what} must be one of {', '.join(choices)}; got {value!r}")


__all__ = ["Imported", "KINDS", "SPARSE_INPUTS", "import_model", "import_onnx", "import_weights", "sniff",
           "write_imported"]
