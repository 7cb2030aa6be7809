"""Streaming datasets against data held in memory, on a MovieLens-20M-sized synthetic set.

1. Data pipeline: one epoch of batches gathered for the device (what the trainer's step
   consumes: ``SparseRows.take`` in memory; ``StreamingRows.plan/stage/take`` from disk with
   background prefetch), shuffled and in order, under a memory budget of a third of the
   data's in-memory size. Prints examples/s and the memory each way used: the process's peak
   resident set above its size before the data were opened (each mode runs in a fresh
   process, libraries loaded first) and, streaming, the ledger's peak (what the streaming
   dataset held). The resident set also holds torch's batch tensors and what the C allocator
   keeps of freed blocks.
2. Training: a small autoencoder trained for one epoch on the first ``--train-users`` users
   (CPU-sized: the seed network's 27K-wide output layer is a GPU's work),
   in memory and streaming (budget a third of that slice): fingerprints (equal = bitwise the
   same weights) and examples/s.

    PYTHONPATH=src python benchmarks/streaming.py [--users 138493] [--items 27278] [--device cpu]
        [--batch 1024] [--train-users 12000] [--train-batch 256] [--hidden 32] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def reset_peak_rss() -> None:
    """Linux: start the peak resident set (VmHWM) again from the current one."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def peak_rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


# -- children (one mode each, in a fresh process) ------------------------------------------------

def pipeline(args) -> dict:
    import torch

    from destiny.data import read_dataset
    from destiny.data.stream import StreamingSparseDataset
    from destiny.ops.sparse import SparseRows
    from destiny.train.step import round_capacity
    from destiny.train.streaming import StreamingRows

    device = torch.device(args.device)
    import netCDF4  # noqa: F401  libraries and first kernels paged in before the baseline, in both modes

    from destiny.data import SparseDataset
    SparseRows(SparseDataset("warm", (4,), [0, 2, 3], [0, 3, 1]), device).take(torch.tensor([1, 0], device=device))
    reset_peak_rss()
    base = rss_bytes()
    started = time.perf_counter()
    if args.mode == "memory":
        data = read_dataset(args.file, "input")
        rows = SparseRows(data, device)
        source = None
    else:
        source = StreamingSparseDataset(args.file, "input", budget=args.budget)
        rows = StreamingRows(source, device)
    opened = time.perf_counter() - started
    n = rows.n_examples
    out = {"mode": args.mode, "open_s": opened}
    for shuffle in (True, False):
        order = np.random.default_rng(1).permutation(n) if shuffle else np.arange(n)
        starts = range(0, n, args.batch)
        capacity = None
        if device.type == "cuda":  # padded batches of a static size, as the CUDA step takes them
            capacity = round_capacity(int(np.add.reduceat(rows.host_lengths[order], np.arange(0, n, args.batch)).max()))
        t = time.perf_counter()
        if source is not None:
            rows.plan(order, args.batch)
        checksum = 0
        for start in starts:
            examples = order[start:start + args.batch]
            if source is not None:
                rows.stage(examples, capacity)
            batch = rows.take(torch.as_tensor(examples, device=device), capacity)
            checksum += int(batch.offsets[-1]) if start % (64 * args.batch) == 0 else 0
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t
        out["shuffled" if shuffle else "in_order"] = {"examples_per_s": n / seconds, "seconds": seconds}
    out["peak_rss_above_start"] = peak_rss_bytes() - base
    if source is not None:
        out["ledger_peak"] = source.ledger.peak
        out["budget"] = source.budget
    return out


def train(args) -> dict:
    from destiny.config import loads_config
    from destiny.data import read_dataset
    from destiny.data.stream import StreamingSparseDataset
    from destiny.nn.network import Network
    from destiny.train.checkpoint import network_to_file
    from destiny.train.trainer import Trainer

    if args.mode == "memory":
        data = read_dataset(args.file, "input")
    else:
        data = StreamingSparseDataset(args.file, "input", budget=args.budget)
    config = loads_config(json.dumps({
        "ErrorFunction": "ScaledMarginalCrossEntropy", "ShuffleIndices": True, "Denoising": {"p": 0.1},
        "Layers": [{"Name": "in", "N": "auto", "DataSet": "input", "Sparse": True},
                   {"Name": "h", "N": args.hidden, "Activation": "Relu", "pDropout": 0.2},
                   {"Name": "out", "N": "auto", "DataSet": "input", "Sparse": True, "Activation": "Sigmoid"}]}))
    net = Network.from_config(config, {"input": data.dims}, seed=12134)
    trainer = Trainer(net, "sgd", batch_size=args.train_batch, progress=False, device=args.device)
    result = trainer.fit({"input": data}, 1)[0]
    out = {"mode": args.mode, "fingerprint": network_to_file(net).info["fingerprint"],
           "examples_per_s": result.examples_per_second, "training_error": result.training_error}
    if args.mode == "stream":
        out["ledger_peak"], out["budget"] = data.ledger.peak, data.budget
    return out


