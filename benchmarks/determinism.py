"""Determinism on one GPU: the seed MovieLens network trained for a few hundred steps on
synthetic MovieLens-like data, three times per precision; prints the fingerprints (a hash of
all weights) and the step time. Identical fingerprints within a precision = bitwise identical.

The cost of determinism (``--cost``): the same training with the fastest nondeterministic
variant Destiny could use instead, timed in the same run. Destiny's one order-sensitive sum is
the sparse input layer's weight gradient (a sort of the batch's feature ids, then a segmented
sum of each feature's rows in example order); the variant scatters the rows into place with
atomic adds (``index_add_``, whose order on CUDA changes run to run) and runs with PyTorch's
deterministic mode off. Its rows are checked against the deterministic ones first.

    PYTHONPATH=src python benchmarks/determinism.py [--steps 300] [--precisions fp32,tf32,bf16] [--cost]
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

sys.path.insert(0, "benchmarks")
from train_step import SEED_CONFIG, graph_note, users  # noqa: E402


NOTES: list[str] = []  # how each training ran (CUDA graph replays or eager, and why)


def train(data, precision: str, steps: int, batch: int = 1024) -> tuple[str, float]:
    from destiny.config import config_from_json
    from destiny.nn.network import Network
    from destiny.train.checkpoint import network_to_file
    from destiny.train.optimizers import Hyperparameters
    from destiny.train.trainer import Trainer

    named = data.replace(name="input")
    net = Network.from_config(config_from_json(SEED_CONFIG), {"input": data.dims, "output": data.dims}, seed=12134)
    trainer = Trainer(net, "momentum", Hyperparameters(alpha=0.025, lam=0.0001, mu=0.5), batch_size=batch,
                      device="cuda", progress=False, precision=precision)
    per_epoch = data.n_examples // batch
    epochs = max(1, steps // per_epoch)
    torch.cuda.synchronize()
    start = time.perf_counter()
    trainer.fit({"input": named, "output": named}, epochs)
    torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    NOTES.append(graph_note(trainer))
    return network_to_file(net).info["fingerprint"], 1000 * seconds / (epochs * per_epoch)


def segment_rows_atomic(keys, n_rows, src, src_rows=None, values=None):
    """``segment_rows`` (destiny.ops.triton.sparse_weight_grad) by atomic scatter-add: the same
    features and static shapes (capturable), sums in whatever order the atomics land."""
    from destiny.ops.sparse import RowSparseGrad

    n, width = keys.numel(), src.shape[1]
    cap = min(n, n_rows)
    keys = keys.long()
    present = torch.zeros(n_rows + 1, dtype=torch.bool, device=src.device)
    present.index_fill_(0, keys, True)  # padding keys (n_rows) land in the extra slot; no host copy (capturable)
    features = torch.nonzero_static(present[:n_rows], size=cap, fill_value=n_rows).flatten()
    count = present[:n_rows].sum()
    slot = torch.cumsum(present, 0) - 1  # feature → its row in ``rows``; padding → past the real ones
    rows = torch.zeros(cap + 1, width, dtype=torch.float32, device=src.device)
    real = keys < n_rows  # a padded batch's sentinel slots hold no valid row of src
    at = torch.arange(n, device=src.device) if src_rows is None else src_rows
    picked = src[torch.where(real, at, 0)].float()
    if values is not None:
        picked = picked * values.float()[:, None]
    where = torch.where(real, slot[keys], cap)
    rows.index_add_(0, where, picked)  # atomics on CUDA: nondeterministic order
    return RowSparseGrad(features, rows[:cap].to(src.dtype), count)


def check_atomic_variant() -> None:
    """The variant's features, count and rows against the deterministic kernel's."""
    from destiny.ops.triton import sparse_weight_grad as kernel

    g = torch.Generator(device="cuda").manual_seed(1)
    keys = torch.randint(0, 5000, (20_000,), device="cuda", generator=g)
    keys[-100:] = 5000  # padding
    src = torch.randn(1024, 256, device="cuda", generator=g)
    src_rows = torch.randint(0, 1024, (20_000,), device="cuda", generator=g)
    src_rows[-100:] = 1024  # the padding's rows are out of range, as in a padded batch
    values = torch.rand(20_000, device="cuda", generator=g)
    a = kernel.segment_rows(keys, 5000, src, src_rows, values)
    b = segment_rows_atomic(keys, 5000, src, src_rows, values)
    assert int(a.count) == int(b.count)
    n = int(a.count)
    assert torch.equal(a.features[:n], b.features[:n])
    torch.testing.assert_close(b.rows[:n], a.rows[:n], rtol=1e-5, atol=1e-5)


def cost(data, precisions: list[str], steps: int) -> None:
    """ms a step, deterministic against the atomic variant, one after the other in this run."""
    from destiny.ops.triton import sparse_weight_grad as kernel
    from destiny.train import determinism

    print("\n== cost of determinism: sorted segmented sums (default) against atomic scatter-add, "
          "deterministic mode off")
    check_atomic_variant()
    deterministic = kernel.segment_rows
    for precision in precisions:
        _, ours = train(data, precision, steps)
        kernel.segment_rows = segment_rows_atomic
        torch.use_deterministic_algorithms(False)
        try:
            fingerprints = set()
            for _ in range(2):
                fingerprint, theirs = train(data, precision, steps)
                fingerprints.add(fingerprint)
        finally:
            kernel.segment_rows = deterministic
            determinism._done.discard("cuda")
            determinism.make_deterministic(torch.device("cuda"))
        same = "identical" if len(fingerprints) == 1 else "different"
        print(f"  {precision}: deterministic {ours:.2f} ms a step, atomic {theirs:.2f} ms "
              f"(cost {100 * (ours / theirs - 1):+.1f}%; the atomic runs' fingerprints {same}; "
              f"{NOTES[-1]})")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--precisions", default="fp32,tf32,bf16")
    parser.add_argument("--cost", action="store_true", help="also time the atomic (nondeterministic) variant")
    args = parser.parse_args()
    data = users(30_720, 27_278, 115, seed=5)  # 30 full batches an epoch
    print(f"{torch.cuda.get_device_name()} | torch {torch.__version__} | seed network, batch 1024, "
          f"momentum SGD, {args.steps} steps, dropout 0.37 on")
    for precision in args.precisions.split(","):
        prints = []
        for run in range(args.runs):
            fingerprint, ms = train(data, precision, args.steps)
            prints.append(fingerprint)
            print(f"  {precision} run {run + 1}: fingerprint {fingerprint}  ({ms:.2f} ms a step incl. epoch "
                  f"overheads; {NOTES[-1]})")
        print(f"  {precision}: {'IDENTICAL' if len(set(prints)) == 1 else 'DIFFERENT'}")
    if args.cost:
        cost(data, args.precisions.split(","), args.steps)
    return 0


if __name__ == "__main__":
    sys.exit(main())
