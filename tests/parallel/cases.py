"""What the model-parallel tests run, written once for any world: the same function runs in
one process (the reference, in pytest) and under ``torchrun --nproc-per-node N`` on gloo
(``run_cases.py``), and returns the same named arrays (on rank 0) for the tests to compare.

The networks have widths that 2 and 3 do not divide (uneven shards), matrices split both ways,
sparse and dense inputs read whole (by matrices split by output columns), a sparse input split
by feature range (the tied autoencoder's, whose matrix keeps DSSTNE's rule), dropout (masks
drawn from the elements' places in the whole layer), denoising, a skip, ScaledMarginalCross-
Entropy; a tied autoencoder with SoftMax + CrossEntropy, WeightNorm on the matrix split by
input rows, DeltaNorm, BatchNormalization and a sparseness penalty.
"""

from __future__ import annotations

import numpy as np
import torch

from destiny.parallel import World, all_gather_stack, all_reduce, gather_units, gathered_linear, reduce_scatter_units
from destiny.predict.recommend import recommend
from destiny.train.checkpoint import network_from_file, network_to_file, restore_trainer, save_network, trainer_state
from destiny.train.optimizers import Hyperparameters
from destiny.train.trainer import Trainer
from tests.helpers import config, sparse_dataset

ITEMS, TAGS, SIDE, EXAMPLES, BATCH = 47, 11, 17, 60, 16


def data() -> dict:
    """Sparse baskets of ITEMS items, sparse TAGS with values and a dense side input, EXAMPLES examples."""
    rng = np.random.default_rng(3)
    rows = [np.sort(rng.choice(ITEMS, size=rng.integers(2, 11), replace=False)) for _ in range(EXAMPLES)]
    baskets = sparse_dataset(rows, ITEMS)
    tag_rows = [np.sort(rng.choice(TAGS, size=rng.integers(0, 4), replace=False)) for _ in range(EXAMPLES)]
    tags = sparse_dataset(tag_rows, TAGS, [rng.uniform(0.5, 2.0, len(r)) for r in tag_rows])
    side = type("Dense", (), {})()
    side.data = rng.normal(size=(EXAMPLES, SIDE)).astype(np.float32)
    side.dims = (SIDE,)
    return {"in": baskets, "out": baskets, "side": side, "tags": tags}


def mixed(world: World, dtype=torch.float64, seed: int = 5):
    """Input(47 sparse), Tags(11 sparse) → H1(29) → H2(11) ← Side(17 dense, dropout); H2 → H3(29,
    skip H1) → Output(47). Splits: 29→11 by input rows; the matrices reading data (47→29,
    11→29 and 17→11), 11→29 (H2 → H3) and 29→47 by output columns."""
    from destiny.nn.network import Network

    cfg = config([
        {"Name": "Input", "N": "auto", "DataSet": "in", "Sparse": True},
        {"Name": "Side", "Kind": "Input", "N": SIDE, "DataSet": "side", "pDropout": 0.1},
        {"Name": "Tags", "Kind": "Input", "N": TAGS, "DataSet": "tags", "Sparse": True},
        {"Name": "H1", "N": 29, "Source": ["Input", "Tags"], "Activation": "Relu", "pDropout": 0.2},
        {"Name": "H2", "N": 11, "Source": ["H1", "Side"], "Activation": "Tanh",
         "WeightInit": {"Scheme": "Gaussian", "Scale": 0.3, "Bias": 0.05}},
        {"Name": "H3", "N": 29, "Source": "H2", "Skip": "H1", "Activation": "Relu", "pDropout": 0.1, "DeltaNorm": 2.0},
        {"Name": "Output", "Kind": "Output", "N": "auto", "DataSet": "out", "Sparse": True, "Source": "H3",
         "Activation": "Sigmoid"},
    ], ErrorFunction="ScaledMarginalCrossEntropy", Denoising={"p": 0.15})
    return Network.from_config(cfg, {"in": (ITEMS,), "out": (ITEMS,)}, seed=seed, dtype=dtype, world=world)


