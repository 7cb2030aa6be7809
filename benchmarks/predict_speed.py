"""Top-10 prediction for every user, Destiny against PyTorch forward + topk, in one run on one
GPU (issue 6); run through ``benchmarks/train_step.py --parts predict`` (its options
--predict-users, --items, --method, --predict-variants; --device cpu for a smoke run)."""

from __future__ import annotations

import math
import statistics
import sys
import time

import numpy as np
import torch

sys.path.insert(0, "benchmarks")
from train_step import SEED_CONFIG, Peer  # noqa: E402


PREDICT_BATCHES = (2048, 4096, 8192, 16384)


def copy_weights(net, peer) -> None:
    """Destiny's seed network's weights into the PyTorch peer (padded output columns: weight 0,
    bias −inf, so they never rank), so both score the same function."""
    chain = {s.input_layer: s for s in net.specs}
    layer = net.input_layers()[0].name
    width = peer.out.weight.shape[0]
    with torch.no_grad():
        for i, module in enumerate([peer.input, *peer.hidden, peer.out]):
            spec = chain[layer]
            w, b = net.weight(spec), net.bias(spec)
            if i == 0:  # EmbeddingBag: (items + padding row, units)
                module.weight[:w.shape[0]].copy_(w)
                peer.input_bias.copy_(b)
            else:  # Linear: (out, in)
                module.weight[:w.shape[1]].copy_(w.t())
                module.bias[:b.shape[0]].copy_(b)
                width = w.shape[1]
            layer = spec.output_layer
        peer.out.weight[width:].zero_()
        peer.out.bias[width:] = -math.inf


def run_predict(data, steps: int, device: str = "cuda", method: str = "auto", check_users: int = 8192,
                variants: list[tuple[int, int | None]] | None = None) -> None:
    """Top-10 unseen items for every user: Destiny's ``recommend`` (``method``: "auto" is the
    certified candidates on CUDA) against PyTorch forward + mask + topk (the same weights, the
    output padded to a multiple of 16; no sigmoid: it does not change the order) in FP32 and in
    TF32, each at its fastest batch size of PREDICT_BATCHES, in the same run; then, on the first
    ``check_users`` users, every method's items against a float64 brute force (and the rows
    Destiny scored over the whole width); then one batch's parts."""
    from destiny.config import config_from_json
    from destiny.nn.network import Network
    from destiny.predict.recommend import recommend

    sys.path.insert(0, "benchmarks")
    from train_step import aligned, matmul_mode

    print(f"\n== predict: top-10 unseen items for {data.n_examples:,} users × {data.n_features:,} items, "
          f"seed network, Destiny's default batch (16,384 on a GPU) and chunk, method {method!r}; "
          f"PyTorch in FP32 and TF32 at batches {', '.join(map(str, PREDICT_BATCHES))} (its fastest counts); "
          "both from the host's arrays to the top-10 items on the host")
    cfg = config_from_json(SEED_CONFIG)
    named = data.replace(name="input")
    net = Network.from_config(cfg, {"input": data.dims, "output": data.dims}).to(device)
    peer = Peer(data.n_features, aligned(data.n_features), [1536] * 3, torch.relu, 0.0, "bag").to(device).eval()
    copy_weights(net, peer)

    def destiny_all(n: int, batch: int | None = None, chunk: int | None = None) -> None:  # None: the defaults
        part = named if n == named.n_examples else named[:n]
        recommend(net, {"input": part}, 10, exclude=part, batch_size=batch, chunk=chunk, method=method)

    @torch.no_grad()
    def pytorch_all(n: int, batch: int, precision: str, keep: bool = False):
        """From the host's arrays to top-10 items on the host, as ``recommend`` goes."""
        offsets = torch.as_tensor(data.offsets[:n + 1], device=device)
        indices = torch.as_tensor(data.indices[:data.offsets[n]], device=device).long()
        found = []
        with matmul_mode(precision):
            for start in range(0, n, batch):
                stop = min(start + batch, n)
                off = offsets[start:stop + 1] - offsets[start]
                idx = indices[data.offsets[start]:data.offsets[stop]]
                scores = peer((off, idx))
                rows = torch.repeat_interleave(torch.arange(stop - start, device=device), off[1:] - off[:-1])
                scores[rows, idx] = -math.inf
                found.append(torch.topk(scores, 10, dim=1).indices.cpu())
        return torch.cat(found) if keep else None

    def median_s(fn) -> float:
        fn(min(32_768, data.n_examples))  # warm-up: kernels compiled, allocator primed
        return statistics.median(wall(lambda: fn(data.n_examples), device) for _ in range(3))

    ours = median_s(destiny_all)
    peers = {}
    for precision in ("fp32", "tf32"):
        times = {b: median_s(lambda n, b=b: pytorch_all(n, b, precision)) for b in PREDICT_BATCHES}
        best = min(times, key=times.get)
        peers[precision] = (times[best], best)
        print(f"  PyTorch {precision}: " + ", ".join(f"batch {b} {t:.3f} s" for b, t in times.items()))
    fastest = min(peers, key=lambda p: peers[p][0])
    for precision, (t, b) in peers.items():
        print(f"destiny {ours:.3f} s, PyTorch forward + topk {precision} (batch {b}) {t:.3f} s: {t / ours:.2f}x")
    print(f"against the fastest PyTorch ({fastest}): {peers[fastest][0] / ours:.2f}x")
    for batch, chunk in variants or []:  # Destiny's batch size and chunk of output columns
        destiny_all(min(2 * batch, data.n_examples), batch, chunk)  # warm-up
        t = statistics.median(wall(lambda: destiny_all(data.n_examples, batch, chunk), device) for _ in range(3))
        print(f"  destiny, batch {batch}, chunk {chunk or 'default'}: {t:.3f} s: "
              f"{peers[fastest][0] / t:.2f}x the fastest PyTorch")
    n = min(check_users, data.n_examples)
    others = {f"PyTorch {p} (batch {b})": pytorch_all(n, b, p, keep=True) for p, (_, b) in peers.items()}
    check_predict(net, named[:n], method, device, others)
    predict_parts(net, named, method, device, steps)


