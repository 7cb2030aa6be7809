"""CPU training speed: Destiny against plain PyTorch on the same networks (issue 19).

    PYTHONPATH=src python benchmarks/cpu_train.py [--data ../shared/data] [--network autoencoder,digits]
                                                  [--epochs 3] [--threads 2] [--repeats 3]

Two networks, each trained by both with the same batches, optimizer and hyperparameters.

autoencoder — the network of issue 19: one sigmoid layer of 512 over the items, a Sigmoid output with
CrossEntropy, batch 500, Adam 0.001, no denoising. Data: Last.fm (1,892 users × 17,632 items,
``benchmarks/quality_data.py``'s training split) when --data finds it, else synthetic users of
the same shape. Destiny: ``destiny.Recommender(recipes.sigmoid_autoencoder(...))``. PyTorch:
``nn.EmbeddingBag`` (sum) + sigmoid + ``nn.Linear`` + ``binary_cross_entropy_with_logits`` on
the batch's dense targets + ``torch.optim.Adam``, eager.

digits — the CIFAR strawman's first block on scikit-learn's 8 × 8 digits (1,297 training images,
``examples/cifar_strawman.py``'s split and ``digits_config``): three 96-channel 3 × 3 ReLU
convolutions (dropout 0.2, –, 0.5; the third at stride 2) and a SoftMax output, batch 64, Adam
0.0005 with λ 0.0001 on the weights. Destiny: ``Network`` + ``Trainer`` (dropout masks from its
Philox streams). PyTorch: that example's twin (``Strawman``: ``nn.Conv2d`` + ``F.dropout`` +
``nn.Linear``) + ``F.cross_entropy`` + ``torch.optim.Adam`` (weight_decay on the weights), eager,
on the same uint8 pixels scaled x/256 − 0.5 a batch.

Both shuffle every epoch. The seconds are the epochs' wall time, data preparation outside; the
PyTorch models are built outside the timing, Destiny's autoencoder inside (``Recommender.fit``
builds it) and its digits network outside. The best of --repeats runs, the two taking turns so
that a load on the machine hits both alike.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "examples"))  # cifar_strawman: the digits network and its PyTorch twin


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


# -- digits: the strawman's first block ---------------------------------------------------------


def digits_data():
    """((input, output) Destiny datasets of the 1,297 training images, what they are)."""
    import cifar_strawman

    try:
        return cifar_strawman.digits()[0], "scikit-learn digits"
    except ImportError:  # no scikit-learn: random pixels and labels of the same shape
        from destiny.data import images_to_datasets

        rng = np.random.default_rng(0)
        images = rng.integers(0, 256, size=(1297, 8, 8), dtype=np.uint8)
        return images_to_datasets(images, rng.integers(0, 10, 1297), n_classes=10), "synthetic digits (no scikit-learn)"


def destiny_digits_seconds(data, epochs: int, batch: int) -> float:
    import cifar_strawman
    from destiny.nn.network import Network
    from destiny.train.optimizers import Hyperparameters
    from destiny.train.trainer import Trainer

    train_in, train_out = data
    net = Network.from_config(cifar_strawman.digits_config(), {"input": train_in.dims, "output": train_out.dims},
                              seed=0)
    trainer = Trainer(net, "adam", Hyperparameters(alpha=5e-4, lam=1e-4), batch_size=batch, seed=0, device="cpu",
                      shuffle=True, progress=False)
    start = time.perf_counter()
    trainer.fit({"input": train_in, "output": train_out}, epochs)
    return time.perf_counter() - start


def torch_digits_seconds(data, epochs: int, batch: int) -> float:
    import cifar_strawman

    train_in, train_out = data
    xs = torch.as_tensor(train_in.data)  # (n, 1, 8, 8) uint8
    ys = torch.as_tensor(train_out.indices, dtype=torch.int64)  # one label an image
    n, (c, h, w) = xs.shape[0], xs.shape[1:]
    torch.manual_seed(0)
    model = cifar_strawman.Strawman(c, h, w, 10, cifar_strawman.LAYERS[:3])
    weights = [p for name, p in model.named_parameters() if name.endswith("weight")]
    biases = [p for name, p in model.named_parameters() if name.endswith("bias")]
    opt = torch.optim.Adam([{"params": weights, "weight_decay": 1e-4}, {"params": biases, "weight_decay": 0.0}],
                           lr=5e-4)
    model.train()
    start = time.perf_counter()
    for _ in range(epochs):
        order = torch.randperm(n)
        for lo in range(0, n, batch):
            idx = order[lo:lo + batch]
            loss = F.cross_entropy(model(xs[idx].float() / 256.0 - 0.5), ys[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return time.perf_counter() - start


NETWORKS = {
    "autoencoder": (users, destiny_seconds, torch_seconds, 500,
                    "EmbeddingBag + Linear + BCE-with-logits + Adam, eager"),
    "digits": (lambda data: digits_data(), destiny_digits_seconds, torch_digits_seconds, 64,
               "Conv2d ×3 + dropout + Linear + cross_entropy + Adam, eager"),
}


def describe(network: str, data, what: str) -> str:
    if network == "autoencoder":
        return f"{what}: {data.shape[0]:,} users × {data.shape[1]:,} items, {data.nnz:,} interactions"
    return f"{what}: {data[0].n_examples:,} images of {'×'.join(map(str, data[0].dims))}, 10 classes"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=None, help="the data root holding Last.fm (the autoencoder's users)")
    p.add_argument("--network", default="autoencoder,digits", help="comma-separated: autoencoder, digits")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=None, help="default: 500 (autoencoder), 64 (digits)")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{args.epochs} epochs, {args.threads} threads, torch {torch.__version__}, best of {args.repeats}")
    for network in args.network.split(","):
        if network not in NETWORKS:
            p.error(f"--network: {network!r} is not one of {', '.join(NETWORKS)}")
        load, ours_fn, theirs_fn, batch, peer = NETWORKS[network]
        batch = args.batch or batch
        data, what = load(args.data)
        print(f"\n{network} — {describe(network, data, what)}; batch {batch}")
        ours, theirs = [], []
        for _ in range(args.repeats):  # taking turns: a load on the machine hits both alike
            ours.append(ours_fn(data, args.epochs, batch))
            theirs.append(theirs_fn(data, args.epochs, batch))
        print(f"  Destiny  {min(ours):7.2f} s")
        print(f"  PyTorch  {min(theirs):7.2f} s  ({peer})")
        print(f"  Destiny is {min(theirs) / min(ours):.2f}× PyTorch's speed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