def tied(world: World, dtype=torch.float64, seed: int = 9):
    """A tied autoencoder: Input(47) → Code(13, split by input rows, WeightNorm) → Mix(13, batch
    norm, sparseness penalty) → Output(47, SoftMax + CrossEntropy) through the code matrix
    transposed (split by output columns: the same rows)."""
    from destiny.nn.network import Network

    cfg = config([
        {"Name": "Input", "N": "auto", "DataSet": "in", "Sparse": True},
        {"Name": "Code", "N": 13, "Source": "Input", "Activation": "Sigmoid", "WeightNorm": 0.9,
         "Sparse": True, "SparsenessPenalty": {"p": 0.2, "beta": 0.5}},
        {"Name": "Mix", "N": 13, "Source": "Code", "Activation": "Tanh", "BatchNormalization": True,
         "pDropout": 0.25},
        {"Name": "Output", "Kind": "Output", "N": "auto", "DataSet": "out", "Sparse": True, "Source": "Mix",
         "Activation": "SoftMax",
         "SharedWeights": {"InputLayer": "Mix", "SourceInputLayer": "Input", "SourceOutputLayer": "Code",
                           "Transposed": True}},
    ], ErrorFunction="CrossEntropy")
    return Network.from_config(cfg, {"in": (ITEMS,), "out": (ITEMS,)}, seed=seed, dtype=dtype, world=world)


def arrays_of(network, prefix: str, out: dict) -> None:
    """The whole network's parameters and buffers in their own dtype (gathered to rank 0)
    and its file's fingerprint, into ``out`` under ``prefix``."""
    from destiny.train.checkpoint import whole

    for name, tensor in network.state_dict().items():
        array = whole(network, name, tensor, keep_dtype=True)
        if array is not None:
            out[f"{prefix}.{name}"] = array
    nf = network_to_file(network)
    if nf is not None:
        out[f"{prefix}.fingerprint"] = np.asarray(nf.info["fingerprint"])


def train(network, optimizer: str, epochs: int, **hyper) -> tuple[Trainer, list[float]]:
    trainer = Trainer(network, optimizer, Hyperparameters(**hyper), batch_size=BATCH, progress=False, seed=21)
    results = trainer.fit(data(), epochs)
    return trainer, [r.training_error for r in results]


def collectives(world: World, out: dict) -> None:
    """Every pair's forward and backward against what they must be, bitwise (sums in rank
    order on both sides), on uneven shards (n = 10: 5+5, 3+3+4)."""
    n, batch = 10, 3
    lo, hi = world.bounds(n)
    full = [torch.randn(batch, n, dtype=torch.float64, generator=torch.Generator().manual_seed(100 + q))
            for q in range(world.size)]  # every rank's tensor, known to every rank
    weights = [torch.randn(batch, n, dtype=torch.float64, generator=torch.Generator().manual_seed(200 + q))
               for q in range(world.size)]

    def ordered(ts):
        acc = ts[0].clone()
        for t in ts[1:]:
            acc += t
        return acc

    errors = []
    # gather_units: rank r contributes full[0][:, its units]; its part of the loss Σ y·weights[r]
    x = full[0][:, lo:hi].clone().requires_grad_()
    y = gather_units(x, world, n)
    (y * weights[world.rank]).sum().backward()
    y = y.detach()
    errors += [float((y - full[0]).abs().max()), float((x.grad - ordered(weights)[:, lo:hi]).abs().max())]
    # reduce_scatter_units: rank r's partial full[r]; y = my units of Σ_q full[q]
    p = full[world.rank].clone().requires_grad_()
    y = reduce_scatter_units(p, world, n)
    (y * weights[world.rank][:, lo:hi]).sum().backward()
    y = y.detach()
    gathered = torch.cat([weights[q][:, slice(*world.all_bounds(n)[q])] for q in range(world.size)], dim=1)
    errors += [float((y - ordered(full)[:, lo:hi]).abs().max()), float((p.grad - gathered).abs().max())]
    # all_reduce: S = Σ_q full[q][0]; part Σ S·weights[r][0]; gradient Σ_q weights[q][0]
    s = full[world.rank][0].clone().requires_grad_()
    total = all_reduce(s, world)
    (total * weights[world.rank][0]).sum().backward()
    total = total.detach()
    errors += [float((total - ordered([f[0] for f in full])).abs().max()),
               float((s.grad - ordered([w[0] for w in weights])).abs().max())]
    # gathered_linear (backward's exchange overlapped) = gather_units, then addmm: the same bits
    w = torch.randn(n, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(300 + world.rank))
    b = torch.randn(7, dtype=torch.float64, generator=torch.Generator().manual_seed(400 + world.rank))
    g = torch.randn(batch, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(500 + world.rank))
    results = []
    for fused in (True, False):
        xs, ws, bs = (t.clone().requires_grad_() for t in (full[1 % world.size][:, lo:hi], w, b))
        y = gathered_linear(xs, ws, bs, world, n) if fused else torch.addmm(bs, gather_units(xs, world, n), ws)
        (y * g).sum().backward()
        results.append([y.detach(), xs.grad, ws.grad, bs.grad])
    errors += [float((a - c).abs().max()) for a, c in zip(*results)]
    every = all_gather_stack(torch.tensor(errors, dtype=torch.float64), world)
    out["collectives.errors"] = every.numpy()