def wall(fn, device: str) -> float:
    """Seconds of one fn() call, the device synchronised before and after."""
    if device == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    fn()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t


@torch.no_grad()
def check_predict(net, data, method: str, device: str, others: dict | None = None) -> None:
    """Destiny's top-10 of each user of ``data`` against a float64 brute force (h @ W + b in
    float64 rounded to float32, seen items removed, ties to the lower item): rows whose items
    differ, and rows the candidate method had to score over the whole width. ``others``: more
    methods' top-10 items of the same users (a CPU tensor each), checked against the same."""
    from destiny.ops.sparse import SparseRows
    from destiny.predict.topk import _keys, top_k
    from destiny.train.binding import Binding

    dev = torch.device(device)
    binding = Binding(net, {"input": data}, device=dev, with_targets=False, what="check data")
    seen = SparseRows(data, dev)
    layer = net.output_layers()[0]
    source = layer.sources[0]
    spec = net._spec_of[(source, layer.name)]
    w, b = net.weight(spec).double(), net.bias(spec).double()
    n = data.n_examples
    binding.plan(np.arange(n), 4096)
    differ = fallback = 0
    others = others or {}
    other_differ = dict.fromkeys(others, 0)
    for start in range(0, n, 4096):
        stop = min(start + 4096, n)
        binding.stage(np.arange(start, stop))
        examples = torch.arange(start, stop, device=dev)
        inputs, _ = binding.batch(examples)
        exclude = seen.take(examples)
        got = top_k(net, inputs, 10, exclude=exclude, method=method)
        fallback += 0 if got.fallback is None else int(got.fallback.sum())
        h = net.forward(inputs, None, stop_at={source})[source]
        z = (h.double() @ w + b).float()
        z[exclude.rows(), exclude.indices] = -math.inf
        want = torch.gather(torch.arange(z.shape[1], device=dev).expand_as(z), 1,
                            torch.topk(_keys(z, 0), 10, dim=1).indices)
        differ += int((got.items != want).any(dim=1).sum())
        for name, items in others.items():
            other_differ[name] += int((items[start:stop].to(dev) != want).any(dim=1).sum())
    print(f"  exactness on {n:,} users: Destiny {differ} rows differ from the float64 brute force; "
          f"{fallback} rows ({100 * fallback / max(n, 1):.2f}%) scored over the whole width (fallback)")
    for name, count in other_differ.items():
        print(f"  exactness on {n:,} users: {name} {count} rows differ from the float64 brute force")


@torch.no_grad()
def predict_parts(net, data, method: str, device: str, steps: int) -> None:
    """One batch of 4,096 users, in parts: the forward pass to the last hidden layer, the
    output layer's GEMM alone in fp32 and in TF32 (the candidate pass's), the whole top_k; and
    those GEMMs for all users (× the batches)."""
    from destiny.predict.topk import top_k
    from destiny.train.binding import Binding
    from destiny.ops.sparse import SparseRows
    from destiny.train.precision import Precision, matmul_precision

    dev = torch.device(device)
    n = min(4096, data.n_examples)
    binding = Binding(net, {"input": data}, device=dev, with_targets=False, what="batch")
    binding.plan(np.arange(n), n)
    binding.stage(np.arange(n))
    examples = torch.arange(n, device=dev)
    inputs, _ = binding.batch(examples)
    exclude = SparseRows(data, dev).take(examples)
    layer = net.output_layers()[0]
    source = layer.sources[0]
    spec = net._spec_of[(source, layer.name)]
    w, b = net.weight(spec), net.bias(spec)
    h = net.forward(inputs, None, stop_at={source})[source]
    chunk = max(1, (1 << 24) // n)
    buffer = torch.empty(n * chunk, device=dev)

    columns = w.t().contiguous().t()  # what the candidate pass multiplies by: W with contiguous columns

    def gemm(weight=w):
        for start in range(0, weight.shape[1], chunk):
            stop = min(start + chunk, weight.shape[1])
            torch.addmm(b[start:stop], h, weight[:, start:stop], out=buffer[:n * (stop - start)].view(n, stop - start))

    def tf32_gemm():
        with matmul_precision(Precision.TF32):
            gemm(columns)

    batches = math.ceil(data.n_examples / n)
    parts = {"forward to the last hidden layer": lambda: net.forward(inputs, None, stop_at={source}),
             "output GEMM fp32 (W row-major)": gemm,
             "output GEMM TF32 (W column-major: the candidate pass's)": tf32_gemm,
             f"top_k (method {method!r})": lambda: top_k(net, inputs, 10, exclude=exclude, method=method)}
    for label, fn in parts.items():
        fn()
        ms = statistics.median(wall(fn, device) for _ in range(max(3, min(steps, 10)))) * 1e3
        print(f"  one batch of {n:,}: {label} {ms:.2f} ms; × {batches} batches ≈ {ms * batches / 1e3:.3f} s")
