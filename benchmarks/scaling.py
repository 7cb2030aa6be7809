"""Model-parallel scaling on 1, 2, 4 … GPUs of one host, in one call (issue 8), for the lead to
run on GPUs:

    PYTHONPATH=src python benchmarks/scaling.py          # seed network on 1, 2, 4 GPUs; 10M autoencoder on 1, then 4
    PYTHONPATH=src python benchmarks/scaling.py --parts seed --gpus 1,2,4 --steps 50
    PYTHONPATH=src python benchmarks/scaling.py --parts wide --big-gpus 4 --big-steps 300

seed  the talk's MovieLens network (27,278 sparse inputs → 3 × 1536 ReLU, dropout 0.37 →
      27,278 sigmoid outputs, ScaledMarginalCrossEntropy), batch 1024, momentum SGD,
      synthetic MovieLens-like users: examples/s at each world size, the same steps, and the
      speed-up against 1 GPU measured in the same call (the issue aims at 3× on 4 GPUs).
wide  the 10M-item autoencoder (10,000,000 sparse inputs → 256 → 10,000,000 sigmoid outputs,
      5.1 billion parameters, Adam: 20 GB of weights and 40 GB of optimizer state), synthetic
      users with 1,000 items each (0.01% density): first one GPU (expected: out of memory,
      reported), then --big-gpus GPUs: the loss every 25 steps over --big-steps steps, peak
      memory per GPU, examples/s.

Each world size runs as its own ``torchrun --standalone --nproc-per-node N`` of this file
(``--worker``), the way users launch ``destiny train``; rank 0 hands its numbers back in a
JSON file. Steps go through ``Trainer.step_examples``: captured in CUDA graphs with their NCCL
collectives, as ``destiny train`` does (--eager: every step eager, to compare).

dp    data parallelism's bound (issue 8's optional mode, measured before building it): each
      GPU trains the whole network on batch/N examples while NCCL all-reduces the dense
      gradients' bytes; at best a step takes the longer of the two.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(os.path.dirname(HERE), "src")

sys.path.insert(0, HERE)
from train_step import SEED_CONFIG  # noqa: E402  (the talk's MovieLens network)

WIDE_CONFIG = {
    "Version": 0.8, "Name": "wide-autoencoder", "ShuffleIndices": True, "ErrorFunction": "ScaledMarginalCrossEntropy",
    "ScaledMarginalCrossEntropy": {"oneTarget": 1.0, "zeroTarget": 0.0, "oneScale": 1.0, "zeroScale": 1.0},
    "Layers": [{"Name": "Input", "N": "auto", "DataSet": "input", "Sparse": True},
               {"Name": "Hidden", "N": 256, "Activation": "Relu"},
               {"Name": "Output", "N": "auto", "DataSet": "output", "Sparse": True, "Activation": "Sigmoid",
                "WeightInit": {"Scheme": "Xavier", "Bias": -10.0}}],
}


# ---------------------------------------------------------------------------------------------
# worker: one process of a model-parallel run (under torchrun)


def _data(part: str, args):
    from destiny.data import synthesize

    if part == "seed":
        return synthesize(args.users, args.items, seed=1, mean_items=min(144, args.items / 8))
    return _wide_users(args.big_users, args.big_items, args.big_per_user)


def _wide_users(users: int, items: int, per_user: int):
    """Users with ``per_user`` distinct items each out of ``items`` (numpy, seeded): the same on
    every process. Items cluster in a few thousand topics so the autoencoder has something to
    learn."""
    from destiny.data import SparseDataset

    rng = np.random.default_rng(7)
    topics = 4096
    width = items // topics
    rows = []
    for u in range(users):
        topic = rng.integers(topics, size=4)
        picks = (topic[rng.integers(4, size=per_user)] * width + rng.integers(width, size=per_user)) % items
        rows.append(np.unique(picks))
    offsets = np.zeros(users + 1, np.int64)
    offsets[1:] = np.cumsum([len(r) for r in rows])
    return SparseDataset("input", (items,), offsets, np.concatenate(rows).astype(np.int32))


def sync(world) -> None:
    from destiny.parallel import barrier

    if world.device.type == "cuda":
        torch.cuda.synchronize(world.device)
    barrier(world)


def _seed_config(args):
    from destiny.config import config_from_json

    return config_from_json(json.loads(json.dumps(SEED_CONFIG).replace("1536", str(args.hidden))))


def _card(world) -> str:
    return torch.cuda.get_device_name(world.device) if world.device.type == "cuda" else "CPU"


def _prepare(net, data, batch: int, args, world, optimizer="momentum", hyper=None, cuda_graphs=None):
    """A trainer of ``net`` on ``data`` (input and output), its binding, an epoch's order and the
    length of the window the steps cycle through (its batches reserved: no growth mid-timing)."""
    from destiny.train.binding import Binding
    from destiny.train.optimizers import Hyperparameters
    from destiny.train.trainer import Trainer

    trainer = Trainer(net, optimizer, Hyperparameters(**(hyper or {})), batch_size=batch, progress=False,
                      precision=args.precision, cuda_graphs=cuda_graphs, device=world.device)
    named = data.replace(name="input") if hasattr(data, "replace") else data
    binding = Binding(net, {"input": named, "output": named}, device=world.device)
    order = trainer.order(binding.n_examples, 1).numpy()
    windows = max(batch, (binding.n_examples - batch) // batch * batch)
    trainer.runner(binding).reserve(order[:windows + batch], batch)
    return trainer, binding, order, windows


def _timed(step, first: int, count: int, world) -> float:
    """Seconds for steps first … first + count − 1, every rank finished."""
    sync(world)
    started = time.perf_counter()
    for s in range(first, first + count):
        step(s)
    sync(world)
    return time.perf_counter() - started


def data_parallel_bound(args) -> None:
    """What data parallelism could reach on this host (issue 8's optional mode, measured before
    building it): every rank trains the whole seed network on batch/N examples (one GPU's
    Destiny step, CUDA graphs, all ranks at once), then NCCL all-reduces a buffer the size of the
    network's dense gradients (every matrix but those reading data, whose gradients are sparse
    rows: left out, in data parallelism's favour). Ideal overlap: a step takes the longer of the
    two; none: their sum."""
    import torch.distributed as dist

    from destiny.nn.network import Network
    from destiny.parallel import World, init_from_environment, shutdown

    world = init_from_environment(args.device)
    data = _data("seed", args)
    cfg = _seed_config(args)
    local = args.batch // world.size
    net = Network.from_config(cfg, {"input": data.dims, "output": data.dims}, world=World.single(world.device))
    trainer, binding, order, windows = _prepare(net, data, local, args, world)

    def step(s):
        trainer.step_examples(binding, order[(s * local) % windows:][:local], epoch=1, step=s)

    _timed(step, 0, 5, world)
    compute_ms = 1000 * _timed(step, 5, args.steps, world) / args.steps
    data_layers = {l.name for l in cfg.layers if l.kind.name == "INPUT"}
    dense = sum(math.prod(spec.shape) + spec.bias_size for spec in net.specs if spec.input_layer not in data_layers)
    grads = torch.ones(dense, dtype=torch.float32, device=world.device)
    _timed(lambda _: dist.all_reduce(grads), 0, 3, world)
    reduce_ms = 1000 * _timed(lambda _: dist.all_reduce(grads), 0, 20, world) / 20
    if world.is_root:
        with open(args.result, "w") as f:
            json.dump({"world": world.size, "part": "dp", "device": _card(world),
                       "local_batch": local, "compute_ms": compute_ms, "allreduce_ms": reduce_ms,
                       "dense_gradient_mb": dense * 4 / 1e6,
                       "best_examples_per_s": args.batch / max(compute_ms, reduce_ms) * 1000,
                       "serial_examples_per_s": args.batch / (compute_ms + reduce_ms) * 1000}, f)
    del trainer
    shutdown(world)


def worker(args) -> None:
    from destiny.config import config_from_json
    from destiny.nn.network import Network
    from destiny.parallel import World, all_gather_stack, init_from_environment, shutdown

    world = init_from_environment(args.device) if args.ranks > 1 else World.single(args.device)
    cuda = world.device.type == "cuda"
    part = args.worker
    if not args.eager:  # a capture that stalls: every rank's Python stack on stderr before the launch times out
        import faulthandler

        faulthandler.dump_traceback_later(max(10.0, args.launch_timeout - 30), exit=False)
    data = _data(part, args)
    cfg = _seed_config(args) if part == "seed" else config_from_json(WIDE_CONFIG)
    batch = args.batch if part == "seed" else args.big_batch
    steps = args.steps if part == "seed" else args.big_steps
    result = {"world": world.size, "part": part, "device": _card(world)}
    if cuda:
        torch.cuda.reset_peak_memory_stats(world.device)
    try:
        started = time.perf_counter()
        net = Network.from_config(cfg, {"input": data.dims, "output": data.dims}, world=world)
        optimizer, hyper = ("momentum", {}) if part == "seed" else ("adam", {"alpha": 0.001, "lam": 0.0})
        trainer, binding, order, windows = _prepare(net, data, batch, args, world, optimizer, hyper,
                                                    cuda_graphs=False if args.eager else None)
        result["build_s"] = time.perf_counter() - started
        losses = []

        def step(s):
            start = (s * batch) % windows
            examples = order[start:start + batch]
            trace = not args.eager and world.parallel and s < 3  # where a rank stands, should a capture with NCCL stall
            if trace:
                print(f"rank {world.rank}: step {s} starts ({trainer.graph_status()})", file=sys.stderr, flush=True)
            if part == "wide" and s % 25 == 0:
                losses.append((s, float(trainer.step(binding, examples, 1, s)) / batch))
            else:
                trainer.step_examples(binding, examples, epoch=1, step=s)
            if trace:
                print(f"rank {world.rank}: step {s} queued", file=sys.stderr, flush=True)

        warm = 5 if part == "seed" else 2
        _timed(step, 0, warm, world)
        seconds = _timed(step, warm, steps, world)
        result.update(examples_per_s=steps * batch / seconds, ms_per_step=1000 * seconds / steps,
                      losses=losses, graphs=trainer.graph_status())
        if part == "seed":  # the whole network's hash (rank 0 gathers it): run to run, the same bits?
            from destiny.train.checkpoint import network_to_file

            whole_file = network_to_file(net)
            if whole_file is not None:
                result["fingerprint"] = whole_file.info["fingerprint"]
        if args.profile:  # every rank steps; rank 0 writes the tables
            from torch.profiler import ProfilerActivity, profile

            activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
            with profile(activities=activities) as prof:
                for s in range(warm + steps, warm + steps + 5):
                    step(s)
                sync(world)
            if world.is_root:
                table = prof.key_averages()
                with open(args.profile, "w") as f:
                    f.write(table.table(sort_by="self_cpu_time_total", row_limit=30, max_name_column_width=60))
                    if cuda:
                        f.write(table.table(sort_by="self_cuda_time_total", row_limit=20, max_name_column_width=60))
    except torch.cuda.OutOfMemoryError as exc:
        result["oom"] = str(exc).split("\n")[0][:200]
    peak = torch.tensor([torch.cuda.max_memory_allocated(world.device) if cuda else 0], dtype=torch.float64,
                        device=world.device)
    if "oom" not in result:
        result["peak_gib"] = (all_gather_stack(peak, world).flatten() / 2**30).tolist()
    else:
        result["peak_gib"] = [float(peak) / 2**30]
    if world.is_root:
        with open(args.result, "w") as f:
            json.dump(result, f)
    if "oom" not in result:
        shutdown(world)


# ---------------------------------------------------------------------------------------------
# driver: one torchrun a world size


def launch(part: str, nproc: int, args) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        result = os.path.join(tmp, "result.json")
        forwarded = [f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items()
                     if k in ("users", "items", "hidden", "batch", "steps", "precision", "big_users", "big_items",
                              "big_per_user", "big_batch", "big_steps", "device", "launch_timeout")]
        if args.profile and part == "seed" and nproc == max(map(int, args.gpus.split(","))):
            forwarded.append(f"--profile={os.path.abspath(args.profile)}")
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
                   os.path.abspath(__file__), f"--worker={part}", f"--ranks={nproc}", f"--result={result}",
                   *forwarded, *(["--eager"] if args.eager else [])]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")]))
        # a launch past its time is stopped with its workers, which would otherwise hold the GPUs
        # (and their NCCL kernels) through the next launches
        done = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True)
        try:
            output, _ = done.communicate(timeout=args.launch_timeout)
        except subprocess.TimeoutExpired:  # torchrun stops its workers on SIGTERM (they have sessions of their own)
            os.killpg(done.pid, signal.SIGTERM)
            try:
                output, _ = done.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(done.pid, signal.SIGKILL)
                output, _ = done.communicate()
            if os.path.exists(result):  # measured, then stuck on the way out
                with open(result) as f:
                    return dict(json.load(f), exit=f"did not exit within {args.launch_timeout} s")
            return {"world": nproc, "part": part,
                    "failed": f"no result within {args.launch_timeout} s: {output[-6000:]}"}
        if os.path.exists(result):
            with open(result) as f:
                return json.load(f)
        return {"world": nproc, "part": part, "failed": f"exit {done.returncode}: {output[-6000:]}"}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--parts", default="seed,wide")
    p.add_argument("--gpus", default="1,2,4", help="world sizes of the seed network")
    p.add_argument("--users", type=int, default=30000)
    p.add_argument("--items", type=int, default=27278, help="the seed network's input and output width")
    p.add_argument("--hidden", type=int, default=1536, help="the seed network's hidden width")
    p.add_argument("--batch", type=int, default=1024)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--precision", default="fp32", choices=("fp32", "tf32", "bf16"))
    p.add_argument("--big-gpus", type=int, default=4)
    p.add_argument("--big-users", type=int, default=4000)
    p.add_argument("--big-items", type=int, default=10_000_000)
    p.add_argument("--big-per-user", type=int, default=1000)
    p.add_argument("--big-batch", type=int, default=512)
    p.add_argument("--big-steps", type=int, default=300)
    p.add_argument("--skip-one-gpu", action="store_true", help="wide: do not try the 10M autoencoder on one GPU")
    p.add_argument("--eager", action="store_true", help="steps without CUDA graphs (to compare)")
    p.add_argument("--repeat", type=int, default=1,
                   help="seed: launches a world size (2: the fingerprints show whether runs repeat bit for bit)")
    p.add_argument("--profile", help="the largest world size's rank 0 profiles 5 more steps into this file")
    p.add_argument("--launch-timeout", type=float, default=600, help="seconds a torchrun may take")
    p.add_argument("--device", default="cuda", help="cuda (NCCL); cpu (gloo) only to smoke-test this script")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--ranks", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        data_parallel_bound(args) if args.worker == "dp" else worker(args)
        return
    if args.device == "cpu":  # a smoke test of this script: processes on the CPU
        gpus, names = max(map(int, args.gpus.split(","))), ["CPU (gloo; a smoke test, not a measurement)"]
    else:
        gpus = torch.cuda.device_count()
        if not gpus:
            sys.exit("scaling.py needs CUDA GPUs (or --device cpu for a smoke test)")
        names = sorted({torch.cuda.get_device_name(i) for i in range(gpus)})
    print(f"{gpus} × {', '.join(names)}; torch {torch.__version__}, precision {args.precision}"
          f"{', eager steps' if args.eager else ', CUDA graphs'}")
    parts = args.parts.split(",")
    if "seed" in parts:
        sizes = [n for n in map(int, args.gpus.split(",")) if n <= gpus]
        rows = []
        for n in sizes:
            for _ in range(args.repeat):
                rows.append(launch("seed", n, args))
                print(json.dumps(rows[-1]), flush=True)
        base = next((r["examples_per_s"] for r in rows if r["world"] == 1 and "examples_per_s" in r), None)
        print(f"\nseed network ({args.items:,} → 3 × {args.hidden} → {args.items:,}), batch {args.batch}, "
              f"{args.steps} steps, momentum SGD")
        print(f"{'GPUs':>4}  {'examples/s':>11}  {'ms/step':>8}  {'speed-up':>8}  {'peak GiB per GPU':<24} card")
        for r in rows:
            if "examples_per_s" not in r:
                print(f"{r['world']:>4}  {r.get('failed') or r.get('oom')}")
                continue
            up = f"{r['examples_per_s'] / base:.2f}×" if base else "-"
            peaks = ", ".join(f"{g:.1f}" for g in r["peak_gib"])
            print(f"{r['world']:>4}  {r['examples_per_s']:>11,.0f}  {r['ms_per_step']:>8.2f}  {up:>8}  {peaks:<24} "
                  f"{r['device']}  fingerprint {r.get('fingerprint', '-')}")
    if "dp" in parts:
        print(f"\ndata parallelism's bound, seed network, batch {args.batch} split over the GPUs (not a mode of "
              "Destiny: what one would reach)")
        for n in [n for n in map(int, args.gpus.split(",")) if 1 < n <= gpus]:
            r = launch("dp", n, args)
            print(json.dumps(r), flush=True)
            if "best_examples_per_s" in r:
                print(f"{n} GPUs: batch {r['local_batch']} a GPU {r['compute_ms']:.2f} ms, all-reduce of "
                      f"{r['dense_gradient_mb']:.0f} MB {r['allreduce_ms']:.2f} ms → at best "
                      f"{r['best_examples_per_s']:,.0f} examples/s, without overlap {r['serial_examples_per_s']:,.0f}")
    if "wide" in parts:
        print(f"\n10M-item autoencoder ({args.big_items:,} → 256 → {args.big_items:,}, Adam), "
              f"{args.big_users:,} users × {args.big_per_user:,} items, batch {args.big_batch}, {args.big_steps} steps")
        runs = [] if args.skip_one_gpu else [launch("wide", 1, args)]
        if args.big_gpus <= gpus:
            runs.append(launch("wide", args.big_gpus, args))
        for r in runs:
            print(json.dumps(r), flush=True)
        for r in runs:
            if "examples_per_s" not in r:
                print(f"{r['world']} GPU(s): did not train: {r.get('oom') or r.get('failed')}")
                continue
            peaks = ", ".join(f"{g:.1f}" for g in r["peak_gib"])
            print(f"{r['world']} GPU(s) ({r['device']}): {r['examples_per_s']:,.0f} examples/s, "
                  f"{r['ms_per_step']:.1f} ms/step, build {r['build_s']:.1f} s, peak GiB per GPU: {peaks}")
            print("  loss per example: " + ", ".join(f"step {s}: {loss:.2f}" for s, loss in r["losses"]))


if __name__ == "__main__":
    main()
