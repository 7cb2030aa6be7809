"""``destiny synth``: synthetic data with MovieLens-20M statistics and a taste structure."""

from __future__ import annotations

import argparse
import functools
import os


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "synth", help="write synthetic implicit-feedback data shaped like MovieLens 20M",
        description="Write a synthetic users × items indicator dataset with MovieLens-20M statistics "
                    "(power-law item popularity, log-normal user activity, ≈144 items a user at full "
                    "size: 138,493 users × 27,278 items ≈ 20M interactions) and planted tastes (topics) "
                    "that a model can learn beyond popularity. Deterministic given the seed.")
    parser.add_argument("--like", choices=("movielens-20m",), default="movielens-20m", help="data set to imitate")
    parser.add_argument("--users", type=int, help="number of users (default: the original's)")
    parser.add_argument("--items", type=int, help="number of items (default: the original's)")
    density = parser.add_mutually_exclusive_group()
    density.add_argument("--mean-items", type=float, metavar="K",
                         help="mean items a user (default: 144, at most items/8)")
    density.add_argument("--density", type=float, metavar="D", help="fraction of the users × items cells set")
    parser.add_argument("--topics", type=int, help="planted tastes (default: 24, at most items/20)")
    parser.add_argument("--seed", type=int, required=True, help="random seed")
    parser.add_argument("-o", "--output", required=True, metavar="OUT.nc",
                        help="NetCDF dataset, or DSSTNE text if the name does not end in .nc")
    parser.add_argument("--split", type=float, metavar="F",
                        help="also hold out a fraction F of each user's items as a test file")
    parser.add_argument("--test-output", metavar="PATH", help="test file with --split (default: OUT.test.nc)")
    parser.add_argument("-n", "--name", default="input", help="dataset name (default: %(default)s)")
    parser.set_defaults(run=run, files=files)


def test_path(args: argparse.Namespace) -> str | None:
    """Where the test part goes with --split (default OUT.test.nc beside OUT)."""
    if args.split is None:
        return None
    stem, ext = os.path.splitext(args.output)
    return args.test_output or f"{stem}.test{ext or '.nc'}"


def files(args: argparse.Namespace):
    from destiny.io.outputs import CommandFiles

    return CommandFiles.of(outputs=[("-o", args.output), ("--test-output", test_path(args))])


def check_sizes(args: argparse.Namespace, users: int, items: int) -> None:
    """UsageError naming the flag for --users, --items, --density, --mean-items and --topics out
    of range (``synthesize`` names its parameters, which the command line does not have)."""
    from destiny.errors import UsageError

    for flag, value, least in (("--users", users, 1), ("--items", items, 2)):
        if value < least:
            raise UsageError(f"{flag} {value}: give at least {least}")
    half = f"half the {items:,} items"
    if args.density is not None and not 1 <= args.density * items <= items / 2:
        raise UsageError(f"--density {args.density:g}: give a fraction of the users × items cells from "
                         f"{1 / items:.3g} (one item a user) to 0.5 ({half} a user)")
    if args.mean_items is not None and not 1 <= args.mean_items <= items / 2:
        raise UsageError(f"--mean-items {args.mean_items:g}: give from 1 to {items / 2:g} items a user ({half})")
    if args.density is None and args.mean_items is None and items < 8:
        raise UsageError(f"--items {items}: the default mean items a user is an eighth of the items, less than 1; "
                         "give at least 8 items, or --mean-items K (or --density D) of at least one item a user")
    if args.topics is not None and args.topics < 1:
        raise UsageError(f"--topics {args.topics}: give at least 1 planted taste")


def run(args: argparse.Namespace) -> int:
    from destiny.cli.console import console
    from destiny.data import split_dataset, synthesize, write_netcdf, write_text
    from destiny.data.synth import LIKE
    from destiny.errors import UsageError
    from destiny.io.atomic import staged

    if args.test_output and args.split is None:
        raise UsageError("--test-output needs --split F")
    if args.split is not None and not 0 < args.split < 1:
        raise UsageError(f"--split {args.split}: give a fraction strictly between 0 and 1")
    users = LIKE[args.like].users if args.users is None else args.users
    items = LIKE[args.like].items if args.items is None else args.items
    check_sizes(args, users, items)
    mean_items = args.mean_items if args.density is None else args.density * items
    dataset = synthesize(args.users, args.items, seed=args.seed, like=args.like, mean_items=mean_items,
                         topics=args.topics, name=args.name)
    parts = [dataset]
    paths = [args.output]
    if args.split is not None:
        parts = list(split_dataset(dataset, args.split, args.seed))
        paths.append(test_path(args))
    say = functools.partial(console().print, markup=False)  # paths may hold [brackets]
    say(f"{dataset.n_examples:,} users × {dataset.n_features:,} items, {dataset.nnz:,} interactions "
              f"({dataset.nnz / dataset.n_examples:.1f} a user, density {dataset.density:.3%})")
    with staged() as stage:  # the training and test files, both or neither
        for path, part in zip(paths, parts):
            if path.endswith(".nc"):
                write_netcdf(path, part, stage=stage)
            else:
                write_text(path, part, [str(i + 1) for i in range(part.n_features)],
                           [str(i + 1) for i in range(part.n_examples)], stage=stage)
    for path, part in zip(paths, parts):
        say(f"Wrote {path} ({part.nnz:,} interactions)")
    return 0
