"""DSSTNE's MovieLens-20M sample (1,024 users) end to end with the CLI: generate → train →
predict → evaluate, on a seeded 80/20 split of each user's movies.

    python examples/movielens_20m_sample.py ../shared/data/movielens-20m-dsstne-1024 [--epochs 40]

The folder holds movielens_input_1024.txt (DSSTNE text: ``user<TAB>movie,timestamp:…``) and
index.txt (the features index of DSSTNE's trained ml-20m autoencoder, 26,744 movies). The script

1. holds out 20% of each user's movies (``destiny.data.split_dataset``, seed 12134) and writes
   train.txt and test.txt in DSSTNE text;
2. ``destiny generate`` twice (datasets ``input`` and ``output``, the same samples index);
3. ``destiny train`` DSSTNE's own MovieLens sample network (samples/movielens/config.json:
   128 sparse sigmoid hidden units, denoising 0.2, sparseness penalty) or ``--config`` a file;
4. ``destiny predict`` the top 20 unseen movies of every user (seen items removed);
5. ``destiny evaluate`` the recs file against test.txt at K = 1, 5, 10, 20, and the network
   itself with the most-popular baseline (``--popularity``);
6. compares, for scale, the top 16 (seen items kept) with DSSTNE's reference output
   expected_output_1024.txt (a network trained on all of ml-20m, which does not filter).

Every command is printed as it could be typed in a shell. CPU: about two minutes for 40 epochs.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sys
import time

import numpy as np

from destiny.cli.main import run
from destiny.data import labels_by_index, read_index, read_text, split_dataset, write_text

DSSTNE_SAMPLE_CONFIG = {  # samples/movielens/config.json of amzn/amazon-dsstne, dataset names input/output
    "Version": 0.7, "Name": "AE", "Kind": "FeedForward",
    "SparsenessPenalty": {"p": 0.5, "beta": 2.0},
    "ShuffleIndices": False,
    "Denoising": {"p": 0.2},
    "ScaledMarginalCrossEntropy": {"oneTarget": 1.0, "zeroTarget": 0.0, "oneScale": 1.0, "zeroScale": 1.0},
    "Layers": [
        {"Name": "Input", "Kind": "Input", "N": "auto", "DataSet": "input", "Sparse": True},
        {"Name": "Hidden", "Kind": "Hidden", "Type": "FullyConnected", "N": 128, "Activation": "Sigmoid",
         "Sparse": True},
        {"Name": "Output", "Kind": "Output", "Type": "FullyConnected", "DataSet": "output", "N": "auto",
         "Activation": "Sigmoid", "Sparse": True},
    ],
    "ErrorFunction": "ScaledMarginalCrossEntropy",
}


def split(folder: str, work: str, seed: int) -> None:
    index = read_index(os.path.join(folder, "index.txt"))
    data = read_text(os.path.join(folder, "movielens_input_1024.txt"), features=index, add_features=False)
    train, test = split_dataset(data.dataset, 0.2, seed=seed)
    features, samples = labels_by_index(index), labels_by_index(data.samples)
    write_text(os.path.join(work, "train.txt"), train, features, samples)
    write_text(os.path.join(work, "test.txt"), test, features, samples)
    print(f"{data.dataset.n_examples:,} users, {data.dataset.nnz:,} ratings of {len(set(data.dataset.indices)):,} "
          f"movies; {train.nnz:,} to train on, {test.nnz:,} held out (seed {seed})")


def overlap_with_dsstne(recs: str, expected: str) -> float:
    """Mean |our top 16 ∩ DSSTNE's top 16| / 16 over the users of both files."""
    def lists(path):
        out = {}
        with open(path) as stream:
            for line in stream:
                user, _, body = line.rstrip("\n").partition("\t")
                out[user] = [p.split(",")[0] for p in body.split(":") if p][:16]
        return out
    ours, theirs = lists(recs), lists(expected)
    common = [u for u in theirs if u in ours]
    return float(np.mean([len(set(ours[u]) & set(theirs[u])) / 16 for u in common]))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folder", help="the movielens-20m-dsstne-1024 folder")
    parser.add_argument("--workdir", default="ml20m-sample-work")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--config", help="network JSON (default: DSSTNE's MovieLens sample network)")
    parser.add_argument("--seed", type=int, default=12134, help="split and training seed (default 12134)")
    parser.add_argument("--train-options", default="-b 64 --optimizer adam --alpha 0.01 --lambda 0",
                        help="more destiny train options (default: %(default)s)")
    args = parser.parse_args(argv)
    work = args.workdir
    os.makedirs(work, exist_ok=True)
    path = lambda name: os.path.join(work, name)  # noqa: E731
    started = time.perf_counter()

    split(args.folder, work, args.seed)
    shutil.copyfile(os.path.join(args.folder, "index.txt"), path("features"))
    for name in ("samples",):
        if os.path.exists(path(name)):
            os.remove(path(name))
    for dataset in ("input", "output"):
        run("generate", "-i", path("train.txt"), "-o", path(f"train_{dataset}.nc"), "-d", dataset,
            "-f", path("features"), "-s", path("samples"))
    config = args.config or path("config.json")
    if not args.config:
        with open(config, "w") as stream:
            json.dump(DSSTNE_SAMPLE_CONFIG, stream, indent=1)
    if os.path.exists(path("network.nc")):
        os.remove(path("network.nc"))
    run("train", "-c", config, "-i", path("train_input.nc"), "-o", path("train_output.nc"), "-n", path("network.nc"),
        "-e", args.epochs, "--seed", args.seed, "--quiet", *shlex.split(args.train_options))
    run("predict", "-n", path("network.nc"), "-d", "input", "-i", path("features"), "-o", path("features"),
        "-r", path("train.txt"), "-s", path("recs.txt"), "-k", 20)
    run("evaluate", "--recs", path("recs.txt"), "-o", path("features"), "--held-out", path("test.txt"),
        "-k", 1, 5, 10, 20, "--json-out", path("metrics.json"))
    run("evaluate", "-n", path("network.nc"), "-i", path("features"), "-o", path("features"), "-r", path("train.txt"),
        "--held-out", path("test.txt"), "-k", 10, "--popularity", "--json-out", path("metrics_popularity.json"))
    expected = os.path.join(args.folder, "expected_output_1024.txt")
    if os.path.exists(expected):
        run("predict", "-n", path("network.nc"), "-i", path("features"), "-o", path("features"),
            "-r", os.path.join(args.folder, "movielens_input_1024.txt"), "-s", path("recs_all_16.txt"), "-k", 16,
            "--no-filter-seen", "--quiet")
        print(f"Top 16 with seen items kept vs DSSTNE's reference output: "
              f"{overlap_with_dsstne(path('recs_all_16.txt'), expected):.1%} overlap on average")
    print(f"Whole pipeline: {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
