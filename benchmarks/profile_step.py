"""Where a Destiny training step spends its time on the GPU (torch.profiler), for the seed
network at batch 1024. Prints the CUDA kernels by total time and the step's wall time, then
the floors to hold them against: each dense product in its fastest layout (train_step's
``gemm_floor``), the optimizer's bytes and the input layer's gather at the copy bandwidth.

    PYTHONPATH=src python benchmarks/profile_step.py [--precision tf32] [--steps 10]
"""

from __future__ import annotations

import argparse
import sys

import torch

sys.path.insert(0, "benchmarks")
from train_step import (SEED_CONFIG, copy_bandwidth, destiny_step, gemm_floor, graph_note,  # noqa: E402
                        parameter_count, timed, users)


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
    print(f"(totals over {args.steps} steps: divide by {args.steps} for a step)")
    bandwidth = copy_bandwidth()  # bytes a ms
    width, hidden, batch = data.n_features, [1536] * 3, 1024
    print(f"\nfloors a step at {args.precision} (copy bandwidth {bandwidth / 1e6:.0f} GB/s):")
    products = gemm_floor(batch, width, hidden, args.precision, 20, verbose=True)
    params = parameter_count(width, hidden)
    nnz = data.nnz / data.n_examples * batch
    element = 2 if args.precision == "bf16" else 4
    gather = nnz * hidden[0] * 4 / bandwidth * 2  # read each example's weight rows; the gradient reads them again
    print(f"  dense products {products:.3f} ms; optimizer {params / 1e6:.1f}M params × 20 B: "
          f"{params * 20 / bandwidth:.3f} ms; input gather-sum + its gradient ({nnz:,.0f} rows of {hidden[0]}): "
          f"{gather:.3f} ms; output loss (read + write {batch} × {width:,}): {2 * batch * width * 4 / bandwidth:.3f} ms; "
          f"each hidden layer's bias + activation + dropout, forward and backward: "
          f"{4 * batch * hidden[0] * element / bandwidth:.3f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
