"""Training-step and prediction speed of Destiny against plain PyTorch and the hardware floor,
in one run on one GPU (issue: fast sparse kernels).

    PYTHONPATH=src python benchmarks/train_step.py [--steps 30] [--precisions fp32,tf32,bf16]
                                                   [--parts seed,dsstne,predict,wide]

seed     the talk's MovieLens network (27,278 → 3 × 1536 ReLU, dropout 0.37 → 27,278 sigmoid,
         ScaledMarginalCrossEntropy), batch 1024, momentum SGD, synthetic MovieLens-like users
dsstne   DSSTNE's benchmark network (3 × 1024 Sigmoid, dropout 0.5), batch 256, RMSProp
predict  top-10 unseen items for 138,493 users: Destiny's top-K (method auto: TF32 candidates,
         certified, rescored in float64) against PyTorch forward + topk (fp32), the items
         checked against a float64 brute force on 8,192 users, and one batch in parts
         (benchmarks/predict_speed.py). --device cpu --parts predict --predict-users 2000
         --items 3000: a CPU smoke run
wide     the seed network with a 10,000,000-wide sparse input at 0.01% density (1,000 items an
         example, SGD), against 27,278 and 1,048,576 inputs with the same nonzeros: what the
         width itself costs of the step

PyTorch peers, each the same network and optimizer (torch.optim, fused or foreach), dense
targets and BCE-with-logits, the output padded to a multiple of 16, TF32 on in the tf32 rows
and bf16 autocast in the bf16 rows, batches staged on the GPU (no host sync in the step):
input layer "bag" (nn.EmbeddingBag) or "dense" (the multi-hot row times nn.Linear), each in
four forms — eager, torch.compile, the whole step in a CUDA graph, both — and the fastest of
all counts. The floor: each dense product of the step in its fastest layout, plus the
optimizer's bytes over the device copy bandwidth measured in the same run.
"""

from __future__ import annotations

import argparse
import gc
import math
import statistics
import sys

import numpy as np
import torch
import torch.nn.functional as F

SEED_CONFIG = {
    "Version": 0.8, "Name": "seed", "ShuffleIndices": True, "ErrorFunction": "ScaledMarginalCrossEntropy",
    "ScaledMarginalCrossEntropy": {"oneTarget": 1.0, "zeroTarget": 0.0, "oneScale": 1.0, "zeroScale": 1.0},
    "Layers": [{"Name": "Input", "N": "auto", "DataSet": "input", "Sparse": True}]
    + [{"Name": f"Hidden{i}", "N": 1536, "Activation": "Relu", "pDropout": 0.37,
        "WeightInit": {"Scheme": "Gaussian", "Scale": 0.01}} for i in (1, 2, 3)]
    + [{"Name": "Output", "N": "auto", "DataSet": "output", "Sparse": True, "Activation": "Sigmoid",
        "WeightInit": {"Scheme": "Gaussian", "Scale": 0.01, "Bias": -10.2}}],
}


def dsstne_config() -> dict:
    cfg = {**SEED_CONFIG, "Name": "dsstne-benchmark"}
    cfg["Layers"] = [SEED_CONFIG["Layers"][0]] + [
        {"Name": f"Hidden{i}", "N": 1024, "Activation": "Sigmoid", "pDropout": 0.5,
         "WeightInit": {"Scheme": "Gaussian", "Scale": 0.01}} for i in (1, 2, 3)] + [SEED_CONFIG["Layers"][-1]]
    return cfg


