"""``destiny generate``: DSSTNE's generateNetCDF (text + indices → NetCDF dataset), images and
labels of a .npz file → DSSTNE's CIFAR layout (``--from-npz``), or a Parquet table of
interactions → a sparse dataset and index files, in passes that fit a memory budget
(``--from-parquet``)."""

from __future__ import annotations

import argparse
import functools


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "generate", help="convert DSSTNE text data into a NetCDF dataset (DSSTNE's generateNetCDF)",
        description="Convert a DSSTNE text file ('sample<TAB>feature[,value]:feature[,value]:...') or a "
                    "directory of them into a NetCDF dataset DSSTNE and Destiny read, building or "
                    "reusing the features and samples index files ('label<TAB>index'). Same flags as "
                    "DSSTNE's generateNetCDF. A bad line stops with its file and line number, and then "
                    "nothing is written. With --from-npz: images (and integer labels) of a .npz file become a "
                    "dense dataset 'input' (width × height × channels, uint8 kept as DSSTNE's UChar) and a "
                    "sparse indicator dataset 'output' (one label per example), as DSSTNE's CIFAR converter "
                    "writes them. With --from-parquet: (user, item[, value]) rows of a Parquet table, in any "
                    "order and larger than memory, become one sparse dataset (users × items, labels numbered in "
                    "sorted order, repeated pairs merged) and users.idx and items.idx beside it, read in passes "
                    "that hold at most --memory-budget of rows.")
    parser.add_argument("-i", "--input", metavar="INPUT", help="text file or directory of text files")
    parser.add_argument("-o", "--output", required=True, metavar="OUT.nc", help="NetCDF file to write (replaced)")
    parser.add_argument("-d", "--dataset", metavar="NAME",
                        help="dataset name: the DataSet of the network layer that reads it")
    parser.add_argument("-f", "--features", metavar="FEATURE_INDEX", help="features index file")
    parser.add_argument("-s", "--samples", metavar="SAMPLE_INDEX",
                        help="samples index file: read if it exists, else created")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("-c", "--create", action="store_true",
                      help="create a new features index from the input (replaces the file)")
    mode.add_argument("-m", "--merge", action="store_true",
                      help="add the input's new features to the features index")
    parser.add_argument("-t", "--type", choices=("indicator", "analog"), default="indicator",
                        help="indicator: features only (values ignored); analog: keep the values "
                             "(default: %(default)s)")
    parser.add_argument("--exact-width", action="store_true",
                        help="write the exact feature count as width (DSSTNE rounds it up to a multiple of 128)")
    parser.add_argument("--value-type", choices=("auto", "float32", "float64"), default="auto",
                        help="analog values: auto keeps each exactly in the narrowest type (timestamps stay "
                             "integers); float32 rounds as DSSTNE does (default: %(default)s)")
    images = parser.add_argument_group("images (instead of -i, -d, -f, -s)")
    images.add_argument("--from-npz", metavar="FILE.npz", help="images and labels as numpy arrays in a .npz file")
    images.add_argument("--images-key", default="x", metavar="KEY", help="array of the images (default: %(default)s)")
    images.add_argument("--labels-key", default="y", metavar="KEY",
                        help="array of the integer labels, '' for none (default: %(default)s)")
    images.add_argument("--layout", choices=("NHWC", "NCHW"), default="NHWC",
                        help="axes of the images: NHWC (numpy, PIL) or NCHW (PyTorch); (N, H, W) is grayscale "
                             "(default: %(default)s)")
    images.add_argument("--classes", type=int, metavar="N", help="number of classes (default: largest label + 1)")
    table = parser.add_argument_group("Parquet interactions (instead of -i, -f, -s; -d names the dataset)")
    table.add_argument("--from-parquet", metavar="FILE.parquet",
                       help="table of (user, item[, value]) rows; writes users.idx and items.idx beside -o")
    table.add_argument("--user-column", metavar="COLUMN", help="column of the user labels (rows)")
    table.add_argument("--item-column", metavar="COLUMN", help="column of the item labels (features)")
    table.add_argument("--value-column", metavar="COLUMN", help="column of the values (default: an indicator dataset)")
    table.add_argument("--memory-budget", metavar="SIZE",
                       help="rows held at once, such as 2GB or 512MiB; less means more passes over the file "
                            "(default: $DESTINY_MEMORY_BUDGET, else half of the memory available)")
    parser.set_defaults(run=run, files=files)


def files(args: argparse.Namespace):
    """-f is read unless -c, and written with -c or -m; -s is read if it exists and written when
    it gains samples; --from-parquet writes users.idx and items.idx beside -o."""
    import os

    from destiny.io.outputs import CommandFiles

    if args.from_parquet:
        where = os.path.dirname(args.output)
        return CommandFiles.of([("--from-parquet", args.from_parquet)],
                               [("-o", args.output), ("users.idx", os.path.join(where, "users.idx")),
                                ("items.idx", os.path.join(where, "items.idx"))])
    if args.from_npz:
        return CommandFiles.of([("--from-npz", args.from_npz)], [("-o", args.output)])
    inputs = [("-i", args.input), ("-f", None if args.create else args.features), ("-s", args.samples)]
    outputs = [("-o", args.output), ("-f", args.features if args.create or args.merge else None),
               ("-s", args.samples)]
    return CommandFiles.of(inputs, outputs)


