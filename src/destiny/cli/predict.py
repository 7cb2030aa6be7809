"""``destiny predict``: DSSTNE's predict tool (same short flags) with long options, any K, seen
items removed rather than boosted, and CSV/Parquet output for data tools.

Under a launcher (``torchrun --nproc-per-node N -m destiny predict …``, ``mpirun -np N destiny
predict …``) the network is loaded sharded (each process its slice of every layer), each
process ranks its items and the candidates are merged (``destiny.predict.topk``); rank 0 alone
writes the recommendations and prints."""

from __future__ import annotations

import argparse
import os

from destiny.errors import UsageError


def add_input_arguments(p: argparse.ArgumentParser, network_required: bool = True) -> None:
    """The network and the examples to score: DSSTNE text (-r with -i) or a NetCDF dataset."""
    p.add_argument("-n", "--network", required=network_required, metavar="NETWORK.nc",
                   help="trained network (DSSTNE or Destiny file)")
    p.add_argument("-r", "--input", metavar="INPUT.txt",
                   help="samples to score, DSSTNE text 'sample<TAB>feature[,value]:…' (a file or a directory)")
    p.add_argument("--input-nc", metavar="INPUT.nc", help="samples to score as a NetCDF dataset (instead of -r)")
    p.add_argument("-i", "--input-index", "--features-input", dest="input_index", metavar="FEATURES_INPUT",
                   help="input features index ('label<TAB>index' lines): maps the text's features to input columns")
    p.add_argument("-d", "--dataset", metavar="NAME",
                   help="DataSet of the Input layer to feed: NAME or NAME_input (DSSTNE appends _input); "
                        "needed only when the network has several Input layers")
    p.add_argument("--samples", metavar="SAMPLES_INDEX",
                   help="samples index labelling the rows of --input-nc (default: row numbers)")
    p.add_argument("--input-type", choices=("indicator", "analog"), default="indicator",
                   help="-r values: ignored (indicator, as DSSTNE) or fed to the network (analog) "
                        "(default: %(default)s)")
    p.add_argument("--drop-unknown", action="store_true",
                   help="skip datapoints whose labels are not in the index files, with a warning (DSSTNE's way); "
                        "by default they are an error naming the file, line and label")
    p.add_argument("-b", "--batch-size", type=int, default=None, metavar="N",
                   help="examples a batch (default 16384 on a GPU, 1024 on the CPU)")
    p.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda or cuda:N")


def add_filter_arguments(p: argparse.ArgumentParser) -> None:
    """Which output layer, and which of its items may be recommended to whom."""
    p.add_argument("-o", "--output-index", "--features-output", dest="output_index", required=True,
                   metavar="FEATURES_OUTPUT", help="output features index: labels of the output columns")
    p.add_argument("-l", "--layer", metavar="NAME", help="output layer (default: the first Output layer)")
    p.add_argument("--filter-seen", action=argparse.BooleanOptionalAction, default=True,
                   help="never recommend an example's own input items, matched by label through the indices "
                        "(default: on)")
    p.add_argument("-f", "--filter", metavar="FILTER",
                   help="DSSTNE samples filter (text 'sample<TAB>item[,value]:…'): the listed items are removed "
                        "(DSSTNE multiplied their scores by the value instead)")
    p.add_argument("--exclude", metavar="FILE", help="item labels never to recommend, one a line")
    p.add_argument("--include-only", metavar="FILE", help="recommend only these item labels, one a line")
    p.add_argument("--chunk", type=int, metavar="N",
                   help="output columns scored at once (default 16M / batch); memory ≈ batch × chunk × 4 bytes")
    p.add_argument("--top-k-method", choices=("auto", "exact", "candidates"), default="auto",
                   help="exact: every item scored in fp32; candidates: a TF32 pass picks candidates, scored exactly "
                        "in float64 under a certified error bound (the same items, faster on GPUs); auto: candidates "
                        "on CUDA where the output layer allows, else exact (default: %(default)s)")


