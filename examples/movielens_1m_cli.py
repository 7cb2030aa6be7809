"""MovieLens 1M (implicit) through the command line: lists → DSSTNE text and index → generate
→ train → predict → evaluate, with the most-popular baseline.

    python examples/movielens_1m_cli.py ../shared/data/movielens-1m-implicit [--epochs 20]

The folder holds train.txt and test.txt, one line per user: ``user item item …`` (the ReSN
authors' 80/20 split). The script writes them as DSSTNE text (``user<TAB>item:item:…``) with
one features index over the items of both files, generates the training datasets, trains
``--config`` (default: the DSSTNE talk's MovieLens network with 256-unit hidden layers, the
quick start's), writes the top 20 unseen items of every user with ``destiny predict`` and
evaluates them on test.txt with ``destiny evaluate`` (from the recs file, and from the
network with ``--popularity``). examples/movielens_1m.py does the same through the Python API.
"""

from __future__ import annotations

import argparse
import importlib.resources
import os
import shlex
import sys
import time

from destiny.cli.main import run


def lists_to_text(source: str, target: str) -> tuple[set[str], int, int]:
    """``user item item …`` lines → DSSTNE text; returns (items, users, interactions)."""
    items, users, pairs = set(), 0, 0
    with open(source) as stream, open(target, "w") as out:
        for line in stream:
            parts = line.split()
            if len(parts) < 2:
                continue
            row = list(dict.fromkeys(parts[1:]))
            items.update(row)
            users += 1
            pairs += len(row)
            out.write(f"{parts[0]}\t{':'.join(row)}\n")
    return items, users, pairs


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folder", help="the movielens-1m-implicit folder (train.txt, test.txt)")
    parser.add_argument("--workdir", default="ml1m-cli-work")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--config", help="network JSON (default: destiny's quickstart network)")
    parser.add_argument("--train-options", default="-b 128 --optimizer adam --alpha 0.001 --lambda 0",
                        help="more destiny train options (default: %(default)s)")
    args = parser.parse_args(argv)
    work = args.workdir
    os.makedirs(work, exist_ok=True)
    path = lambda name: os.path.join(work, name)  # noqa: E731
    started = time.perf_counter()

    train_items, users, train_pairs = lists_to_text(os.path.join(args.folder, "train.txt"), path("train.txt"))
    test_items, test_users, test_pairs = lists_to_text(os.path.join(args.folder, "test.txt"), path("test.txt"))
    items = sorted(train_items | test_items, key=int)
    with open(path("features"), "w") as out:
        out.writelines(f"{item}\t{i}\n" for i, item in enumerate(items))
    print(f"MovieLens 1M: {users:,} users, {len(items):,} items; {train_pairs:,} training and {test_pairs:,} held-out "
          f"interactions ({test_users:,} users)")
    for name in ("samples", "network.nc"):
        if os.path.exists(path(name)):
            os.remove(path(name))
    for dataset in ("input", "output"):
        run("generate", "-i", path("train.txt"), "-o", path(f"train_{dataset}.nc"), "-d", dataset,
            "-f", path("features"), "-s", path("samples"))
    config = args.config
    if config is None:
        config = path("config.json")
        with open(config, "w") as stream:
            stream.write(importlib.resources.files("destiny").joinpath("configs/quickstart.json").read_text())
    run("train", "-c", config, "-i", path("train_input.nc"), "-o", path("train_output.nc"), "-n", path("network.nc"),
        "-e", args.epochs, "--quiet", *shlex.split(args.train_options))
    run("predict", "-n", path("network.nc"), "-i", path("features"), "-o", path("features"), "-r", path("train.txt"),
        "-s", path("recs.txt"), "-k", 20)
    run("evaluate", "--recs", path("recs.txt"), "-o", path("features"), "--held-out", path("test.txt"),
        "-k", 1, 5, 10, 20, "--json-out", path("metrics.json"))
    run("evaluate", "-n", path("network.nc"), "-i", path("features"), "-o", path("features"), "-r", path("train.txt"),
        "--held-out", path("test.txt"), "-k", 10, 20, "--popularity", "--json-out", path("metrics_popularity.json"))
    print(f"Whole pipeline: {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
