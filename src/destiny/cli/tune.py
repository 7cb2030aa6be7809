"""``destiny tune``: search recipes and hyper-parameters on a validation split (``destiny.tune``)
and write the best network's DSSTNE JSON, its fitted network and the trials.

    destiny tune -i train.nc --validation val.nc --budget 300 -o best.json -n best.nc --history trials.json

TRAIN.nc holds the users' training items (one sparse dataset, or name it with --dataset);
VAL.nc their held-out items, one row per user in the same order, with the same item columns.
"""

from __future__ import annotations

import argparse
import json
import os

from destiny.errors import DataError, UsageError


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "tune", help="search recipes and settings on a validation split (Optuna) and write the best network",
        description="Train autoencoder recipes (Mult-VAE, Mult-DAE, EASE as a network, a hybrid, DSSTNE's sigmoid "
                    "autoencoder) with settings chosen by Optuna on the training users' items, score each on their "
                    "held-out items (validation NDCG@100, early stopping at the best epoch), and write the best "
                    "network as DSSTNE JSON (-o; its layers read the datasets 'input' and 'output') with its "
                    "trained weights (-n) within a wall-clock budget. Trials run one after another, or one a GPU "
                    "with --device cuda on a host with several.")
    p.add_argument("-i", "--input", required=True, metavar="TRAIN.nc", help="NetCDF file with the training items "
                   "(users × items, sparse)")
    p.add_argument("--validation", required=True, metavar="VAL.nc",
                   help="NetCDF file with the held-out items of the same users (one row each, same item columns)")
    p.add_argument("--dataset", metavar="NAME",
                   help="dataset of TRAIN.nc (and of VAL.nc, where it has one of that name) when a file holds "
                        "several (default: the only one, else 'input' and 'output')")
    p.add_argument("--budget", type=float, required=True, metavar="SECONDS",
                   help="wall-clock seconds for the whole search; no trial starts after it")
    p.add_argument("--trials", type=int, metavar="N", help="the most trials to run (default: as many as the budget "
                   "allows); with the same --seed, N trials that all fit in the budget give the same result")
    p.add_argument("--seed", type=int, default=0, help="seed of the search and of every network (default 0)")
    p.add_argument("--device", default="auto",
                   help="auto (CUDA if present), cpu, cuda (every GPU, one trial each) or cuda:N")
    p.add_argument("--recipes", metavar="NAMES",
                   help="comma-separated recipes to search (default all: " + _recipe_names() + ")")
    p.add_argument("--max-epochs", type=int, default=200, metavar="N", help="epochs a trial trains at most (default 200)")
    p.add_argument("--patience", type=int, default=10, metavar="N",
                   help="validations without improvement before a trial stops (default 10)")
    p.add_argument("--precision", default="fp32", choices=("fp32", "tf32", "bf16"), help="matrix arithmetic of every "
                   "trial (default fp32)")
    p.add_argument("-o", "--output", required=True, metavar="BEST.json", help="the best network's DSSTNE JSON to write")
    p.add_argument("-n", "--network", required=True, metavar="BEST.nc", help="the best network's weights to write "
                   "(its best epoch, trained on TRAIN.nc)")
    p.add_argument("--history", metavar="TRIALS.json", help="write every trial (settings, epochs, metrics, seconds, "
                   "state) and the best parameters to this JSON file")
    p.add_argument("--force", action="store_true", help="overwrite BEST.nc if it exists")
    p.add_argument("--quiet", action="store_true", help="no table of trials")
    p.set_defaults(run=run, files=files)


def files(args: argparse.Namespace):
    from destiny.io.outputs import CommandFiles

    return CommandFiles.of([("-i", args.input), ("--validation", args.validation)],
                           [("-o", args.output), ("-n", args.network), ("--history", args.history)])


def _recipe_names() -> str:
    from destiny.tune.space import SPACE

    return ", ".join(SPACE)


def _check(args: argparse.Namespace) -> None:
    import math

    if not math.isfinite(args.budget) or args.budget <= 0:
        raise UsageError(f"--budget {args.budget:g}: give a positive number of seconds")
    if args.trials is not None and args.trials < 1:
        raise UsageError(f"--trials {args.trials}: give a positive number of trials")
    if args.max_epochs < 1 or args.patience < 0:
        raise UsageError("--max-epochs must be positive and --patience at least 0")
    for path, flag in ((args.input, "-i"), (args.validation, "--validation")):
        if not os.path.isfile(path):
            raise UsageError(f"{flag} {path}: no such file")
    if os.path.exists(args.network) and not args.force:
        raise UsageError(f"{args.network} exists: remove it, name another file, or pass --force")


