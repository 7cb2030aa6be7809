"""``destiny import MODEL -o NETWORK.nc``: a trained model from another framework (an ONNX
graph, or a PyTorch state dict / safetensors file with the DSSTNE JSON that describes it) → a
DSSTNE network file and, with --config-out, its JSON. (The module is named after the command,
as every command's is; ``main.build_parser`` imports it by name.)"""

from __future__ import annotations

import argparse
import os


def register(subparsers) -> None:
    from destiny.config.enums import ErrorFunction
    from destiny.importer import SPARSE_INPUTS

    p = subparsers.add_parser(
        "import", help="bring a trained ONNX model or PyTorch/safetensors weights in as a DSSTNE network file",
        description="Map a trained model onto DSSTNE's layers and write its network file (and, with "
                    "--config-out, its JSON). An ONNX model describes itself: Gemm / MatMul + Add, Conv, "
                    "MaxPool / AveragePool, LRN, BatchNormalization, Flatten, Concat and Add skips and DSSTNE's "
                    "activations map; anything else is refused naming the node. A PyTorch state dict (.pt) or a "
                    "safetensors file holds weights only: give --config, the DSSTNE JSON of its layers; keys are "
                    "matched to layers by name, then in order.")
    p.add_argument("model", metavar="MODEL", help="model.onnx, model.pt (a state dict) or model.safetensors")
    p.add_argument("-o", "--output", required=True, metavar="NETWORK.nc", help="network file to write")
    p.add_argument("--config-out", metavar="CONFIG.json", help="also write the network's DSSTNE JSON description")
    p.add_argument("-c", "--config", metavar="CONFIG.json",
                   help="the DSSTNE JSON describing the layers of a state dict or safetensors file (not for ONNX)")
    p.add_argument("--transposed", action="store_true",
                   help="the state dict's 2-D matrices are (in, out), as Keras, Flax and DSSTNE store them "
                        "(default: (out, in), nn.Linear's)")
    p.add_argument("--inputs", choices=SPARSE_INPUTS, default="auto",
                   help="ONNX: which Input layers are Sparse; auto: those read only by narrower fully connected "
                        "layers (a one-hot or multi-hot row of items) (default: %(default)s)")
    p.add_argument("--error-function", choices=[e.json for e in ErrorFunction], metavar="NAME",
                   help="ONNX: the config's ErrorFunction (the graph has no loss; default: CrossEntropy for "
                        "Sigmoid and SoftMax outputs, else L2)")
    p.set_defaults(run=run, files=files)


def files(args: argparse.Namespace):
    from destiny.io.outputs import CommandFiles

    return CommandFiles.of([("MODEL", args.model), ("--config", args.config)],
                           [("-o", args.output), ("--config-out", args.config_out)])


def run(args: argparse.Namespace) -> int:
    from destiny.cli.console import console
    from destiny.importer import import_model, write_imported
    from destiny.io.outputs import NETWORK_FILE_OVERHEAD, check_free_space

    say = console().print
    check_free_space(args.output, os.path.getsize(args.model) + NETWORK_FILE_OVERHEAD, "the imported network")
    imported = import_model(args.model, args.config, sparse_inputs=args.inputs, error_function=args.error_function,
                            transposed=args.transposed)
    write_imported(imported, args.output, config_out=args.config_out)
    nf = imported.network
    what = {"onnx": "ONNX model", "torch": "PyTorch state dict", "safetensors": "safetensors file"}[imported.kind]
    say(f"{args.model}: {what}, {len(nf.config.layers)} layers", markup=False)
    for layer in nf.config.layers:
        dims = "×".join(str(d) for d in nf.dims[layer.name])
        extra = " sparse" if layer.sparse else "" if layer.kind.json == "Input" else f" {layer.activation.json}"
        kind = layer.type.json if layer.kind.json == "Hidden" else layer.kind.json
        say(f"  {layer.name}: {kind} {dims}{extra}", markup=False)
    for note in imported.notes:
        say(f"note: {note}", markup=False)
    also = f" and its description {args.config_out}" if args.config_out else ""
    say(f"Wrote {args.output}{also} (fingerprint {nf.info['fingerprint']})", markup=False)
    return 0
