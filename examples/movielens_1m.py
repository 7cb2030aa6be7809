"""Train the DSSTNE talk's MovieLens network on MovieLens 1M (implicit) and measure P@10.

    python examples/movielens_1m.py ../shared/data/movielens-1m-implicit [destiny train options]

The folder holds train.txt and test.txt, one line per user: "user item item ...". The script
writes them as DSSTNE NetCDF datasets, runs `destiny train` with the seed network
(examples/configs/movielens-20m.json), then recommends 10 unseen items per user and computes
P@10, Recall@10 and NDCG@10 on test.txt with plain numpy, next to the most-popular baseline.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

from destiny.cli.main import main as destiny
from destiny.data import SparseDataset, write_netcdf
from destiny.predict.recommend import popularity, recommend
from destiny.train.checkpoint import load_network

HERE = os.path.dirname(os.path.abspath(__file__))


def read_lists(path: str, width: int | None = None) -> tuple[dict[int, np.ndarray], int]:
    rows = {}
    with open(path) as stream:
        for line in stream:
            parts = line.split()
            if parts:
                rows[int(parts[0])] = np.array(sorted(set(map(int, parts[1:]))), dtype=np.int32)
    top = max(int(r.max()) for r in rows.values() if len(r)) + 1
    return rows, max(top, width or 0)


def to_dataset(rows: dict[int, np.ndarray], users: int, width: int, name: str) -> SparseDataset:
    lengths = np.array([len(rows.get(u, ())) for u in range(users)], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    indices = np.concatenate([rows.get(u, np.zeros(0, np.int32)) for u in range(users)])
    return SparseDataset(name, (width,), offsets, indices)


def precision_recall_ndcg(recs: np.ndarray, truth: list[set]) -> tuple[float, float, float]:
    """Plain numpy/Python definitions, over users with at least one test item."""
    p, r, n = [], [], []
    discount = 1 / np.log2(np.arange(2, recs.shape[1] + 2))
    for items, relevant in zip(recs, truth):
        if not relevant:
            continue
        hits = np.array([i in relevant for i in items], dtype=float)
        p.append(hits.sum() / len(items))
        r.append(hits.sum() / len(relevant))
        n.append((hits * discount).sum() / discount[:min(len(items), len(relevant))].sum())
    return float(np.mean(p)), float(np.mean(r)), float(np.mean(n))


def run(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folder", help="folder with train.txt and test.txt")
    parser.add_argument("--workdir", default="ml1m-work")
    parser.add_argument("--config", default=os.path.join(HERE, "configs", "movielens-20m.json"))
    args, train_options = parser.parse_known_args(argv)  # the rest goes to destiny train
    train_options = [o for o in train_options if o != "--"]
    os.makedirs(args.workdir, exist_ok=True)
    train_rows, width = read_lists(os.path.join(args.folder, "train.txt"))
    test_rows, width = read_lists(os.path.join(args.folder, "test.txt"), width)
    users = max(max(train_rows), max(test_rows)) + 1
    train = to_dataset(train_rows, users, width, "input")
    paths = {name: os.path.join(args.workdir, f"{name}.nc") for name in ("input", "output")}
    write_netcdf(paths["input"], train)
    write_netcdf(paths["output"], train.replace(name="output"))
    print(f"MovieLens 1M: {users} users, {width} item columns, {train.nnz} training interactions, "
          f"{sum(len(v) for v in test_rows.values())} held out")
    network_path = os.path.join(args.workdir, "network.nc")
    if os.path.exists(network_path):
        os.remove(network_path)
    started = time.perf_counter()
    status = destiny(["train", "-c", args.config, "-i", paths["input"], "-o", paths["output"], "-n", network_path,
                      *train_options])
    if status:
        return status
    print(f"training took {time.perf_counter() - started:.0f} s")
    network = load_network(network_path)
    _, recs = recommend(network, {"input": train}, 10, exclude=train)
    _, popular = popularity(train, 10)
    truth = [set(test_rows.get(u, np.zeros(0)).tolist()) for u in range(users)]
    for name, r in (("Destiny", recs), ("Most popular", popular)):
        p, rec, ndcg = precision_recall_ndcg(r, truth)
        print(f"{name:>12}: P@10 {p:.4f}  Recall@10 {rec:.4f}  NDCG@10 {ndcg:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(run())
