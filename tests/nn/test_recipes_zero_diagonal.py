"""ZeroDiagonal layers (nn/itemitem.py): the diagonal of every square incoming matrix is zero
at initialisation and after every update, whatever the optimizer, λ or WeightNorm; and EASE as
a network (examples/configs/ease.json) trained full-batch with plain SGD and DSSTNE's λ
converges to closed-form EASE with λ' = n·λ."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from destiny.config import load_config
from destiny.nn.network import Network
from destiny.train.optimizers import Hyperparameters
from destiny.train.trainer import Trainer
from tests.helpers import config, sparse_dataset

EASE_JSON = Path(__file__).resolve().parents[2] / "examples" / "configs" / "ease.json"


def baskets(users: int, items: int, seed: int, density: float = 0.3):
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(users):
        row = np.flatnonzero(rng.random(items) < density)
        rows.append(row if row.size else np.array([rng.integers(items)]))
    return sparse_dataset(rows, items)


def dense(ds) -> np.ndarray:
    x = np.zeros((len(ds.offsets) - 1, ds.n_features))
    for u in range(x.shape[0]):
        x[u, ds.indices[ds.offsets[u]:ds.offsets[u + 1]]] = 1.0
    return x


def ease(x: np.ndarray, lam: float) -> np.ndarray:
    """Closed-form EASE (Steck 2019): B = I − P·diagMat(1/diag(P)), P = (XᵀX + λI)⁻¹."""
    p = np.linalg.inv(x.T @ x + lam * np.eye(x.shape[1]))
    return np.eye(x.shape[1]) - p / np.diag(p)[None, :]


@pytest.mark.parametrize("bias", ["trained", "frozen"])
def test_ease_network_converges_to_closed_form_ease(bias):
    """Full batch, SGD, λ = 0.5 on 60 users: DSSTNE's loss (1/n)·Σ½‖x − xB − b‖² + ½λ‖B‖² is
    EASE's ‖X − XB‖² + λ'‖B‖² over 2n with λ' = n·λ; a trained bias b (not regularised) takes
    the item means, which is EASE on column-centred X; a bias held at 0 is EASE on X itself."""
    users, items, lam = 60, 12, 0.5
    data = baskets(users, items, seed=7)
    net = Network.from_config(load_config(EASE_JSON), {"input": (items,), "output": (items,)}, seed=1,
                              dtype=torch.float64)
    if bias == "frozen":
        net.biases["b0"].requires_grad_(False)
    trainer = Trainer(net, "sgd", Hyperparameters(alpha=0.5, lam=lam, mu=0.0), batch_size=users, progress=False)
    errors = [r.training_error for r in trainer.fit({"input": data, "output": data}, 120)]
    x = dense(data)
    target = ease(x - x.mean(0) if bias == "trained" else x, users * lam)
    b = net.weights["w0"].detach().numpy()
    assert np.array_equal(np.diag(b), np.zeros(items))
    assert np.abs(b - target).max() < 1e-9, np.abs(b - target).max()
    if bias == "trained":
        np.testing.assert_allclose(net.biases["b0"].detach().numpy(), x.mean(0) @ (np.eye(items) - target),
                                   atol=1e-9)
    else:
        assert not net.biases["b0"].detach().any()
    assert errors[-1] < errors[0]
    scores = net.predict({"Input": data})["Output"].numpy()  # a Linear output: x·B + b
    np.testing.assert_allclose(scores, x @ b + net.biases["b0"].detach().numpy(), atol=1e-12)


def deep(zero_diagonal: bool = True, **extra):
    """In (sparse 24) → H1 (16) → H2 (16, ZeroDiagonal, from H1 and In) → Out (24, ZeroDiagonal,
    from H2 and In: the In → Out matrix is square)."""
    cfg = config([
        {"Name": "In", "N": "auto", "DataSet": "in", "Sparse": True},
        {"Name": "H1", "N": 16, "Activation": "Tanh"},
        {"Name": "H2", "N": 16, "Source": ["H1", "In"], "Activation": "Tanh", "ZeroDiagonal": zero_diagonal,
         **extra},
        {"Name": "Out", "N": "auto", "DataSet": "in", "Sparse": True, "Source": ["H2", "In"],
         "Activation": "Sigmoid", "ZeroDiagonal": zero_diagonal},
    ], ErrorFunction="CrossEntropy", Denoising={"p": 0.2})
    return Network.from_config(cfg, {"in": (24,)}, seed=5)


def squares(net):
    """The held matrices: H1 → H2 (16 × 16) and In → Out (24 × 24), and the others."""
    by_pair = {(s.input_layer, s.output_layer): f"w{s.index}" for s in net.specs}
    held = [by_pair[("H1", "H2")], by_pair[("In", "Out")]]
    return held, [k for k in net.weights if k not in held]


def test_only_square_matrices_into_zero_diagonal_layers_are_held():
    net = deep()
    held, others = squares(net)
    assert sorted(k for k, _ in net.diagonals) == sorted(held)
    for key in held:
        assert not net.weights[key].diagonal().any()
    assert all(net.weights[k].abs().sum() > 0 for k in others)
    assert not deep(False).diagonals
    assert all(deep(False).weights[k].diagonal().abs().sum() > 0 for k in held)


@pytest.mark.parametrize("optimizer, hyper", [
    ("sgd", dict(alpha=0.1, lam=0.01)), ("momentum", dict(alpha=0.05, mu=0.9)),
    ("adam", dict(alpha=0.01, lam=0.001)), ("adagrad", dict(alpha=0.05)),
])
def test_the_diagonal_stays_zero_through_training(optimizer, hyper):
    from tests.helpers import clustered_dataset

    net = deep(WeightNorm=0.5)
    held, _ = squares(net)
    data = clustered_dataset(90, 24, seed=3)
    before = {k: net.weights[k].detach().clone() for k in held}
    Trainer(net, optimizer, Hyperparameters(**hyper), batch_size=32, progress=False).fit({"in": data}, 3)
    for key in held:
        w = net.weights[key].detach()
        assert not w.diagonal().any(), key
        off = ~torch.eye(w.shape[0], dtype=torch.bool)
        assert not torch.equal(w[off], before[key][off])  # the rest trained
    h2 = net.weights[held[0]].detach()
    assert float(h2.norm(dim=0).max()) <= 0.5 + 1e-6  # WeightNorm after the diagonal's reset


def test_a_network_from_a_file_gets_its_diagonal_zeroed_when_training_starts(tmp_path):
    from destiny.train.checkpoint import load_network

    net = deep()
    held, _ = squares(net)
    with torch.no_grad():
        net.weights[held[1]].diagonal().fill_(0.75)  # a file written otherwise (another engine, an edit)
    path = tmp_path / "net.nc"
    net.save(path)
    loaded = load_network(path)
    assert torch.equal(loaded.weights[held[1]].diagonal(), torch.full((24,), 0.75))  # the file's weights
    loaded.start_training({})
    assert not loaded.weights[held[1]].diagonal().any()


@pytest.mark.parametrize("world, rank", [(2, 0), (2, 1), (3, 1), (3, 2)])
def test_a_shards_diagonal_is_its_blocks_offset_diagonal(world, rank):
    """The global diagonal elements in a block rows [r0, r1) × columns [c0, c1) are the block's
    diagonal of offset r0 − c0 (checked on a full matrix sliced as plan_matrices slices it)."""
    from destiny.parallel.plan import INPUT, OUTPUT, matrix_shard

    n = 11
    for mode in (OUTPUT, INPUT):
        shard = matrix_shard(mode, n, n, world, rank)
        full = torch.arange(n * n, dtype=torch.float64).view(n, n)
        block = shard.take(full).clone()
        block.diagonal(shard.rows[0] - shard.cols[0]).zero_()
        whole = full.clone()
        whole.diagonal().zero_()
        assert torch.equal(block, shard.take(whole)), (mode, world, rank)