def timed(fn, steps: int, warmup: int = 3) -> float:
    """Median ms of fn() over ``steps`` runs (CUDA events)."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(steps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def copy_bandwidth() -> float:
    src = torch.empty(2**28, device="cuda").uniform_()
    dst = torch.empty_like(src)
    return 2 * src.numel() * 4 / timed(lambda: dst.copy_(src), 20)  # bytes per ms


# ---------------------------------------------------------------------------------------------
# Data


def users(n: int, items: int, mean: float, seed: int):
    from destiny.data import synthesize

    return synthesize(n, items, seed=seed, mean_items=mean)


# ---------------------------------------------------------------------------------------------
# Destiny


def destiny_step(config: dict, data, batch: int, optimizer: str, hyper: dict, precision: str,
                 cuda_graphs: bool = True):
    """A closure running one Destiny training step (batch gathering included), and the trainer.
    The step goes through ``Trainer.step_examples``: host example ids in, a CUDA graph replay
    where possible (``trainer.graph_status()`` says what ran)."""
    from destiny.config import config_from_json
    from destiny.nn.network import Network
    from destiny.train.binding import Binding
    from destiny.train.optimizers import Hyperparameters
    from destiny.train.trainer import Trainer

    cfg = config_from_json(config)
    net = Network.from_config(cfg, {"input": data.dims, "output": data.dims})
    trainer = Trainer(net, optimizer, Hyperparameters(**hyper), batch_size=batch, device="cuda", progress=False,
                      precision=precision, cuda_graphs=cuda_graphs)
    named = data.replace(name="input")
    binding = Binding(net, {"input": named, "output": named}, device=torch.device("cuda"))
    order = trainer.order(binding.n_examples, 1).numpy()
    windows = (binding.n_examples - batch) // batch * batch
    trainer.runner(binding).reserve(order[:windows + batch], batch)  # capacities of every window below
    state = {"step": 0}

    def step():
        s = state["step"]
        start = (s * batch) % windows
        trainer.step_examples(binding, order[start:start + batch], epoch=1, step=s)
        state["step"] += 1

    return step, trainer


def graph_note(trainer) -> str:
    status = trainer.graph_status()
    if status["why_not"]:
        return f"eager ({status['why_not']})"
    return f"CUDA graph: {status['replays']} replays, {status['captures']} captures, {status['eager']} eager"


# ---------------------------------------------------------------------------------------------
# PyTorch peers

PEER_KINDS = ("bag", "dense")
PEER_FORMS = ("eager", "compile", "graph", "compile+graph")


def aligned(width: int) -> int:
    """The output width a PyTorch expert would use: a multiple of 16 (cuBLAS's Hopper kernels
    want 16-byte aligned rows), with at least one spare column, where padding entries go."""
    return (width + 16) // 16 * 16


class Peer(torch.nn.Module):
    """The same MLP in plain PyTorch over a ``padded``-wide output; ``input_kind`` is "bag"
    (nn.EmbeddingBag, sum; index ``width`` is padding) or "dense" (the multi-hot row times a
    Linear layer)."""

    def __init__(self, width: int, padded: int, hidden: list[int], activation, dropout: float, input_kind: str):
        super().__init__()
        self.kind = input_kind
        first = hidden[0]
        if input_kind == "bag":
            self.input = torch.nn.EmbeddingBag(width + 1, first, mode="sum", padding_idx=width)
            self.input_bias = torch.nn.Parameter(torch.zeros(first))
        else:
            self.input = torch.nn.Linear(padded, first)
        self.hidden = torch.nn.ModuleList(torch.nn.Linear(a, b) for a, b in zip(hidden, hidden[1:]))
        self.out = torch.nn.Linear(hidden[-1], padded)
        self.activation, self.dropout = activation, dropout
        with torch.no_grad():
            for p in self.parameters():
                torch.nn.init.normal_(p, std=0.01) if p.dim() == 2 else torch.nn.init.zeros_(p)
            torch.nn.init.constant_(self.out.bias, -10.2)
            if input_kind == "bag":
                self.input.weight[width].zero_()

    def forward(self, x):
        if self.kind == "bag":
            h = self.input(x[1], x[0][:-1]) + self.input_bias
        else:
            h = self.input(x)
        h = F.dropout(self.activation(h), self.dropout, self.training)
        for layer in self.hidden:
            h = F.dropout(self.activation(layer(h)), self.dropout, self.training)
        return self.out(h)


class matmul_mode:
    """TF32 on for the "tf32" rows (matmuls and cuDNN), off otherwise; restored on exit."""

    def __init__(self, precision: str):
        self.tf32 = precision == "tf32"

    def __enter__(self):
        self.saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = self.tf32

    def __exit__(self, *exc):
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = self.saved


def staged_batches(data, batch: int, count: int, device: str):
    """``count`` batches of consecutive examples, on the device, each padded to one capacity so
    that every step has the same shapes (a CUDA graph replays them): offsets (batch + 1), item
    ids (capacity; padding entries are item ``width``), rows (capacity; padding in row 0). A
    data loader would hand these over; building them is outside the timed step."""
    width, n = data.n_features, data.n_examples
    starts = [(i * batch) % (n - batch) for i in range(count)]
    capacity = max(int(data.offsets[s + batch] - data.offsets[s]) for s in starts)
    capacity = -(-capacity // 1024) * 1024
    out = []
    for s in starts:
        off = (data.offsets[s:s + batch + 1] - data.offsets[s]).astype(np.int64)
        nnz = int(off[-1])
        idx = np.full(capacity, width, dtype=np.int64)
        idx[:nnz] = data.indices[data.offsets[s]:data.offsets[s + batch]]
        rows = np.zeros(capacity, dtype=np.int64)
        rows[:nnz] = np.repeat(np.arange(batch), np.diff(off))
        off[-1] = capacity  # the padding entries belong to the last bag: they add the zero row `width`
        out.append(tuple(torch.as_tensor(a, device=device) for a in (off, idx, rows)))
    return out


def peer_step(kind: str, form: str, data, batch: int, hidden: list[int], activation, dropout: float,
              optimizer: str, precision: str, device: str = "cuda"):
    """A closure running one training step of the PyTorch peer ``kind`` in ``form``:
    "eager"; "compile" (forward and loss through torch.compile, the backward its AOT graph);
    "graph" (the whole step — forward, backward, optimizer — captured once in a CUDA graph and
    replayed, as PyTorch's "whole network capture" recipe); "compile+graph" (the compiled step
    captured so). Dense targets over the padded width, BCE with logits; torch.optim's fused
    (SGD) or foreach capturable (RMSprop) optimizer; no host synchronisation inside the step."""
    width = data.n_features
    padded = aligned(width)
    model = Peer(width, padded, hidden, activation, dropout, kind).to(device)
    graphed = form.endswith("graph")
    if optimizer == "momentum":
        opt = torch.optim.SGD(model.parameters(), lr=0.025, momentum=0.5, fused=device == "cuda")
    else:
        opt = torch.optim.RMSprop(model.parameters(), lr=0.001, alpha=0.9, foreach=True, capturable=graphed)
    bf16 = precision == "bf16"

    def forward_loss(off, idx, rows):
        target = torch.zeros(batch, padded, device=device)
        target[rows, idx] = 1.0
        target[:, width] = 0.0  # where padding entries landed
        x = (off, idx) if kind == "bag" else target  # an autoencoder: the dense input is the target
        with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
            logits = model(x)
        return F.binary_cross_entropy_with_logits(logits.float(), target, reduction="sum") / batch

    compute = torch.compile(forward_loss) if form.startswith("compile") else forward_loss

    def body(off, idx, rows):
        compute(off, idx, rows).backward()
        opt.step()

    pool = staged_batches(data, batch, 8, device)
    state = {"step": 0}
    with matmul_mode(precision):
        if not graphed:
            def step():
                with matmul_mode(precision):
                    opt.zero_grad(set_to_none=True)
                    body(*pool[state["step"] % len(pool)])
                state["step"] += 1

            return step
        static = tuple(t.clone() for t in pool[0])
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):  # warm-up on a side stream, as the recipe says (compiles, allocates)
                opt.zero_grad(set_to_none=True)
                body(*static)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        opt.zero_grad(set_to_none=True)
        with torch.cuda.graph(graph):
            body(*static)

    def replay():
        for dst, src in zip(static, pool[state["step"] % len(pool)]):
            dst.copy_(src)
        graph.replay()
        state["step"] += 1

    return replay


# ---------------------------------------------------------------------------------------------
# The floor

LAYOUTS = ("nn", "nt", "tn", "tt")  # A row- or column-major, B row- or column-major


def product_ms(m: int, k: int, n: int, layout: str, dtype, steps: int, device: str = "cuda") -> float:
    """ms of one C(m×n) = A(m×k) @ B(k×n) with A and B stored as ``layout`` says (t: the
    transpose is contiguous), from 20 back-to-back products (launch gaps hidden, as in a graph)."""
    a = torch.randn(m, k, device=device, dtype=dtype) if layout[0] == "n" else \
        torch.randn(k, m, device=device, dtype=dtype).t()
    b = torch.randn(k, n, device=device, dtype=dtype) if layout[1] == "n" else \
        torch.randn(n, k, device=device, dtype=dtype).t()
    c = torch.empty(m, n, device=device, dtype=dtype)

    def run():
        for _ in range(20):
            torch.mm(a, b, out=c)

    return timed(run, steps) / 20


def step_products(batch: int, width: int, hidden: list[int]) -> list[tuple[str, int, int, int]]:
    """(what, m, k, n) of every dense product of a step: forward, input gradient and weight
    gradient of each dense layer after the sparse input layer (whose gather-sum and row update
    the floor counts as free)."""
    dims = hidden + [width]
    shapes = []
    for i, (a, b) in enumerate(zip(dims, dims[1:]), 2):
        name = "output" if i == len(dims) else f"hidden{i}"
        shapes += [(f"{name} forward", batch, a, b), (f"{name} input grad", batch, b, a),
                   (f"{name} weight grad", a, batch, b)]
    return shapes


def gemm_floor(batch: int, width: int, hidden: list[int], precision: str, steps: int,
               verbose: bool = False) -> float:
    """ms of the step's dense products, each in its fastest layout at the real or the 16-aligned
    output width (``LAYOUTS``), at this precision."""
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    total = 0.0
    with matmul_mode(precision):
        for what, m, k, n in step_products(batch, width, hidden):
            best = (math.inf, "")
            for w in sorted({width, -(-width // 16) * 16}):
                m2, k2, n2 = (w if d == width else d for d in (m, k, n))
                for layout in LAYOUTS:
                    best = min(best, (product_ms(m2, k2, n2, layout, dtype, steps), f"{layout} at {w:,}"))
            total += best[0]
            if verbose:
                print(f"     {what:<22} {m:>6} × {k:>6} × {n:>6}: {best[0]:.3f} ms ({best[1]})")
    return total


def parameter_count(width: int, hidden: list[int]) -> int:
    dims = [width] + hidden + [width]
    return sum(a * b + b for a, b in zip(dims, dims[1:]))


# ---------------------------------------------------------------------------------------------
# Parts


def run_training(name, config, data, batch, hidden, activation, dropout, optimizer, hyper, bytes_per_param,
                 precisions, steps, bandwidth, kinds=PEER_KINDS, forms=PEER_FORMS):
    print(f"\n== {name}: batch {batch}, {data.n_features:,} → {' → '.join(map(str, hidden))} → {data.n_features:,}, "
          f"{optimizer}; {data.nnz / data.n_examples:.0f} items an example; median ms of {steps} steps")
    params = parameter_count(data.n_features, hidden)
    optimizer_ms = params * bytes_per_param / bandwidth
    peers = [f"{kind}:{form}" for kind in kinds for form in forms]
    print("peers: PyTorch over a {:,}-wide output (16-aligned), TF32 on in the tf32 rows, bf16 autocast in the bf16 "
          "rows, batches staged on the GPU beforehand, no host sync in the step".format(aligned(data.n_features)))
    print(f"{'precision':<10}{'destiny':>9}" + "".join(f"{p:>20}" for p in peers)
          + f"{'floor':>9}   {'vs fastest peer':>26}{'vs floor':>10}")
    notes, results = [], {}
    for precision in precisions:
        row = {}
        step, trainer = destiny_step(config, data, batch, optimizer, hyper, precision)
        row["destiny"] = timed(step, steps)
        notes.append(f"{precision}: {graph_note(trainer)}")
        del step, trainer
        for peer in peers:
            kind, form = peer.split(":")
            try:
                row[peer] = timed(peer_step(kind, form, data, batch, hidden, activation, dropout, optimizer,
                                            precision), steps)
            except Exception as exc:  # a form PyTorch cannot run here: said, and left out of the fastest
                row[peer] = float("nan")
                print(f"   ({peer} {precision}: {type(exc).__name__}: {str(exc).splitlines()[0][:100]})")
            gc.collect()
            torch.cuda.empty_cache()
        torch._dynamo.reset()
        print(f"   floor at {precision}, each product in its fastest layout:")
        row["floor"] = gemm_floor(batch, data.n_features, hidden, precision, steps, verbose=True) + optimizer_ms
        timed_peers = [p for p in peers if not math.isnan(row[p])]
        fastest = min(timed_peers, key=row.get) if timed_peers else None
        ratio = row[fastest] / row["destiny"] if fastest else float("nan")
        print(f"{precision:<10}{row['destiny']:>9.2f}" + "".join(f"{row[p]:>20.2f}" for p in peers)
              + f"{row['floor']:>9.2f}   {ratio:>8.2f}x ({fastest or 'none'})".rjust(26)
              + f"{row['destiny'] / row['floor']:>9.2f}x")
        results[precision] = row
    print(f"floor = the dense products at that precision, each in its fastest layout (A and B row- or column-"
          f"major) at the real or 16-aligned width, + optimizer traffic {params / 1e6:.1f}M params × "
          f"{bytes_per_param} B / {bandwidth / 1e6:.0f} GB/s (copy bandwidth measured here) = {optimizer_ms:.2f} ms")
    print("destiny steps: " + "; ".join(notes))
    return results


def run_wide(steps: int, bandwidth: float) -> None:
    """The seed network with a 10M-wide sparse input (1,000 items an example, 0.01%)."""
    from destiny.config import config_from_json
    from destiny.data import SparseDataset
    from destiny.nn.network import Network
    from destiny.parallel import World
    from destiny.train.binding import Binding
    from destiny.train.optimizers import Hyperparameters
    from destiny.train.trainer import Trainer

    print("\n== wide input: 10,000,000 sparse inputs at 0.01% (1,000 an example) → seed network, SGD, fp32")
    rng = np.random.default_rng(0)
    n, width, per = 4096, 10_000_000, 1000
    inputs = SparseDataset("input", (width,), np.arange(n + 1, dtype=np.int64) * per,
                           rng.integers(0, width, size=n * per).astype(np.int32))
    inputs, _ = inputs.deduplicate()
    targets = users(n, 27_278, 115, seed=3).replace(name="output")
    narrow = SparseDataset("input", (27_278,), inputs.offsets,
                           rng.integers(0, 27_278, size=inputs.nnz).astype(np.int32))
    narrow, _ = narrow.deduplicate()  # the same examples' sizes over 27,278 features (≈ 970 distinct)

    def distinct(features: int):
        """1,000 items an example, no item twice within a batch of 1,024: 1,024,000 distinct rows a
        step whatever the width, so the update's traffic is the same and only the width differs."""
        picks = np.concatenate([rng.choice(features, size=1024 * per, replace=False) for _ in range(n // 1024)])
        offsets = np.arange(n + 1, dtype=np.int64) * per
        for e in range(n):
            picks[offsets[e]:offsets[e + 1]].sort()
        return SparseDataset("input", (features,), offsets, picks.astype(np.int32))

    cfg = config_from_json(SEED_CONFIG)
    times = {}
    for label, data_in in (("10M-wide input", inputs), ("27,278 input, the same ~1,000 items an example", narrow),
                           ("27,278 input, 115 items an example", targets.replace(name="input")),
                           ("10M-wide, 1,024,000 distinct items a batch", distinct(width)),
                           ("1,048,576-wide, 1,024,000 distinct items a batch", distinct(1 << 20))):
        # built on the GPU: initialising 15 billion weights on the host would take minutes
        net = Network.from_config(cfg, {"input": data_in.dims, "output": targets.dims},
                                  world=World.single("cuda"))
        trainer = Trainer(net, "sgd", Hyperparameters(alpha=0.01, lam=0.0), batch_size=1024, device="cuda",
                          progress=False)
        binding = Binding(net, {"input": data_in, "output": targets}, device=torch.device("cuda"))
        trainer.runner(binding).reserve(np.arange(n), 1024)
        state = {"s": 0}

        def step():
            start = (state["s"] * 1024) % (n - 1024)
            trainer.step_examples(binding, np.arange(start, start + 1024), epoch=1, step=state["s"])
            state["s"] += 1

        ms = times[label] = timed(step, steps)
        print(f"  {label}: {ms:.2f} ms a step ({graph_note(trainer)})")
        del net, trainer, binding, step  # step's closure holds the trainer: a 10M network is 61 GB
        gc.collect()
        torch.cuda.empty_cache()
    wide, same = times["10M-wide input"], times["27,278 input, the same ~1,000 items an example"]
    print(f"  10M against 27,278 features, the same nonzeros: {wide - same:+.2f} ms, {100 * (wide - same) / wide:.1f}% "
          "of the 10M step (most of it: ~1M distinct weight rows a step to update instead of ≤ 27,278)")
    wide, same = times["10M-wide, 1,024,000 distinct items a batch"], times["1,048,576-wide, 1,024,000 distinct items a batch"]
    print(f"  the width's own cost (10M against 1,048,576 features, the same nonzeros and distinct rows): "
          f"{wide - same:+.2f} ms, {100 * (wide - same) / wide:.1f}% of the 10M step")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--precisions", default="fp32,tf32,bf16")
    parser.add_argument("--parts", default="seed,dsstne,predict,wide")
    parser.add_argument("--users", type=int, default=20_000, help="synthetic users for the training parts")
    parser.add_argument("--predict-users", type=int, default=138_493, help="synthetic users for the predict part")
    parser.add_argument("--items", type=int, default=27_278, help="items (input and output width) of the predict part")
    parser.add_argument("--method", default="auto", help="top-K method of the predict part: auto, exact, candidates")
    parser.add_argument("--predict-variants", default="",
                        help="more Destiny timings of the predict part: batch:chunk,… (chunk 0: the default)")
    parser.add_argument("--peer-kinds", default=",".join(PEER_KINDS), help="PyTorch input layers: bag, dense")
    parser.add_argument("--peer-forms", default=",".join(PEER_FORMS),
                        help="PyTorch forms: eager, compile, graph, compile+graph (the fastest counts)")
    parser.add_argument("--device", default="cuda",
                        help="cuda, or cpu for a small smoke run of the predict part (method 'candidates' emulated)")
    args = parser.parse_args()
    if args.device == "cpu":
        print(f"CPU smoke run | torch {torch.__version__}")
        from predict_speed import run_predict

        run_predict(users(args.predict_users, args.items, 144, seed=2), args.steps, "cpu",
                    "candidates" if args.method == "auto" else args.method)
        return 0
    if not torch.cuda.is_available():
        print("benchmarks/train_step.py needs a CUDA GPU (or --device cpu --parts predict for a smoke run)",
              file=sys.stderr)
        return 1
    import triton

    parts = set(args.parts.split(","))
    precisions = args.precisions.split(",")
    kinds, forms = args.peer_kinds.split(","), args.peer_forms.split(",")
    bandwidth = copy_bandwidth()
    print(f"{torch.cuda.get_device_name()} | torch {torch.__version__} | triton {triton.__version__} | "
          f"copy bandwidth {bandwidth / 1e6:.0f} GB/s")
    if parts & {"seed", "dsstne"}:
        data = users(args.users, 27_278, 115, seed=1)
    if "seed" in parts:
        run_training("seed network", SEED_CONFIG, data, 1024, [1536] * 3, torch.relu, 0.37, "momentum",
                     dict(alpha=0.025, lam=0.0, mu=0.5), 20, precisions, args.steps, bandwidth, kinds, forms)
    if "dsstne" in parts:
        run_training("DSSTNE benchmark network", dsstne_config(), data, 256, [1024] * 3, torch.sigmoid, 0.5,
                     "rmsprop", dict(alpha=0.001, lam=0.0, mu=0.9), 20, precisions, args.steps, bandwidth, kinds, forms)
    if "predict" in parts:
        variants = [(int(b), int(c) or None) for b, c in (v.split(":") for v in args.predict_variants.split(",") if v)]
        from predict_speed import run_predict

        run_predict(users(args.predict_users, args.items, 144, seed=2), args.steps, "cuda", args.method,
                    variants=variants)
    if "wide" in parts:
        run_wide(args.steps, bandwidth)
    return 0


if __name__ == "__main__":
    sys.exit(main())
