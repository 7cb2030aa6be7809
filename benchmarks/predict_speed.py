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
from train_step import SEED_CONFIG, Peer, timed  # noqa: E402


def run_predict(data, steps: int, device: str = "cuda", method: str = "auto", check_users: int = 8192,
                variants: list[tuple[int, int | None]] | None = None) -> None:
    """Top-10 unseen items for every user: Destiny's ``recommend`` (``method``: "auto" is the
    certified candidates on CUDA) against PyTorch forward + sigmoid + mask + topk in fp32, in
    the same run; then, on the first ``check_users`` users, Destiny's items against a float64
    brute force and the rows that needed the whole-width fallback; then one batch's parts."""
    from destiny.config import config_from_json
    from destiny.nn.network import Network
    from destiny.predict.recommend import recommend

    print(f"\n== predict: top-10 unseen items for {data.n_examples:,} users × {data.n_features:,} items, "
          f"seed network, fp32, Destiny's default batch (16,384 on a GPU) and chunk, method {method!r}; "
          "PyTorch batches of 4,096; both from the host's arrays to the top-10 items on the host")
    cfg = config_from_json(SEED_CONFIG)
    named = data.replace(name="input")
    net = Network.from_config(cfg, {"input": data.dims, "output": data.dims}).to(device)
    peer = Peer(data.n_features, [1536] * 3, torch.relu, 0.0, "bag").to(device).eval()

    def destiny_all(n: int, batch: int | None = None, chunk: int | None = None) -> None:  # None: the defaults
        part = named if n == named.n_examples else named[:n]
        recommend(net, {"input": part}, 10, exclude=part, batch_size=batch, chunk=chunk, method=method)

    @torch.no_grad()
    def pytorch_all(n: int) -> None:
        """From the host's arrays to top-10 items on the host, as ``recommend`` goes."""
        offsets = torch.as_tensor(data.offsets[:n + 1], device=device)
        indices = torch.as_tensor(data.indices[:data.offsets[n]], device=device).long()
        found = []
        for start in range(0, n, 4096):
            stop = min(start + 4096, n)
            off = offsets[start:stop + 1] - offsets[start]
            idx = indices[data.offsets[start]:data.offsets[stop]]
            scores = torch.sigmoid(peer((off, idx)))
            rows = torch.repeat_interleave(torch.arange(stop - start, device=device), off[1:] - off[:-1])
            scores[rows, idx] = -1.0
            found.append(torch.topk(scores, 10, dim=1).indices.cpu())

    results = {}
    for name, fn in (("destiny", destiny_all), ("pytorch", pytorch_all)):
        fn(min(32_768, data.n_examples))  # warm-up: kernels compiled, allocator primed (two batches of 16,384)
        results[name] = statistics.median(wall(lambda: fn(data.n_examples), device) for _ in range(3))
    ours, theirs = results["destiny"], results["pytorch"]
    print(f"destiny {ours:.3f} s, PyTorch forward + topk {theirs:.3f} s (medians of 3): {theirs / ours:.2f}x")
    for batch, chunk in variants or []:  # Destiny's batch size and chunk of output columns
        destiny_all(min(2 * batch, data.n_examples), batch, chunk)  # warm-up
        t = statistics.median(wall(lambda: destiny_all(data.n_examples, batch, chunk), device) for _ in range(3))
        print(f"  destiny, batch {batch}, chunk {chunk or 'default'}: {t:.3f} s: {theirs / t:.2f}x PyTorch's speed")
    check_predict(net, named[:min(check_users, data.n_examples)], method, device)
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
def check_predict(net, data, method: str, device: str) -> None:
    """Destiny's top-10 of each user of ``data`` against a float64 brute force (h @ W + b in
    float64 rounded to float32, seen items removed, ties to the lower item): rows whose items
    differ, and rows the candidate method had to score over the whole width."""
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
    print(f"  exactness on {n:,} users: {differ} rows differ from the float64 brute force; "
          f"{fallback} rows ({100 * fallback / max(n, 1):.2f}%) scored over the whole width (fallback)")


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