def register(subparsers) -> None:
    from destiny.cli.memory import add_memory_arguments

    p = subparsers.add_parser(
        "predict", help="recommend the top-K items for every sample (DSSTNE's predict)",
        description="Score every output item for every sample of the input, remove the items each sample "
                    "already has, and write the K best, in DSSTNE's recs format ('sample<TAB>item,score:…'), "
                    "CSV or Parquet. Same short flags as DSSTNE's predict; any K; the output layer is scored "
                    "in chunks so memory stays bounded at any width. Nothing is written on error.")
    add_input_arguments(p)
    add_filter_arguments(p)
    p.add_argument("-s", "--recs", dest="recs", required=True, metavar="RECS",
                   help="recommendations file to write (replaced atomically)")
    p.add_argument("-k", "--top-k", dest="k", type=int, default=100, metavar="K",
                   help="recommendations a sample, any K ≥ 1 (default 100; DSSTNE capped it below 128)")
    p.add_argument("--format", choices=("recs", "csv", "parquet"), default="recs",
                   help="recs: DSSTNE's text; csv/parquet: user, rank, item, score rows (default: %(default)s)")
    p.add_argument("--score-format", "-p", dest="score_format", metavar="FMT",
                   help="printf format of a score: default %%.3f as DSSTNE's 4.3f (recs), %%.9g (csv)")
    p.add_argument("--quiet", action="store_true", help="print nothing but errors")
    add_memory_arguments(p)
    p.set_defaults(run=run, files=files)


def input_files(args: argparse.Namespace) -> list[tuple[str, str | None]]:
    """(flag, path) of every file the common options of predict, evaluate and encode read."""
    pairs = [("-n", args.network), ("-r", args.input), ("--input-nc", args.input_nc), ("-i", args.input_index),
             ("--samples", args.samples)]
    for flag, dest in (("-o", "output_index"), ("-f", "filter"), ("--exclude", "exclude"),
                       ("--include-only", "include_only")):
        pairs.append((flag, getattr(args, dest, None)))
    return pairs


def files(args: argparse.Namespace):
    from destiny.io.outputs import CommandFiles

    return CommandFiles.of(input_files(args), [("-s", args.recs)])


def check_common(args: argparse.Namespace) -> None:
    if args.batch_size is not None and args.batch_size < 1:
        raise UsageError(f"-b/--batch-size must be a positive integer, got {args.batch_size}")
    if getattr(args, "chunk", None) is not None and args.chunk < 1:
        raise UsageError(f"--chunk must be a positive integer, got {args.chunk}")
    if args.input is not None and args.input_nc is not None:
        raise UsageError(f"-r {args.input} and --input-nc {args.input_nc} both give the samples to score: give one of "
                         "them, not both")
    if args.input is None and args.input_nc is None:
        raise UsageError("give the samples to score with -r INPUT.txt (and -i FEATURES_INPUT) or --input-nc INPUT.nc")
    _check_input_kinds(args)
    if args.input is not None and args.input_index is None:
        raise UsageError("-r needs -i FEATURES_INPUT: the index that maps the text's features to input columns")


def _check_input_kinds(args: argparse.Namespace) -> None:
    """A NetCDF dataset given to -r, or DSSTNE text to --input-nc, is named with the flag that
    reads it (instead of a parse error on its first line)."""
    from destiny.data.text import looks_like_text
    from destiny.io.inputs import file_kind

    kind = file_kind(args.input) if args.input is not None else None
    if kind is not None and kind.startswith("NetCDF"):
        raise UsageError(f"-r {args.input} is a {kind}, and -r reads DSSTNE text ('sample<TAB>feature:...'): give a "
                         f"NetCDF dataset with --input-nc {args.input} instead (--samples SAMPLES_INDEX labels its rows)")
    if kind is not None:
        raise UsageError(f"-r {args.input} is a {kind}, and -r reads DSSTNE text ('sample<TAB>feature:...'); make a "
                         "NetCDF dataset of it with destiny generate --from-parquet and give that with --input-nc")
    filter_kind = file_kind(args.filter) if getattr(args, "filter", None) is not None else None
    if filter_kind is not None:
        raise UsageError(f"-f {args.filter} is a {filter_kind}, and -f reads a DSSTNE samples filter as text "
                         f"('sample<TAB>item:...'): write it as text first (destiny convert {args.filter} -o "
                         "FILTER.txt, with -f/-s index files for its labels)")
    if args.input_nc is not None and file_kind(args.input_nc) is None and os.path.isfile(args.input_nc) \
            and looks_like_text(args.input_nc):
        raise UsageError(f"--input-nc {args.input_nc} is DSSTNE text, and --input-nc reads a NetCDF dataset: give the "
                         f"text with -r {args.input_nc} -i FEATURES_INPUT instead")