def _run_parquet(args: argparse.Namespace, say) -> int:
    import os

    from destiny.data.parquet import parquet_to_netcdf
    from destiny.errors import UsageError

    given = [flag for flag, value in (("-i", args.input), ("-f", args.features), ("-s", args.samples),
                                      ("-c", args.create), ("-m", args.merge), ("--from-npz", args.from_npz)) if value]
    if given:
        raise UsageError(f"--from-parquet writes its own index files beside -o; leave out {', '.join(given)}")
    missing = [flag for flag, value in (("--user-column", args.user_column), ("--item-column", args.item_column))
               if not value]
    if missing:
        raise UsageError(f"--from-parquet needs {' and '.join(missing)} (the columns of the user and item labels)")
    name = args.dataset or "input"
    report = parquet_to_netcdf(args.from_parquet, args.output, user_col=args.user_column, item_col=args.item_column,
                               value_col=args.value_column, name=name, memory_budget=args.memory_budget)
    values = "indicator" if report.value_dtype is None else f"{report.value_dtype} values"
    say(f"{args.from_parquet}: {report.rows:,} rows, {report.n_users:,} users × {report.n_items:,} items, "
        f"{report.nnz:,} entries ({values}; {report.merged:,} repeats merged) in {report.ranges:,} "
        f"pass{'es' if report.ranges > 1 else ''} over the rows")
    where = os.path.dirname(args.output)  # named as -o is
    say(f"Wrote {args.output} (dataset '{name}'), {os.path.join(where, 'users.idx')} and "
        f"{os.path.join(where, 'items.idx')}")
    return 0


def _run_npz(args: argparse.Namespace, say) -> int:
    from destiny.data.images import npz_to_netcdf
    from destiny.errors import UsageError

    given = [flag for flag, value in (("-i", args.input), ("-d", args.dataset), ("-f", args.features),
                                      ("-s", args.samples), ("-c", args.create), ("-m", args.merge)) if value]
    if given:
        raise UsageError(f"--from-npz writes datasets 'input' and 'output' from arrays; leave out {', '.join(given)}")
    report = npz_to_netcdf(args.from_npz, args.output, images_key=args.images_key,
                           labels_key=args.labels_key or None, layout=args.layout, n_classes=args.classes)
    dims = "×".join(map(str, report.dims))
    say(f"{args.from_npz}: {report.n_examples:,} images of {dims} (width × height × channels, {report.dtype})"
        + (f", {report.n_classes} classes" if report.n_classes is not None else ""))
    say(f"Wrote {args.output} (datasets 'input'" + (" and 'output')" if report.n_classes is not None else ")"))
    return 0


def _check_text_input(path: str) -> None:
    """A NetCDF or Parquet file given to -i is named with what reads it."""
    from destiny.errors import UsageError
    from destiny.io.inputs import file_kind

    kind = file_kind(path)
    if kind is not None and kind.startswith("NetCDF"):
        raise UsageError(f"-i {path} is a {kind}, and -i reads DSSTNE text: it is a dataset already (give it to "
                         f"destiny train -i/-o or predict --input-nc), or turn it into text with destiny convert {path} "
                         "-o OUT.txt")
    if kind is not None:
        raise UsageError(f"-i {path} is a {kind}, and -i reads DSSTNE text: give it with --from-parquet FILE.parquet "
                         "--user-column COLUMN --item-column COLUMN instead")


def run(args: argparse.Namespace) -> int:
    from destiny.cli.console import console
    from destiny.data.generate import generate_netcdf

    say = functools.partial(console().print, markup=False)  # paths may hold [brackets]
    if args.from_parquet:
        return _run_parquet(args, say)
    if args.from_npz:
        return _run_npz(args, say)
    missing = [flag for flag, value in (("-i", args.input), ("-d", args.dataset), ("-f", args.features),
                                        ("-s", args.samples)) if value is None]
    if missing:
        from destiny.errors import UsageError

        raise UsageError(f"text data needs {', '.join(missing)} (-i INPUT -d NAME -f FEATURE_INDEX -s SAMPLE_INDEX), "
                         "or give --from-npz FILE.npz for images or --from-parquet FILE.parquet for interactions")
    _check_text_input(args.input)
    mode = "create" if args.create else "merge" if args.merge else "fixed"
    report = generate_netcdf(args.input, args.output, args.dataset, args.features, args.samples,
                             features=mode, analog=args.type == "analog", exact_width=args.exact_width,
                             value_type=args.value_type)
    values = "indicator" if report.value_dtype is None else f"analog, {report.value_dtype} values"
    say(f"{args.input}: {report.samples_read:,} samples, {report.nnz:,} datapoints, "
        f"{report.features_read:,} features ({values})")
    if report.n_examples != report.samples_read:  # rows follow the samples index
        absent = report.n_examples - report.samples_read
        say(f"{report.n_examples:,} rows, one for each sample of the samples index {args.samples}: the {absent:,} "
            f"not in {args.input} {'has an empty row' if absent == 1 else 'have empty rows'}")
    if report.features_read != report.n_features:
        say(f"{report.n_features:,} features in the features index {args.features}, "
            f"{report.n_features - report.features_read:,} of them not in {args.input}")
    if report.width != report.n_features:
        say(f"Width {report.width:,}: {report.n_features:,} features rounded up to a multiple of 128 "
            "(--exact-width keeps the exact count)")
    say(f"Wrote {args.output} (dataset '{args.dataset}')")
    for wrote, path, added, what in ((report.wrote_features, args.features, report.features_added, "features"),
                                     (report.wrote_samples, args.samples, report.samples_added, "samples")):
        if wrote:
            say(f"Wrote {path} ({added:,} new {what})")
    return 0
