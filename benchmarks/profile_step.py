"""Where a Destiny training step spends its time on the GPU (torch.profiler), for the seed
network at batch 1024. Prints the CUDA kernels by total time and the step's wall time.

    PYTHONPATH=src python benchmarks/profile_step.py [--precision tf32] [--steps 10]
"""

from __future__ import annotations

import argparse
import sys

import torch

sys.path.insert(0, "benchmarks")
from train_step import SEED_CONFIG, destiny_step, graph_note, timed, users  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--precision", default="tf32")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--optimizer", default="momentum")
    parser.add_argument("--eager", action="store_true", help="no CUDA graph: see the launches one by one")
    args = parser.parse_args()
    data = users(8000, 27_278, 115, seed=1)
    step, trainer = destiny_step(SEED_CONFIG, data, 1024, args.optimizer, dict(alpha=0.025, lam=0.0, mu=0.5),
                                 args.precision, cuda_graphs=not args.eager)
    print(f"{torch.cuda.get_device_name()}: {timed(step, 20):.2f} ms a step ({args.precision}; {graph_note(trainer)})")
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(args.steps):
            step()
        torch.cuda.synchronize()
    print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=40, max_name_column_width=70))
    return 0


if __name__ == "__main__":
    sys.exit(main())