def load_input(args: argparse.Namespace, network, say=None):
    """The samples to score; a NetCDF input streams from disk when ``--stream`` or
    ``--memory-budget`` (where the command has them) say so."""
    from destiny.predict.inputs import read_netcdf_input, read_text_input

    if args.input is not None:
        return read_text_input(network, args.input, args.input_index, dataset=args.dataset,
                               analog=args.input_type == "analog", drop_unknown=args.drop_unknown)
    budget = None
    if hasattr(args, "memory_budget"):
        from destiny.data.loading import choose_loading

        loading = choose_loading([args.input_nc], stream=args.stream, budget=args.memory_budget,
                                 device=network.device)
        if loading.stream:
            budget = loading.budget
            if say is not None:
                say(loading.describe())
    return read_netcdf_input(network, args.input_nc, dataset=args.dataset, samples_path=args.samples,
                             index_path=args.input_index, stream_budget=budget)


def load_for_recommending(args: argparse.Namespace, world=None):
    """(network, output layer, width, output index, input, filters) from the common options;
    world: a model-parallel ``destiny.parallel.World`` to load the network's shards on."""
    from destiny.backend import resolve_device
    from destiny.predict.filters import build_filters
    from destiny.predict.labels import Index
    from destiny.predict.topk import output_layer
    from destiny.train.checkpoint import load_network

    if world is not None and world.parallel:
        network = load_network(args.network, world=world)
    else:
        network = load_network(args.network, device=resolve_device(args.device))
    layer = output_layer(network, args.layer)
    width = network.units[layer.name]
    output = Index.read(args.output_index)
    output.check_units(width, layer.name, "output features")
    inp = load_input(args, network)
    filters = build_filters(network, inp, output, width, filter_seen=args.filter_seen, filter_file=args.filter,
                            exclude_file=args.exclude, include_file=args.include_only)
    if filters.catalogue == 0:
        given = [f"{flag} {path}" for flag, path in (("--include-only", args.include_only),
                                                      ("--exclude", args.exclude)) if path is not None]
        raise UsageError(f"no item of layer '{layer.name}' is left to recommend"
                         + (f" after {' and '.join(given)}" if given else f" (no column of {args.output_index} has a "
                            "label)") + ": check that the lists hold labels of the output index "
                         f"{args.output_index}")
    return network, layer, width, output, inp, filters


def run(args: argparse.Namespace) -> int:
    from destiny.cli.train import launched_world
    from destiny.parallel import shutdown

    if args.k < 1:
        raise UsageError(f"-k/--top-k must be a positive integer, got {args.k}")
    check_common(args)
    from destiny.predict.writers import check_format, score_format

    check_format(args.format)
    score_format(args.score_format, args.format)
    world = launched_world(args.device)
    try:
        return _predict(args, world)
    finally:
        shutdown(world)


def _predict(args: argparse.Namespace, world) -> int:
    import functools

    from destiny.cli.console import console
    from destiny.predict.recommend import iter_recommendations
    from destiny.predict.writers import RecsWriter
    from destiny.progress import Progress

    network, layer, width, output, inp, filters = load_for_recommending(args, world)
    if world.is_root and args.format != "parquet":  # at least "item,0.123:" a recommendation
        from destiny.io.outputs import check_free_space

        check_free_space(args.recs, inp.n_examples * min(args.k, width) * 8,
                         f"the top {args.k} of {inp.n_examples:,} samples")
    batches = iter_recommendations(network, inp.datasets, args.k, exclude=filters.seen, include_only=filters.allowed,
                                   layer=layer.name, batch_size=args.batch_size, chunk=args.chunk,
                                   device=network.device, method=args.top_k_method)
    if not world.is_root:  # every process ranks its items; rank 0 writes
        for _ in batches:
            pass
        return 0
    progress = Progress(inp.n_examples, "Scoring", unit="samples", enabled=not args.quiet,
                        console=lambda: console(stderr=True))
    with RecsWriter(args.recs, args.format, output.label_array(width), args.score_format) as writer, progress:
        for rows, scores, items in batches:
            writer.write(inp.labels[rows], scores, items)
            progress.advance(len(scores))
    if not args.quiet:
        say = functools.partial(console().print, markup=False, highlight=False)
        short = writer.rows * args.k - writer.written
        streamed = any(hasattr(d, "read_rows") for d in inp.datasets.values())
        say(f"Scored {writer.rows:,} samples against {filters.catalogue:,} items of layer '{layer.name}'"
            + (" (seen items removed)" if filters.seen is not None else "")
            + (", the input streamed from disk" if streamed else ""))
        say(f"Wrote {args.recs}: {writer.written:,} recommendations ({args.format}, top {args.k})"
            + (f"; {short:,} slots left empty where fewer than {args.k} items were eligible" if short else ""))
    return 0
