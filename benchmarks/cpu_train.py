"""CPU training speed: Destiny against plain PyTorch on the same autoencoder (issue 19).

    PYTHONPATH=src python benchmarks/cpu_train.py [--data ../shared/data] [--epochs 3] [--threads 2]

The network of issue 19: one sigmoid layer of 512 over the items, a Sigmoid output with
CrossEntropy, batch 500, Adam 0.001, no denoising. Data: Last.fm (1,892 users × 17,632 items,
``benchmarks/quality_data.py``'s training split) when --data finds it, else synthetic users of
the same shape. Destiny: ``destiny.Recommender(recipes.sigmoid_autoencoder(...))``. PyTorch:
``nn.EmbeddingBag`` (sum) + sigmoid + ``nn.Linear`` + ``binary_cross_entropy_with_logits`` on
the batch's dense targets + ``torch.optim.Adam``, eager. Both shuffle every epoch; the seconds
are the epochs' wall time (data preparation outside), the best of --repeats runs.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))


def users(data: str | None) -> tuple[sp.csr_matrix, str]:
    """(users × items CSR float32, what it is)."""
    import quality_data

    try:
        split = quality_data.load("lastfm", quality_data.data_root(data), 0)
        return split.train.tocsr().astype(np.float32), "Last.fm training split"
    except Exception as exc:  # noqa: BLE001 — no data here: synthetic users of the same shape
        rng = np.random.default_rng(0)
        n, m, per = 1892, 17_632, 35
        rows = [np.sort(rng.choice(m, size=per, replace=False)) for _ in range(n)]
        indptr = np.arange(0, n * per + 1, per)
        x = sp.csr_matrix((np.ones(n * per, np.float32), np.concatenate(rows), indptr), shape=(n, m))
        return x, f"synthetic ({type(exc).__name__}: no Last.fm)"


def destiny_seconds(x, epochs: int, batch: int) -> float:
    import destiny
    from destiny.recipes import sigmoid_autoencoder

    model = destiny.Recommender(sigmoid_autoencoder(hidden=512, denoising=0.0), epochs=epochs, batch_size=batch,
                                optimizer="adam", alpha=1e-3, device="cpu")
    start = time.perf_counter()
    model.fit(x)
    return time.perf_counter() - start


def torch_seconds(x, epochs: int, batch: int) -> float:
    n, m = x.shape
    torch.manual_seed(0)
    bag, out = torch.nn.EmbeddingBag(m, 512, mode="sum"), torch.nn.Linear(512, m)
    opt = torch.optim.Adam([*bag.parameters(), *out.parameters()], lr=1e-3)
    start = time.perf_counter()
    for _ in range(epochs):
        order = torch.randperm(n).numpy()
        for lo in range(0, n, batch):
            sub = x[order[lo:lo + batch]]
            idx = torch.from_numpy(sub.indices.astype(np.int64))
            offsets = torch.from_numpy(sub.indptr[:-1].astype(np.int64))
            z = out(torch.sigmoid(bag(idx, offsets)))
            loss = torch.nn.functional.binary_cross_entropy_with_logits(
                z, torch.from_numpy(sub.toarray()), reduction="sum") / sub.shape[0]
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return time.perf_counter() - start


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=None)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=500)
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    x, what = users(args.data)
    print(f"{what}: {x.shape[0]:,} users × {x.shape[1]:,} items, {x.nnz:,} interactions; {args.epochs} epochs, "
          f"batch {args.batch}, {args.threads} threads, torch {torch.__version__}")
    ours = min(destiny_seconds(x, args.epochs, args.batch) for _ in range(args.repeats))
    theirs = min(torch_seconds(x, args.epochs, args.batch) for _ in range(args.repeats))
    print(f"Destiny  {ours:7.2f} s")
    print(f"PyTorch  {theirs:7.2f} s  (EmbeddingBag + Linear + BCE-with-logits + Adam, eager)")
    print(f"Destiny is {theirs / ours:.2f}× PyTorch's speed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
