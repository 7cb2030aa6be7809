"""``destiny convert``: ratings tables, DSSTNE text and NetCDF datasets → DSSTNE text or NetCDF,
with splits."""

from __future__ import annotations

import argparse
import functools
import os

from destiny.errors import UsageError

FROM = ("auto", "netcdf", "text", "movielens-csv", "udata", "dat", "csv")


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "convert", help="convert ratings (MovieLens, CSV), DSSTNE text or NetCDF datasets to DSSTNE text or NetCDF",
        description="Convert a ratings table (MovieLens ratings.csv, u.data, ratings.dat, or any "
                    "user,item[,rating[,timestamp]] table), DSSTNE text ('sample<TAB>feature[,value]:...', "
                    "each datapoint an interaction) or a NetCDF dataset into DSSTNE text or a "
                    "NetCDF dataset, optionally keeping only high ratings and splitting train/test with a "
                    "seed. Users become rows (samples) and items features, numbered in order of first "
                    "appearance; NetCDF output comes with its features and samples index files.")
    parser.add_argument("input", metavar="INPUT", help="ratings file, DSSTNE text file or NetCDF dataset file")
    parser.add_argument("-o", "--output", required=True, metavar="OUTPUT",
                        help="output file: NetCDF if it ends in .nc, else DSSTNE text (train part with --split)")
    parser.add_argument("--from", dest="source", choices=FROM, default="auto",
                        help="input format; text: DSSTNE's (default: from the file: NetCDF and DSSTNE text by "
                             "content, MovieLens by name)")
    parser.add_argument("--to", choices=("auto", "text", "netcdf"), default="auto", help="output format")
    parser.add_argument("-d", "--dataset", default=None, metavar="NAME",
                        help="dataset name to write (default input), or to read from a NetCDF file with several")
    parser.add_argument("-f", "--features", metavar="FEATURE_INDEX",
                        help="features index: written with NetCDF output (default features_NAME beside it), "
                             "read to label NetCDF input")
    parser.add_argument("-s", "--samples", metavar="SAMPLE_INDEX",
                        help="samples index: written with NetCDF output (default samples_NAME), read for NetCDF input")
    table = parser.add_argument_group("ratings tables")
    table.add_argument("--delimiter", help="field separator (default: by format, else sniffed)")
    table.add_argument("--header", action=argparse.BooleanOptionalAction, default=None,
                       help="the first line holds column names (default: by format, else sniffed)")
    table.add_argument("--columns", metavar="ROLE=COLUMN,...",
                       help="user, item, rating, timestamp columns by header name or 0-based position, "
                            "such as user=userId,item=movieId (default: positions 0, 1, 2, 3)")
    table.add_argument("--min-rating", type=float, metavar="R", help="keep interactions rated R or more")
    table.add_argument("--values", choices=("none", "rating", "timestamp"), default="none",
                       help="stored with each item: none (indicator), the rating, or the timestamp "
                            "(DSSTNE's MovieLens sample); DSSTNE text: its values read as ratings or "
                            "timestamps (default: %(default)s)")
    split = parser.add_argument_group("train/test split")
    split.add_argument("--split", choices=("random", "user", "time"),
                       help="random: over all interactions; user: within each user; time: each user's latest "
                            "go to test (NetCDF input: user only)")
    split.add_argument("--test-fraction", type=float, default=0.2, metavar="F", help="default: %(default)s")
    split.add_argument("--seed", type=int, default=0, help="split seed (default: %(default)s)")
    split.add_argument("--test-output", metavar="PATH", help="test part (required with --split)")
    parser.add_argument("--exact-width", action="store_true",
                        help="NetCDF width = item count (default: rounded up to a multiple of 128, like DSSTNE)")
    parser.set_defaults(run=run, files=files)


def _output_format(args: argparse.Namespace) -> str:
    return args.to if args.to != "auto" else "netcdf" if args.output.endswith(".nc") else "text"