# -- parent ----------------------------------------------------------------------------------------

def child(kind: str, mode: str, path: str, budget: int, args) -> dict:
    command = [sys.executable, __file__, "--child", kind, "--mode", mode, "--file", path, "--budget", str(budget),
               "--batch", str(args.batch), "--device", args.device, "--hidden", str(args.hidden),
               "--train-batch", str(args.train_batch)]
    done = subprocess.run(command, check=True, capture_output=True, text=True, env={**os.environ})
    return json.loads(done.stdout.strip().splitlines()[-1])


def mb(n: float) -> str:
    return f"{n / 1e6:,.1f} MB"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--users", type=int, default=138_493)
    p.add_argument("--items", type=int, default=27_278)
    p.add_argument("--batch", type=int, default=1024)
    p.add_argument("--device", default="cpu")
    p.add_argument("--train-users", type=int, default=12000)
    p.add_argument("--train-batch", type=int, default=256)
    p.add_argument("--hidden", type=int, default=32)
    p.add_argument("--share", type=float, default=3.0, help="the data are this many times the budget")
    p.add_argument("--workdir")
    p.add_argument("--child", choices=("pipeline", "train"), help=argparse.SUPPRESS)
    p.add_argument("--mode", choices=("memory", "stream"), help=argparse.SUPPRESS)
    p.add_argument("--file", help=argparse.SUPPRESS)
    p.add_argument("--budget", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(pipeline(args) if args.child == "pipeline" else train(args)))
        return

    import torch

    from destiny.backend import device_name
    from destiny.data import synthesize, write_netcdf

    workdir = args.workdir or tempfile.mkdtemp(prefix="destiny-streaming-")
    full, part = os.path.join(workdir, "full.nc"), os.path.join(workdir, "part.nc")
    t = time.perf_counter()
    data = synthesize(args.users, args.items, seed=0, name="input")
    write_netcdf(full, data)
    write_netcdf(part, data[:args.train_users])
    size, part_size = data.nbytes, data[:args.train_users].nbytes
    print(f"Synthetic MovieLens-20M-like set: {data.n_examples:,} users × {data.n_features:,} items, "
          f"{data.nnz:,} interactions; {mb(size)} in memory, {mb(os.path.getsize(full))} on disk "
          f"(made in {time.perf_counter() - t:.0f} s)")
    del data
    print(f"Device: {device_name(torch.device(args.device))}; batch {args.batch}; "
          f"{os.cpu_count()} CPU cores; torch {torch.__version__}")
    budget = int(size / args.share)
    print(f"\n1. One epoch of batches for the device, memory budget {mb(budget)} (data / {args.share:g})")
    print(f"{'mode':<10}{'open':>9}{'shuffled ex/s':>16}{'in-order ex/s':>16}{'peak RSS above start':>23}"
          f"{'ledger peak':>14}")
    rows = {mode: child("pipeline", mode, full, budget, args) for mode in ("memory", "stream")}
    for mode, r in rows.items():
        print(f"{mode:<10}{r['open_s']:>8.2f}s{r['shuffled']['examples_per_s']:>16,.0f}"
              f"{r['in_order']['examples_per_s']:>16,.0f}{mb(r['peak_rss_above_start']):>23}"
              f"{mb(r['ledger_peak']) if 'ledger_peak' in r else '-':>14}")
    s, m = rows["stream"], rows["memory"]
    print(f"streaming / in memory: shuffled {s['shuffled']['examples_per_s'] / m['shuffled']['examples_per_s']:.2f}×, "
          f"in order {s['in_order']['examples_per_s'] / m['in_order']['examples_per_s']:.2f}×; "
          f"ledger peak {s['ledger_peak'] / s['budget']:.0%} of the budget")

    part_budget = int(part_size / args.share)
    print(f"\n2. Training one epoch on the first {args.train_users:,} users ({mb(part_size)}; streaming budget "
          f"{mb(part_budget)}), hidden {args.hidden}, batch {args.train_batch}, dropout and denoising on, "
          "shuffled")
    trained = {mode: child("train", mode, part, part_budget, args) for mode in ("memory", "stream")}
    for mode, r in trained.items():
        extra = f", ledger peak {mb(r['ledger_peak'])} of {mb(r['budget'])}" if "ledger_peak" in r else ""
        print(f"{mode:<10} fingerprint {r['fingerprint']}  {r['examples_per_s']:,.0f} examples/s  "
              f"training error {r['training_error']:.6g}{extra}")
    same = trained["memory"]["fingerprint"] == trained["stream"]["fingerprint"]
    print("fingerprints equal: bitwise the same training" if same else "FINGERPRINTS DIFFER")


if __name__ == "__main__":
    main()
