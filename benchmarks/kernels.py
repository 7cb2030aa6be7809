"""Destiny's Triton kernels against their torch references, PyTorch peers and the memory
floor, at the seed's MovieLens shapes (DESIGN.md, performance model).

    PYTHONPATH=src python benchmarks/kernels.py [--batch 1024] [--features 27278] [--hidden 1536]
                                                [--nnz 115] [--repeat 50]

Needs a CUDA GPU. Each op is timed with CUDA events after a warm-up; the table gives the median
of --repeat runs in ms. "floor" is the op's compulsory DRAM traffic (the bytes column) over the
copy bandwidth measured in this run (a large device-to-device copy), so "of floor" = floor /
kernel (1.0 = at the copy bandwidth). "ref" is the pure-torch reference (the spec, the path on
CPU); "peer" is what plain PyTorch would use instead, where there is one. fp32 throughout.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from train_step import timed  # noqa: E402


@dataclass
class Row:
    op: str
    bytes: float
    kernel_ms: float
    ref_ms: float | None = None
    peer_ms: float | None = None
    peer: str = ""


def time_ms(fn: Callable[[], object], repeat: int, warmup: int = 5) -> float:
    """Median milliseconds of fn() over repeat runs, each between two CUDA events."""
    return timed(fn, repeat, warmup)


def copy_bandwidth(repeat: int) -> float:
    """Bytes per ms of a 1 GiB device-to-device copy (read + write)."""
    src = torch.empty(2**28, dtype=torch.float32, device="cuda").uniform_()
    dst = torch.empty_like(src)
    ms = time_ms(lambda: dst.copy_(src), repeat)
    return 2 * src.numel() * 4 / ms


def movielens_batch(batch: int, features: int, mean_nnz: int, seed: int, device: str):
    """A batch of users with popularity-skewed (Zipf 0.8) distinct items, about mean_nnz each:
    Gumbel top-k over the item popularities gives distinct items per user."""
    from destiny.ops.sparse import SparseBatch

    rng = np.random.default_rng(seed)
    lengths = np.clip(rng.lognormal(np.log(mean_nnz) - 0.32, 0.8, size=batch), 5, features).astype(np.int64)
    gen = torch.Generator(device=device).manual_seed(seed)
    log_p = -0.8 * torch.log(torch.arange(1, features + 1, device=device, dtype=torch.float32))
    gumbel = -torch.log(-torch.log(torch.rand(batch, features, device=device, generator=gen).clamp_(1e-20, 1)))
    order = torch.argsort(log_p + gumbel, dim=1, descending=True)
    lengths_t = torch.as_tensor(lengths, device=device)
    keep = torch.arange(features, device=device)[None, :] < lengths_t[:, None]
    indices = order[keep]  # row by row, each row's first lengths[b] picks
    offsets = torch.zeros(batch + 1, dtype=torch.int64, device=device)
    torch.cumsum(lengths_t, 0, out=offsets[1:])
    return SparseBatch(offsets, indices, None, features)


def bench_sparse_linear(x, w, repeat) -> list[Row]:
    from destiny.ops import reference as ref
    from destiny.ops.triton.sparse_linear import sparse_linear_forward
    from destiny.ops.triton.sparse_weight_grad import sparse_weight_grad

    batch, hidden = x.batch_size, w.shape[1]
    unique = int(torch.unique(x.indices).numel())
    grad_out = torch.randn(batch, hidden, device=w.device)
    fwd_bytes = (unique + batch) * hidden * 4 + x.nnz * 8
    grad_bytes = (batch + unique) * hidden * 4 + x.nnz * 8 * 6  # grad_out, rows; sort keys/values, segments
    return [
        Row("sparse_linear forward", fwd_bytes, time_ms(lambda: sparse_linear_forward(x, w), repeat),
            time_ms(lambda: ref.sparse_linear_ref(x, w), repeat)),
        Row("sparse weight gradient", grad_bytes, time_ms(lambda: sparse_weight_grad(x, grad_out), repeat),
            time_ms(lambda: ref.sparse_weight_grad_ref(x, grad_out), repeat)),
    ]


def bench_output_loss(z0, target, repeat) -> list[Row]:
    from destiny.config import Activation, ErrorFunction
    from destiny.nn.activations import ActivationSpec
    from destiny.nn.losses import LossSpec
    from destiny.ops import reference as ref
    from destiny.ops.triton.output_loss import output_loss, output_loss_forward

    batch, width = z0.shape
    spec = LossSpec(ErrorFunction.SCALED_MARGINAL_CROSS_ENTROPY, ActivationSpec(Activation.SIGMOID), 1.0, 0.0, 1.0, 1.0)
    z = z0.clone()
    fused_fwd = time_ms(lambda: output_loss_forward(z, target, spec, write_delta=True, inplace=True), repeat)

    leaf = z0.clone().requires_grad_()

    def fused_step():
        loss = output_loss(leaf.view(batch, width), target, spec, inplace=True)  # a view: not a leaf
        torch.autograd.grad(loss.sum() / batch, leaf)

    def ref_step():
        torch.autograd.grad(ref.output_loss_ref(leaf, target, spec).sum() / batch, leaf)

    def peer_step():  # plain PyTorch: densify the targets, BCE with logits (no margins)
        dense = torch.zeros(batch, width, device=leaf.device)
        dense[target.rows(), target.indices] = 1.0
        loss = torch.nn.functional.binary_cross_entropy_with_logits(leaf, dense, reduction="none").sum(1)
        torch.autograd.grad(loss.sum() / batch, leaf)

    pass_bytes = 2 * batch * width * 4 + target.nnz * 16
    return [
        Row("output loss+delta (SMCE) forward", pass_bytes, fused_fwd),
        Row("output loss+delta (SMCE) fwd+bwd", 2 * pass_bytes, time_ms(fused_step, repeat), time_ms(ref_step, repeat),
            time_ms(peer_step, repeat), "BCE-with-logits, dense target"),
    ]


def bench_dropout(a, repeat) -> list[Row]:
    from destiny.ops import reference as ref
    from destiny.ops.triton.dropout import dropout

    leaf = a.clone().requires_grad_()
    grad = torch.randn_like(a)
    seed = 0x5DEECE66D

    def fused():
        torch.autograd.grad(dropout(leaf, 0.37, seed), leaf, grad)

    def reference():
        torch.autograd.grad(ref.dropout_ref(leaf, 0.37, seed), leaf, grad)

    def peer():
        torch.autograd.grad(torch.nn.functional.dropout(leaf, 0.37, training=True), leaf, grad)

    return [Row("dropout fwd+bwd", 4 * a.numel() * 4, time_ms(fused, repeat), time_ms(reference, repeat),
                time_ms(peer, repeat), "F.dropout (its own RNG, saves a mask)")]


def bench_optimizer(w_in, hidden, unique_rows, repeat) -> list[Row]:
    from destiny.train.optimizers import DsstneOptimizer, Hyperparameters

    rows: list[Row] = []
    # dense Adam on a hidden weight
    w = torch.nn.Parameter(torch.randn(hidden, hidden, device=w_in.device) * 0.01)
    w.grad = torch.randn_like(w)
    opt = DsstneOptimizer({"w": w}, "adam", Hyperparameters(alpha=1e-3))
    from destiny.ops.functional import kernels

    def step(force):
        def run():
            with kernels(force):
                opt.step()
        return run

    peer_param = torch.nn.Parameter(w.detach().clone())
    peer_param.grad = w.grad.clone()
    peer = torch.optim.Adam([peer_param], lr=1e-3, fused=w_in.is_cuda)
    rows.append(Row(f"Adam dense {hidden}×{hidden}", 7 * w.numel() * 4, time_ms(step(True), repeat),
                    time_ms(step(False), repeat), time_ms(peer.step, repeat), "torch.optim.Adam(fused=True)"))
    # row-sparse Adam on the sparse input layer: every row moves (state decay), gradient rows add g
    n, h = w_in.shape
    p = torch.nn.Parameter(w_in.detach().clone())
    features = unique_rows
    grad = torch.sparse_coo_tensor(features.unsqueeze(0), torch.randn(features.numel(), h, device=w_in.device), (n, h),
                                   check_invariants=False)
    grad = grad.coalesce()
    sparse_opt = DsstneOptimizer({"w": p}, "adam", Hyperparameters(alpha=1e-3), regularized={"w"})

    def sparse_step(force):
        def run():
            p.grad = grad
            with kernels(force):
                sparse_opt.step()
        return run

    traffic = (6 * n * h + features.numel() * h) * 4 + n * 4  # w, m, s read + written; gradient rows; slot map
    rows.append(Row(f"Adam row-sparse {n}×{h}, {features.numel()} rows", traffic,
                    time_ms(sparse_step(True), repeat), time_ms(sparse_step(False), repeat)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--features", type=int, default=27_278)
    parser.add_argument("--hidden", type=int, default=1536)
    parser.add_argument("--nnz", type=int, default=115, help="mean nonzeros an example (inputs and targets)")
    parser.add_argument("--repeat", type=int, default=50)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("benchmarks/kernels.py needs a CUDA GPU (it times the Triton kernels against the hardware floor)")
    import triton

    torch.manual_seed(0)
    bandwidth = copy_bandwidth(args.repeat)  # bytes / ms
    x = movielens_batch(args.batch, args.features, args.nnz, seed=1, device="cuda")
    t = movielens_batch(args.batch, args.features, args.nnz, seed=2, device="cuda")
    w_in = torch.randn(args.features, args.hidden, device="cuda") * 0.01
    z = torch.randn(args.batch, args.features, device="cuda") * 2 - 6
    a = torch.relu(torch.randn(args.batch, args.hidden, device="cuda"))

    rows = bench_sparse_linear(x, w_in, args.repeat)
    rows += bench_output_loss(z, t, args.repeat)
    rows += bench_dropout(a, args.repeat)
    rows += bench_optimizer(w_in, args.hidden, torch.unique(x.indices), args.repeat)

    print(f"{torch.cuda.get_device_name()} | torch {torch.__version__} | triton {triton.__version__} | "
          f"copy bandwidth {bandwidth / 1e6:.0f} GB/s")
    print(f"batch {args.batch}, {args.features:,} features, hidden {args.hidden}; inputs {x.nnz / args.batch:.1f} "
          f"nonzeros/example ({int(torch.unique(x.indices).numel()):,} distinct), targets {t.nnz / args.batch:.1f}; "
          f"median of {args.repeat}, ms")
    print_table(rows, bandwidth)


def print_table(rows: list[Row], bandwidth: float) -> None:
    """One line an op: traffic, floor, kernel, its fraction of the floor, reference, peer."""
    head = (f"{'op':<44} {'MB':>8} {'floor':>7} {'destiny':>8} {'of floor':>8} {'ref':>8} {'ref/dst':>7} "
            f"{'peer':>8} {'peer/dst':>8}")
    print(head)
    print("-" * len(head))
    for r in rows:
        floor = r.bytes / bandwidth
        cells = [f"{r.op:<44}", f"{r.bytes / 1e6:>8.1f}", f"{floor:>7.3f}", f"{r.kernel_ms:>8.3f}",
                 f"{floor / r.kernel_ms:>8.2f}"]
        cells += [f"{r.ref_ms:>8.3f}", f"{r.ref_ms / r.kernel_ms:>7.1f}"] if r.ref_ms else [f"{'':>8}", f"{'':>7}"]
        cells += [f"{r.peer_ms:>8.3f}", f"{r.peer_ms / r.kernel_ms:>8.1f}"] if r.peer_ms else [f"{'':>8}", f"{'':>8}"]
        print(" ".join(cells))
    print("peers: " + "; ".join(f"{r.op}: {r.peer}" for r in rows if r.peer))

if __name__ == "__main__":
    main()