def _source_format(args: argparse.Namespace) -> str:
    """The input's format: --from, else netcdf or DSSTNE text by content, else "auto" (a ratings
    table)."""
    from destiny.data.text import looks_like_text

    if args.source != "auto":
        return args.source
    if os.path.isdir(args.input):  # DSSTNE's tools read a directory of text files
        return "text"
    return "netcdf" if _is_netcdf(args.input) else "text" if looks_like_text(args.input) else "auto"


def files(args: argparse.Namespace):
    """NetCDF input: the index files are read to label text output; a ratings table: they are
    written with NetCDF output."""
    from destiny.io.outputs import CommandFiles

    to = _output_format(args)
    try:  # only a regular file is peeked at (a FIFO would block); run() reports the others
        source = _source_format(args) if os.path.isfile(args.input) or args.source != "auto" else "auto"
    except OSError:
        source = "auto"
    inputs = [("INPUT", args.input)]
    outputs = [("-o", args.output), ("--test-output", args.test_output)]
    if source == "netcdf":
        if to == "text":
            inputs += [("-f", args.features), ("-s", args.samples)]
    elif to == "netcdf":
        outputs += zip(("-f", "-s"), _index_paths(args, args.dataset or "input"))
    return CommandFiles.of(inputs, outputs)


def _is_netcdf(path: str) -> bool:
    from destiny.io.inputs import binary_kind, open_input

    with open_input(path) as stream:
        return (binary_kind(stream.read(8)) or "").startswith("NetCDF")


def _columns(text: str | None) -> dict | None:
    if text is None:
        return None
    columns = {}
    for item in text.split(","):
        role, sep, column = item.partition("=")
        if not sep or role not in ("user", "item", "rating", "timestamp") or not column:
            raise UsageError(f"--columns {text!r}: write ROLE=COLUMN pairs joined by ',' with roles user, item, "
                             "rating, timestamp, such as user=userId,item=movieId")
        columns[role] = int(column) if column.isdigit() else column
    return columns


def _check(args: argparse.Namespace) -> None:
    if args.split and not args.test_output:
        raise UsageError("--split needs --test-output PATH for the test part")
    if args.test_output and not args.split:
        raise UsageError("--test-output needs --split random|user|time")
    if args.split and not 0 < args.test_fraction < 1:
        raise UsageError(f"--test-fraction {args.test_fraction}: give a fraction strictly between 0 and 1")


def run(args: argparse.Namespace) -> int:
    _check(args)
    source, to = _source_format(args), _output_format(args)
    if source == "netcdf":
        return _from_netcdf(args, to)
    return _from_ratings(args, source, to)


def _outputs(args: argparse.Namespace, count: int) -> list[str]:
    return [args.output, args.test_output][:count]


def _index_paths(args: argparse.Namespace, name: str) -> tuple[str, str]:
    """-f and -s, by default features_NAME and samples_NAME beside -o (named as -o is)."""
    folder = os.path.dirname(args.output)
    return (args.features or os.path.join(folder, f"features_{name}"),
            args.samples or os.path.join(folder, f"samples_{name}"))