def _pick(datasets: list, path: str, name: str | None, fallback: str):
    """The dataset of a file: ``name``, else the only one, else the one called ``fallback``."""
    by_name = {d.name: d for d in datasets}
    if name is not None and name in by_name:
        return by_name[name]
    if len(datasets) == 1:
        return datasets[0]
    if name is None and fallback in by_name:
        return by_name[fallback]
    raise DataError(f"{path} holds the datasets {', '.join(by_name) or '(none)'}; name the one to use with --dataset")


def load_split(args: argparse.Namespace):
    """(train, validation) SparseDatasets of the command line; DataError when they are not
    sparse, differ in width or in their numbers of users."""
    from destiny.data import SparseDataset, read_netcdf

    train = _pick(read_netcdf(args.input), args.input, args.dataset, "input")
    held = _pick(read_netcdf(args.validation), args.validation, args.dataset, "output")
    for data, path in ((train, args.input), (held, args.validation)):
        if not isinstance(data, SparseDataset):
            raise DataError(f"dataset '{data.name}' of {path} is dense; destiny tune needs sparse users × items rows")
    if tuple(held.dims) != tuple(train.dims):
        raise DataError(f"{args.validation} ('{held.name}') is {_dims(held)} items wide but {args.input} "
                        f"('{train.name}') is {_dims(train)}: write both with the same item index "
                        "(generate --features)")
    if held.n_examples != train.n_examples:
        raise DataError(f"{args.validation} has {held.n_examples:,} users but {args.input} {train.n_examples:,}: the "
                        "held-out items must be those of the training users, one row each in the same order")
    return train, held


def _dims(data) -> str:
    return " × ".join(f"{d:,}" for d in data.dims)


def run(args: argparse.Namespace) -> int:
    import destiny.tune
    from destiny.cli.console import console
    from destiny.io.atomic import atomic_open
    from destiny.tune.space import describe

    _check(args)
    out = console()
    train, held = load_split(args)
    recipes = [r.strip() for r in args.recipes.split(",") if r.strip()] if args.recipes else None
    out.print(f"Tuning on {train.n_examples:,} users × {train.n_features:,} items ({train.nnz:,} training, "
              f"{held.nnz:,} held-out items) for {args.budget:g} s")
    model = destiny.tune.tune(train, held, budget_s=args.budget, device=args.device, seed=args.seed,
                              n_trials=args.trials, recipes=recipes, max_epochs=args.max_epochs,
                              patience=args.patience, precision=args.precision,
                              progress=False if args.quiet else None)
    best = next(t for t in model.trials_ if t["number"] == model.best_trial_)
    with atomic_open(args.output) as stream:
        json.dump(model.best_params_["config"], stream, indent=4)
        stream.write("\n")
    fingerprint = model.save(args.network)
    if args.history:
        with atomic_open(args.history) as stream:
            json.dump(history(model, args), stream, indent=2, default=str)
            stream.write("\n")
    states = [t["state"] for t in model.trials_]
    out.print(f"{len(states)} trials ({states.count('COMPLETE')} complete, {states.count('PRUNED')} pruned, "
              f"{states.count('FAIL')} failed). Best: trial {best['number']}, {best['recipe']} "
              f"({describe(best['params'])}), {model.monitor} {model.best_score_:.4f} at epoch {best['best_epoch']}",
              soft_wrap=True)
    fit = {k: model.best_params_[k] for k in ("epochs", "batch_size", "optimizer", "alpha", "lam")}
    out.print(f"Wrote {args.output} and {args.network} (fingerprint {fingerprint}); train it again with "
              f"{describe(fit)}", soft_wrap=True)
    return 0


def history(model, args: argparse.Namespace) -> dict:
    """The --history document: the command's settings, the best trial and parameters, every trial."""
    return {"train": args.input, "validation": args.validation, "budget_s": args.budget, "seed": args.seed,
            "device": args.device, "best_trial": model.best_trial_, "best_score": model.best_score_,
            "best_params": model.best_params_, "trials": model.trials_}
