"""Each optimizer's update against its textbook (DSSTNE) formula on a fixed gradient, dense
and row-sparse gradients alike, and the first SGD step of a tiny network by hand."""

from __future__ import annotations

import math

import pytest
import torch

from destiny.nn.network import Network
from destiny.ops.sparse import SparseBatch
from destiny.train.optimizers import DsstneOptimizer, Hyperparameters, Optimizer
from tests.helpers import config

W0 = [0.5, -0.25, 1.0, 0.0]
G = [0.2, -0.4, 0.0, 1.0]
H = dict(alpha=0.1, lam=0.01, lam1=0.001, mu=0.9, mu1=0.99)


def textbook(kind: Optimizer, steps: int, regularized: bool = True) -> list[float]:
    """Two steps of DSSTNE's formula, element by element, in plain Python."""
    a, lam, lam1, mu, mu1 = H["alpha"], H["lam"], H["lam1"], H["mu"], H["mu1"]
    out = []
    for w, grad in zip(W0, G):
        v = m = s = 0.0
        for t in range(1, steps + 1):
            g = -grad
            if regularized:
                g -= lam * w + lam1 * (1 if w > 0 else -1 if w < 0 else 0)
            if kind == Optimizer.SGD:
                w += a * g
            elif kind == Optimizer.MOMENTUM:
                v = mu * v + a * g
                w += v
            elif kind == Optimizer.NESTEROV:
                v_new = mu * v + a * g
                w += v_new + mu * (v_new - v)
                v = v_new
            elif kind == Optimizer.ADAGRAD:
                v += g * g
                w += a * g / math.sqrt(max(1e-9, v))
            elif kind == Optimizer.RMSPROP:
                v = mu * v + (1 - mu) * g * g
                w += a * g / math.sqrt(max(1e-9, v))
            elif kind == Optimizer.ADADELTA:
                s = mu * s + (1 - mu) * g * g
                d = math.sqrt(max(1e-9, v) / max(1e-9, s)) * g
                v = mu * v + (1 - mu) * d * d
                w += d
            else:
                m = mu * m + (1 - mu) * g
                s = mu1 * s + (1 - mu1) * g * g
                w += a * (m / (1 - mu ** t)) / (math.sqrt(s / (1 - mu1 ** t)) + 1e-8)
        out.append(w)
    return out


def run(kind: Optimizer, sparse: bool, regularized: bool = True) -> torch.Tensor:
    p = torch.nn.Parameter(torch.tensor([W0, W0], dtype=torch.float64).t().contiguous())  # (4, 2)
    opt = DsstneOptimizer({"w": p}, kind, Hyperparameters(**H), regularized={"w"} if regularized else set())
    g = torch.tensor([G, G], dtype=torch.float64).t().contiguous()
    for _ in range(2):
        if sparse:  # rows with a zero gradient are absent from the sparse gradient
            rows = torch.tensor([0, 1, 3])
            p.grad = torch.sparse_coo_tensor(rows.unsqueeze(0), g[rows], g.shape)
        else:
            p.grad = g.clone()
        opt.step()
    return p.detach()[:, 0]


@pytest.mark.parametrize("kind", list(Optimizer), ids=lambda k: k.value)
@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "row-sparse"])
@pytest.mark.parametrize("regularized", [True, False])
def test_update_matches_the_formula(kind, sparse, regularized):
    torch.testing.assert_close(run(kind, sparse, regularized),
                               torch.tensor(textbook(kind, 2, regularized), dtype=torch.float64))


def test_decay_divides_the_learning_rate_by_one_plus_decay_times_steps():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = DsstneOptimizer({"p": p}, "sgd", Hyperparameters(alpha=0.5, decay=0.1))
    assert opt.learning_rate() == 0.5
    p.grad = torch.zeros(1)
    opt.step()
    opt.step()
    assert opt.learning_rate() == pytest.approx(0.5 / 1.2)


def test_unknown_optimizer_is_a_usage_error():
    from destiny.errors import UsageError

    with pytest.raises(UsageError, match="unknown optimizer 'lbfgs'; use one of sgd, momentum"):
        Optimizer.parse("lbfgs")


def test_first_sgd_step_of_a_tiny_network_by_hand():
    # 2 sparse analog inputs → 1 linear output, L2 error, weights 0.5, bias 0.1.
    cfg = config([{"Name": "in", "N": 2, "DataSet": "x", "Sparse": True},
                  {"Name": "out", "N": 1, "DataSet": "y", "Activation": "Linear", "Sparse": True,
                   "WeightInit": {"Scheme": "Constant", "Scale": 0.5, "Bias": 0.1}}], ErrorFunction="L2")
    net = Network.from_config(cfg, dtype=torch.float64)
    # example 1: x = (2, 0), target 1;  example 2: x = (1, 3), target 0
    x = SparseBatch(torch.tensor([0, 1, 3]), torch.tensor([0, 0, 1]), torch.tensor([2.0, 1.0, 3.0], dtype=torch.float64), 2)
    t = SparseBatch(torch.tensor([0, 1, 1]), torch.tensor([0]), torch.tensor([1.0], dtype=torch.float64), 1)
    loss, _ = net.loss({"in": x}, {"out": t})
    # z = (2·0.5 + 0.1, 1·0.5 + 3·0.5 + 0.1) = (1.1, 2.1); loss = ½·0.1² + ½·2.1² = 2.21
    assert float(loss.detach()) == pytest.approx(2.21)
    opt = DsstneOptimizer(dict(net.named_parameters()), "sgd", Hyperparameters(alpha=0.1, lam=0.01),
                          regularized={"weights.w0"})
    (loss / 2).backward()
    opt.step()
    # δ = (0.1, 2.1); ∂W = ½(2·0.1 + 1·2.1, 3·2.1) = (1.15, 3.15); ∂b = ½(0.1 + 2.1) = 1.1
    # w ← w − 0.1·(∂W + 0.01·w) = (0.5 − 0.1150 − 0.0005, 0.5 − 0.3150 − 0.0005); b ← 0.1 − 0.11
    torch.testing.assert_close(net.weights["w0"].detach().view(-1), torch.tensor([0.3845, 0.1845], dtype=torch.float64))
    assert float(net.biases["b0"]) == pytest.approx(-0.01)


def test_adams_penalised_gradient_is_the_dsstne_form_bitwise():
    """Adam's gradient + λw + λ₁·sign w equals −(−gradient − λw − λ₁·sign w), the form the
    other optimizers use, bit for bit; a decoupled weight decay then shrinks w."""
    gen = torch.Generator().manual_seed(0)
    w0 = torch.randn(300, 7, generator=gen)
    w0[:5] = 0.0
    grad = torch.randn(300, 7, generator=gen) * 1e-3
    for lam, lam1, wd in [(1e-4, 0.0, 0.0), (0.01, 1e-3, 0.0), (0.0, 1e-3, 0.05), (0.3, 0.0, 0.05)]:
        w = w0.clone()
        opt = DsstneOptimizer({"w": torch.nn.Parameter(w)}, Optimizer.ADAM,
                              Hyperparameters(alpha=0.1, lam=lam, lam1=lam1, weight_decay=wd))
        g = -grad
        if lam:
            g = g - lam * w0
        if lam1:
            g = g - lam1 * torch.sign(w0)
        assert torch.equal(opt._penalised(w, grad, 0.1).view(torch.int32), (-g).view(torch.int32))
        assert torch.equal(w, w0 * (1.0 - 0.1 * wd) if wd else w0)
