"""``destiny generate``: DSSTNE's generateNetCDF (text + indices → NetCDF dataset)."""

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
                    "nothing is written.")
    parser.add_argument("-i", "--input", required=True, metavar="INPUT", help="text file or directory of text files")
    parser.add_argument("-o", "--output", required=True, metavar="OUT.nc", help="NetCDF file to write (replaced)")
    parser.add_argument("-d", "--dataset", required=True, metavar="NAME",
                        help="dataset name: the DataSet of the network layer that reads it")
    parser.add_argument("-f", "--features", required=True, metavar="FEATURE_INDEX", help="features index file")
    parser.add_argument("-s", "--samples", required=True, metavar="SAMPLE_INDEX",
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
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from destiny.cli.console import console
    from destiny.data.generate import generate_netcdf

    mode = "create" if args.create else "merge" if args.merge else "fixed"
    report = generate_netcdf(args.input, args.output, args.dataset, args.features, args.samples,
                             features=mode, analog=args.type == "analog", exact_width=args.exact_width,
                             value_type=args.value_type)
    say = functools.partial(console().print, markup=False)  # paths may hold [brackets]
    values = "indicator" if report.value_dtype is None else f"analog, {report.value_dtype} values"
    say(f"{args.input}: {report.n_examples:,} samples, {report.nnz:,} datapoints, "
              f"{report.n_features:,} features ({values})")
    if report.width != report.n_features:
        say(f"Width {report.width:,}: {report.n_features:,} features rounded up to a multiple of 128 "
                  "(--exact-width keeps the exact count)")
    say(f"Wrote {args.output} (dataset '{args.dataset}')")
    for wrote, path, added, what in ((report.wrote_features, args.features, report.features_added, "features"),
                                     (report.wrote_samples, args.samples, report.samples_added, "samples")):
        if wrote:
            say(f"Wrote {path} ({added:,} new {what})")
    return 0