def inputs_of(sets: dict) -> dict:
    return {name: sets[name] for name in ("in", "side", "tags")}


def validation(world: World, net, sets: dict, out: dict) -> None:
    """Ranking metrics of the trained float64 network (its output's items split over the ranks:
    the per-rank top-K lists merged), and a run with early stopping on them."""
    from destiny.train.validation import RankingValidator

    rng = np.random.default_rng(11)
    held = sparse_dataset([np.sort(rng.choice(ITEMS, size=rng.integers(0, 5), replace=False))
                           for _ in range(EXAMPLES)], ITEMS)
    names = ["ndcg@10", "recall@10", "recall_min@5", "p@5", "map@10", "ndcg@47"]
    metrics = RankingValidator(inputs_of(sets), held, metrics=names, seen=sets["in"], batch_size=23).validate(net)
    out["mixed64.validation"] = np.asarray(list(metrics.values()))
    validator = RankingValidator(inputs_of(sets), held, metrics=["ndcg@10"], seen=sets["in"])
    stopped = mixed(world, seed=6)
    trainer = Trainer(stopped, "adam", Hyperparameters(alpha=0.02), batch_size=BATCH, progress=False, seed=21,
                      validator=validator, patience=1)
    results = trainer.fit(sets, 8)
    out["stopped.metrics"] = np.asarray([r.metrics["ndcg@10"] for r in results])
    out["stopped.best_epoch"] = np.asarray(trainer.best_epoch)
    arrays_of(stopped, "stopped", out)


def run_all(world: World, tmp: str, reference_file: str | None = None) -> dict:
    """Every case; the arrays (rank 0's) by name."""
    out: dict = {}
    collectives(world, out)
    sets = data()

    net = mixed(world)
    arrays_of(net, "init64", out)
    _, errors = train(net, "adam", 2, lam=0.001, lam1=0.0001)
    out["mixed64.errors"] = np.asarray(errors)
    arrays_of(net, "mixed64", out)

    runs = []
    for _ in range(2):  # run to run: the same fingerprint
        net32 = mixed(world, torch.float32)
        trainer32, errors = train(net32, "momentum", 2, alpha=0.05)
        runs.append(network_to_file(net32))
    out["mixed32.errors"] = np.asarray(errors)
    arrays_of(net32, "mixed32", out)
    if runs[0] is not None:
        out["mixed32.run_fingerprints"] = np.asarray([nf.info["fingerprint"] for nf in runs])

    # resume: 1 epoch, checkpoint (gathered, written by rank 0), restore sharded, 1 more epoch
    first = mixed(world, torch.float32)
    trainer, _ = train(first, "momentum", 1, alpha=0.05)
    path = f"{tmp}/resume_{world.size}.nc"
    save_network(first, path, *trainer_state(trainer))
    from destiny.io.network_file import read_network

    nf = read_network(path)
    resumed = network_from_file(nf, world=world)
    again = Trainer(resumed, "momentum", Hyperparameters(alpha=0.05), batch_size=BATCH, progress=False, seed=21)
    restore_trainer(again, nf, path)
    again.fit(sets, 1)
    arrays_of(resumed, "resumed32", out)

    # predictions of the float64 network: top-5 without the seen items, and the activations
    scores, items = recommend(net, inputs_of(sets), 5, exclude=sets["in"], batch_size=25)
    out["mixed64.top_scores"], out["mixed64.top_items"] = scores, items
    from destiny.train.binding import Binding

    binding = Binding(net, sets, device=world.device, with_targets=False)
    inputs, _ = binding.batch(torch.arange(EXAMPLES))
    out["mixed64.predict"] = net.predict(inputs)["Output"].numpy()

    validation(world, net, sets, out)

    # save on N (rank 0 writes the whole file)
    save_network(net, f"{tmp}/mixed64_{world.size}.nc")

    # load a file (by default the one just saved; N processes: one written by one process)
    from destiny.train.checkpoint import load_network

    loaded = load_network(reference_file or f"{tmp}/mixed64_{world.size}.nc", world=world, dtype=torch.float64)
    arrays_of(loaded, "loaded", out)
    scores, items = recommend(loaded, inputs_of(sets), 5, exclude=sets["in"])
    out["loaded.top_scores"], out["loaded.top_items"] = scores, items

    t = tied(world)
    arrays_of(t, "tiedinit", out)
    _, errors = train(t, "nesterov", 2, alpha=0.1)
    out["tied.errors"] = np.asarray(errors)
    arrays_of(t, "tied", out)
    scores, items = recommend(t, {"in": sets["in"]}, 4, exclude=sets["in"], batch_size=17)
    out["tied.top_scores"], out["tied.top_items"] = scores, items
    return out if world.is_root else {}
