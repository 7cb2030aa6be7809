"""Determinism on one GPU: the seed MovieLens network trained for a few hundred steps on
synthetic MovieLens-like data, three times per precision; prints the fingerprints (a hash of
all weights) and the step time. Identical fingerprints within a precision = bitwise identical.

    PYTHONPATH=src python benchmarks/determinism.py [--steps 300] [--precisions fp32,tf32,bf16]
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

sys.path.insert(0, "benchmarks")
from train_step import SEED_CONFIG, users  # noqa: E402


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
    return network_to_file(net).info["fingerprint"], 1000 * seconds / (epochs * per_epoch)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--precisions", default="fp32,tf32,bf16")
    args = parser.parse_args()
    data = users(30_720, 27_278, 115, seed=5)  # 30 full batches an epoch
    print(f"{torch.cuda.get_device_name()} | torch {torch.__version__} | seed network, batch 1024, "
          f"momentum SGD, {args.steps} steps, dropout 0.37 on")
    for precision in args.precisions.split(","):
        prints = []
        for run in range(args.runs):
            fingerprint, ms = train(data, precision, args.steps)
            prints.append(fingerprint)
            print(f"  {precision} run {run + 1}: fingerprint {fingerprint}  ({ms:.2f} ms a step incl. epoch overheads)")
        print(f"  {precision}: {'IDENTICAL' if len(set(prints)) == 1 else 'DIFFERENT'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