def _from_ratings(args: argparse.Namespace, source: str, to: str) -> int:
    from destiny.cli.console import console
    from destiny.data import round_up_128, write_index, write_netcdf, write_text
    from destiny.data.convert import keep_ratings, split_interactions, to_datasets
    from destiny.io.atomic import staged

    interactions = _read(args, source)
    read = len(interactions)
    interactions = keep_ratings(interactions, args.min_rating)
    if len(interactions) == 0:
        raise UsageError(f"no interactions left (of {read:,}) with a rating of at least {args.min_rating}")
    parts = None
    if args.split:
        test = split_interactions(interactions, args.split, args.test_fraction, args.seed)
        parts = [~test, test]
    name = args.dataset or "input"
    converted = to_datasets(interactions, parts, name=name, values=args.values)
    items = len(converted.item_labels)
    say = functools.partial(console().print, markup=False)  # paths may hold [brackets]
    say(f"{args.input}: " + ("DSSTNE text, " if source == "text" else "")
        + f"{read:,} interactions, {len(interactions):,} kept, {len(converted.user_labels):,} users, {items:,} items")
    written = list(zip(_outputs(args, len(converted.datasets)), converted.datasets))
    if to == "text":
        with staged() as stage:  # all files or none
            for path, dataset in written:
                write_text(path, dataset, converted.item_labels, converted.user_labels, stage=stage)
        for path, dataset in written:
            say(f"Wrote {path} ({dataset.nnz:,} interactions)")
        return 0
    width = items if args.exact_width else round_up_128(items)
    features_path, samples_path = _index_paths(args, name)
    with staged() as stage:
        for path, dataset in written:
            write_netcdf(path, dataset.replace(dims=(width,)), stage=stage)
        write_index(features_path, {str(label): i for i, label in enumerate(converted.item_labels.tolist())},
                    stage=stage)
        write_index(samples_path, {str(label): i for i, label in enumerate(converted.user_labels.tolist())},
                    stage=stage)
    for path, dataset in written:
        say(f"Wrote {path} (dataset '{name}', {dataset.nnz:,} interactions, width {width:,})")
    say(f"Wrote the features index {features_path} (-f) and the samples index {samples_path} (-s)")
    return 0


def _read(args: argparse.Namespace, source: str):
    """The interactions of a ratings table or (source "text") of DSSTNE text."""
    from destiny.data.convert import read_interactions, read_text_interactions

    if source != "text":
        return read_interactions(args.input, format=source, delimiter=args.delimiter, header=args.header,
                                 columns=_columns(args.columns))
    given = [flag for flag, value in (("--delimiter", args.delimiter), ("--header", args.header),
                                      ("--columns", args.columns)) if value is not None]
    if given:
        raise UsageError(f"{args.input} is DSSTNE text ('sample<TAB>feature[,value]:...'), which has no columns to "
                         f"choose: leave out {', '.join(given)} (or give --from csv to read it as a table)")
    for flag, asked, needs in (("--min-rating", args.min_rating is not None, "rating"),
                               ("--split time", args.split == "time", "timestamp")):
        if asked and args.values != needs:
            raise UsageError(f"{flag} on DSSTNE text ({args.input}) reads the text's values as {needs}s: add "
                             f"--values {needs}")
    return read_text_interactions(args.input, values=args.values)


def _from_netcdf(args: argparse.Namespace, to: str) -> int:
    from destiny.cli.console import console
    from destiny.data import SparseDataset, inspect_netcdf, labels_by_index, read_dataset, read_index
    from destiny.data import split_dataset, write_netcdf, write_text
    from destiny.io.atomic import staged

    infos = inspect_netcdf(args.input)
    if args.dataset is None and len(infos) > 1:
        raise UsageError(f"{args.input} holds {len(infos)} datasets ({', '.join(i.name for i in infos)}); "
                         "choose one with -d NAME")
    dataset = read_dataset(args.input, args.dataset or infos[0].name)
    if not isinstance(dataset, SparseDataset):
        raise UsageError(f"dataset '{dataset.name}' is dense; convert handles sparse datasets")
    if args.split and args.split != "user":
        raise UsageError(f"--split {args.split} needs a ratings table; NetCDF input splits within each example "
                         "(--split user)")
    parts = list(split_dataset(dataset, args.test_fraction, args.seed)) if args.split else [dataset]
    if to == "text":  # labels from the index files, else the feature and row numbers
        features = labels_by_index(read_index(args.features)) if args.features else range(dataset.n_features)
        samples = labels_by_index(read_index(args.samples)) if args.samples else range(dataset.n_examples)
    say = functools.partial(console().print, markup=False)  # paths may hold [brackets]
    written = list(zip(_outputs(args, len(parts)), parts))
    with staged() as stage:  # all files or none
        for path, part in written:
            if to == "netcdf":
                write_netcdf(path, part, stage=stage)
            else:
                write_text(path, part, features, samples, stage=stage)
    for path, part in written:
        say(f"Wrote {path} (dataset '{part.name}', {part.n_examples:,} examples, {part.nnz:,} entries)")
    return 0
