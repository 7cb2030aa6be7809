"""WeightInit.ClosedForm (nn/closedform.py): the solve against a column-by-column reference;
a network started from it sits at its training optimum (EASE: a full-batch step does not move
it; with denoising, the gradient averaged over dropout masks vanishes); the hybrid starts as the
closed form's model; the Trainer validates the start as epoch 0 and keeps it when training
does worse; the key is refused where it cannot apply."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from destiny.config import config_from_json, load_config
from destiny.errors import ConfigError, UsageError
from destiny.nn.closedform import solve
from destiny.nn.network import Network
from destiny.train.optimizers import Hyperparameters
from destiny.train.trainer import Trainer
from tests.nn.test_recipes_zero_diagonal import baskets, dense, ease

EASE_JSON = Path(__file__).resolve().parents[2] / "examples" / "configs" / "ease.json"


def reference(a: np.ndarray, y: np.ndarray, lam: float, p: float, rescale: bool):
    """B: each column j by its own least squares over the other columns (diag(B) = 0 by
    construction), under the expected denoising of the module docstring, without a bias."""
    s, v = (1.0, p / (1 - p)) if rescale else (1 - p, p * (1 - p))
    m = a.shape[1]
    g = s * s * a.T @ a + np.diag(v * (a * a).sum(0)) + lam * np.eye(m)
    b = np.zeros((m, m))
    for j in range(m):
        rest = [i for i in range(m) if i != j]
        b[rest, j] = np.linalg.solve(g[np.ix_(rest, rest)], s * a[:, rest].T @ y[:, j])
    return b


@pytest.mark.parametrize("normalized", [False, True])
@pytest.mark.parametrize("p, rescale", [(0.0, True), (0.3, True), (0.3, False)])
def test_solve_equals_the_column_by_column_reference(normalized, p, rescale):
    rng = np.random.default_rng(1)
    x = (rng.random((70, 13)) < 0.3).astype(float)
    x[:, 5] = 0.0  # an item nobody has: λ keeps the system solvable
    a = x / np.maximum(1.0, np.sqrt(x.sum(1, keepdims=True))) if normalized else x
    b = solve(sp.csr_matrix(a), sp.csr_matrix(x) if normalized else None, 4.0, p=p, rescale=rescale,
              dtype=torch.float64)
    np.testing.assert_allclose(b.numpy(), reference(a, x, 4.0, p, rescale), atol=1e-12)
    assert not b.diagonal().any()


def test_a_float32_solve_is_close_to_float64():
    x = sp.csr_matrix((np.random.default_rng(2).random((200, 40)) < 0.2).astype(float))
    b64 = solve(x, None, 10.0, dtype=torch.float64)
    b32 = solve(x, None, 10.0, dtype=torch.float32)
    assert b32.dtype == torch.float32
    np.testing.assert_allclose(b32.double().numpy(), b64.numpy(), atol=1e-5)


def ease_config(lam_n: float, **top) -> dict:
    doc = json.loads(EASE_JSON.read_text())
    doc["Layers"][1]["WeightInit"]["ClosedForm"] = lam_n
    doc.update(top)
    return doc


def test_ease_network_starts_at_closed_form_ease_and_its_training_optimum():
    """λ' = n·λ: the start is closed-form EASE (bias 0), and with the bias held a full-batch SGD
    step of the training loss (DSSTNE's λ = λ'/n) leaves it."""
    users, items, lam = 60, 12, 0.5
    data = baskets(users, items, seed=7)
    net = Network.from_config(config_from_json(ease_config(users * lam)), {"input": (items,), "output": (items,)},
                              seed=1, dtype=torch.float64)
    net.start_training({"input": data, "output": data})
    net.biases["b0"].requires_grad_(False)
    x = dense(data)
    start = net.weights["w0"].detach().clone()
    np.testing.assert_allclose(start.numpy(), ease(x, users * lam), atol=1e-12)
    assert not net.biases["b0"].detach().any()  # not the FrequencyBias means: EASE has no bias
    trainer = Trainer(net, "sgd", Hyperparameters(alpha=0.5, lam=lam, mu=0.0), batch_size=users, progress=False)
    trainer.fit({"input": data, "output": data}, 1)
    assert float((net.weights["w0"].detach() - start).abs().max()) < 1e-12


def test_with_denoising_the_start_is_the_expected_losss_minimum():
    """Denoising p = 0.4 (rescaled): the gradient of the training loss at the start, averaged
    over 3,000 dropout masks, is ~0 — against a clear gradient for B = 0 — so the closed form
    minimises the expected error the network trains on (EDLAE)."""
    users, items = 50, 10
    data = baskets(users, items, seed=3)
    doc = ease_config(8.0, Denoising={"p": 0.4})
    net = Network.from_config(config_from_json(doc), {"input": (items,), "output": (items,)}, seed=1,
                              dtype=torch.float64)
    net.start_training({"input": data, "output": data})
    x = torch.as_tensor(dense(data))
    w, bias = net.weights["w0"].detach(), net.biases["b0"].detach()
    assert not bias.any()
    gen = torch.Generator().manual_seed(0)

    def mean_gradient(w0):
        total = torch.zeros_like(w0)
        for _ in range(3000):
            kept = (torch.rand(x.shape, generator=gen, dtype=torch.float64) >= 0.4) / 0.6
            xt = x * kept
            residual = xt @ w0 + bias - x
            total += xt.T @ residual + 8.0 * w0
        g = total / 3000
        g.fill_diagonal_(0.0)
        return g

    at_start, at_zero = mean_gradient(w), mean_gradient(torch.zeros_like(w))
    assert float(at_start.abs().max()) < 0.08 * float(at_zero.abs().max())


def hybrid_data(users=80, items=30, seed=4):
    from tests.helpers import clustered_dataset

    return clustered_dataset(users, items, seed=seed)


def test_the_hybrid_starts_as_the_closed_form_of_its_normalised_input():
    from destiny.recipes import hybrid

    data = hybrid_data()
    cfg = config_from_json(hybrid(hidden=8, dropout=0.25, loss="L2", closed_form=3.0))
    net = Network.from_config(cfg, {"input": (30,), "output": (30,)}, seed=2, dtype=torch.float64)
    net.start_training({"input": data, "output": data})
    x = dense(data)
    a = x / np.maximum(1e-300, np.sqrt((x * x).sum(1, keepdims=True)))
    want_b = reference(a, x, 3.0, 0.25, True)
    square = next(s for s in net.specs if (s.input_layer, s.output_layer) == ("Input", "Output"))
    hidden = next(s for s in net.specs if (s.input_layer, s.output_layer) == ("Hidden1", "Output"))
    np.testing.assert_allclose(net.weights[f"w{square.index}"].detach().numpy(), want_b, atol=1e-12)
    assert not net.weights[f"w{hidden.index}"].detach().any() and not net.bias(hidden).detach().any()
    scores = net.predict({"Input": data})["Output"].numpy()
    np.testing.assert_allclose(scores, a @ want_b, atol=1e-10)


def test_the_trainer_validates_the_start_as_epoch_0_and_keeps_it_when_training_does_worse():
    """A learning rate that wrecks the matrix: early stopping ends on the closed-form start
    (best_epoch 0, its metrics in start_metrics); a loaded network is not re-solved."""
    import destiny
    from destiny.recipes import ease_network

    rng = np.random.default_rng(5)
    cluster = np.arange(120) % 2  # users of two tastes: items 0-19 or 20-39
    full = ((rng.random((120, 40)) < 0.4) & ((np.arange(40) // 20) == cluster[:, None])).astype(np.float32)
    held = np.zeros_like(full)
    for u in range(120):
        items = np.flatnonzero(full[u])
        if items.size > 1:
            held[u, items[0]] = 1.0
            full[u, items[0]] = 0.0
    train, validation = sp.csr_matrix(full), sp.csr_matrix(held)
    model = destiny.Recommender(ease_network(closed_form=20.0), alpha=5.0, optimizer="sgd", epochs=3,
                                patience=None, batch_size=32, refit=False).fit(train, validation=validation)
    assert model.best_epoch_ == 0
    assert [r["epoch"] for r in model.history_] == [1, 2, 3]  # the start is not an epoch of the history
    start = destiny.Recommender(ease_network(closed_form=20.0), epochs=0).fit(train)
    assert torch.equal(model.network_.weights["w0"], start.network_.weights["w0"])
    ids, _ = model.recommend(np.arange(5), train, N=5)
    ids0, _ = start.recommend(np.arange(5), train, N=5)
    assert np.array_equal(ids, ids0)


@pytest.mark.parametrize("change, message", [
    (lambda d: d["Layers"][1].update(ZeroDiagonal=False), "ZeroDiagonal Output layers"),
    (lambda d: d["Layers"][1].update(Activation="Sigmoid"), "Linear output"),
    (lambda d: d.update(ErrorFunction="CrossEntropy"), "Linear output"),
    (lambda d: d["Layers"][1]["WeightInit"].update(ClosedForm=-1), ">= 0"),
    (lambda d: d["Layers"][1]["WeightInit"].update(ClosedForm="big"), "finite number"),
])
def test_the_key_is_refused_where_it_cannot_apply(change, message):
    doc = ease_config(10.0)
    change(doc)
    with pytest.raises(ConfigError, match="ClosedForm") as err:
        config_from_json(doc)
    assert message in str(err.value)


def test_the_recipes_refuse_a_closed_form_they_cannot_solve():
    from destiny.recipes import ease_network, hybrid

    with pytest.raises(UsageError, match="loss"):
        hybrid(closed_form=10.0)
    with pytest.raises(UsageError, match="closed_form"):
        ease_network(closed_form=float("nan"))
    assert ease_network(closed_form=5)["Layers"][1]["WeightInit"]["ClosedForm"] == 5.0


def test_a_dsstne_file_without_the_key_is_unchanged():
    cfg = load_config(EASE_JSON)
    assert cfg.layers[1].weight_init.closed_form is None


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_the_solve_on_the_gpu_equals_the_cpus_and_repeats():
    """Under torch's deterministic mode (as the Trainer runs): float64 on the GPU within 1e-10
    of the CPU, and two solves bitwise equal."""
    x = sp.csr_matrix((np.random.default_rng(6).random((3000, 700)) < 0.05).astype(float))
    a = sp.diags(1.0 / np.sqrt(np.maximum(1.0, np.asarray(x.sum(1)).ravel()))) @ x
    cpu = solve(a, x, 5.0, p=0.25, dtype=torch.float64)
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        first = solve(a, x, 5.0, p=0.25, device="cuda", dtype=torch.float64)
        second = solve(a, x, 5.0, p=0.25, device="cuda", dtype=torch.float64)
    finally:
        torch.use_deterministic_algorithms(previous)
    assert torch.equal(first, second)
    np.testing.assert_allclose(first.cpu().numpy(), cpu.numpy(), atol=1e-10)
