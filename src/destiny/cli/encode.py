"""``destiny encode``: the activations of one layer (embeddings) for every sample, to .npy or
a NetCDF dense dataset (DSSTNE's encoder)."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    from destiny.cli.predict import add_input_arguments

    p = subparsers.add_parser(
        "encode", help="write a layer's activations (embeddings) for every sample (DSSTNE's encoder)",
        description="Run the network on every sample (-r/-i or --input-nc) in evaluation mode (no dropout) and "
                    "write the activations of one layer, by default the last Hidden layer: a float32 examples × "
                    "units array (.npy) or a NetCDF dense dataset named after the layer (.nc). Rows follow the "
                    "samples' order; --samples-out writes which row is which sample.")
    add_input_arguments(p)
    p.add_argument("-l", "--layer", metavar="NAME", help="layer to encode (default: the last Hidden layer)")
    p.add_argument("-o", "--output", required=True, metavar="OUT.npy|OUT.nc", help="file to write (atomically)")
    p.add_argument("--samples-out", metavar="SAMPLES_INDEX", help="write 'label<TAB>row' for the rows of the output")
    p.add_argument("--quiet", action="store_true", help="print nothing but errors")
    p.set_defaults(run=run, files=files)


def files(args: argparse.Namespace):
    from destiny.cli.predict import input_files
    from destiny.io.outputs import CommandFiles

    return CommandFiles.of(input_files(args), [("-o", args.output), ("--samples-out", args.samples_out)])


def run(args: argparse.Namespace) -> int:
    import functools
    import math
    import os

    from destiny.backend import resolve_device
    from destiny.cli.console import console
    from destiny.cli.predict import check_common, load_input
    from destiny.data import write_index
    from destiny.errors import UsageError
    from destiny.io.outputs import check_free_space
    from destiny.predict.encode import SUFFIXES, check_layer, default_layer, write_encodings
    from destiny.train.checkpoint import load_network

    check_common(args)
    if os.path.splitext(args.output)[1].lower() not in SUFFIXES:
        raise UsageError(f"-o {args.output}: the output must end in .npy (numpy) or .nc (NetCDF dense dataset)")
    network = load_network(args.network, device=resolve_device(args.device))
    layer = check_layer(network, args.layer) if args.layer else default_layer(network)
    inp = load_input(args, network)
    check_free_space(args.output, inp.n_examples * math.prod(network.dims[layer]) * 4 + 4096,
                     f"{inp.n_examples:,} rows of layer '{layer}' (float32)")
    rows, units = write_encodings(args.output, network, inp.datasets, layer, inp.n_examples,
                                  batch_size=args.batch_size, device=network.device)
    if args.samples_out:
        write_index(args.samples_out, {label: row for row, label in enumerate(inp.labels)})
    if not args.quiet:
        say = functools.partial(console().print, markup=False, highlight=False)
        say(f"Wrote {args.output}: {rows:,} × {units:,} activations of layer '{layer}'")
        if args.samples_out:
            say(f"Wrote {args.samples_out} (row of each sample)")
    return 0
