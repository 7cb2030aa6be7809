"""Decoupled weight decay (``"WeightDecay"``, AdamW's) on the torch path: Adam with it equals
torch.optim.AdamW, every optimizer follows w ← (1 − α·wd)·w + update, the biases are left
alone, and rows of a row-sparse gradient's weight that are not in the batch decay too."""

from __future__ import annotations

import pytest
import torch

from destiny.ops.sparse import RowSparseGrad
from destiny.train.optimizers import DsstneOptimizer, Hyperparameters, Optimizer
from destiny.train.schedule import Schedule
from destiny.config.enums import ScheduleKind

ROWS, UNITS = 12, 5


def grads(steps: int, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    return [(torch.randn(ROWS, UNITS, generator=gen, dtype=torch.float64),
             torch.randn(UNITS, generator=gen, dtype=torch.float64)) for _ in range(steps)]


def start(seed: int = 1):
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(ROWS, UNITS, generator=gen, dtype=torch.float64),
            torch.randn(UNITS, generator=gen, dtype=torch.float64))


@pytest.mark.parametrize("scheduled", [False, True], ids=["constant", "cosine"])
def test_adam_with_weight_decay_is_torch_adamw(scheduled):
    """Same ε placement (α·m̂/(√ŝ + ε)), decay α_s·wd·w on the weights only: equal to float64
    rounding over 6 steps (with a schedule, torch's lr set from ours each step)."""
    w0, b0 = start()
    w, b = torch.nn.Parameter(w0.clone()), torch.nn.Parameter(b0.clone())
    sched = Schedule(ScheduleKind.COSINE, warmup=2, final_ratio=0.1) if scheduled else None
    ours = DsstneOptimizer({"w": w, "b": b}, "adam", Hyperparameters(alpha=0.01, lam=0.0, mu=0.9, mu1=0.99,
                                                                     weight_decay=0.3),
                           regularized={"w"}, schedule=sched)
    ours.plan(6, 2)
    tw, tb = torch.nn.Parameter(w0.clone()), torch.nn.Parameter(b0.clone())
    theirs = torch.optim.AdamW([{"params": [tw], "weight_decay": 0.3}, {"params": [tb], "weight_decay": 0.0}],
                               lr=0.01, betas=(0.9, 0.99), eps=1e-8)
    for gw, gb in grads(6):
        for group in theirs.param_groups:
            group["lr"] = ours.learning_rate()
        w.grad, b.grad, tw.grad, tb.grad = gw, gb, gw.clone(), gb.clone()
        ours.step()
        theirs.step()
    torch.testing.assert_close(w.detach(), tw.detach(), rtol=1e-13, atol=1e-14)
    torch.testing.assert_close(b.detach(), tb.detach(), rtol=1e-13, atol=1e-14)


def textbook_step(kind: Optimizer, w, v, g_grad, lr, wd, mu):
    """One step of SGD/Momentum/Nesterov with decoupled decay, in plain torch float64."""
    g = -g_grad
    w = w * (1 - lr * wd)
    if kind == Optimizer.SGD:
        return w + lr * g, v
    v_new = mu * v + lr * g
    if kind == Optimizer.MOMENTUM:
        return w + v_new, v_new
    return w + v_new + mu * (v_new - v), v_new


@pytest.mark.parametrize("kind", [Optimizer.SGD, Optimizer.MOMENTUM, Optimizer.NESTEROV], ids=lambda k: k.value)
def test_every_optimizer_decays_the_weights_then_updates(kind):
    w0, b0 = start(2)
    w, b = torch.nn.Parameter(w0.clone()), torch.nn.Parameter(b0.clone())
    opt = DsstneOptimizer({"w": w, "b": b}, kind, Hyperparameters(alpha=0.1, lam=0.0, mu=0.5, weight_decay=0.2,
                                                                  decay=0.05), regularized={"w"})
    want_w, want_b, vw, vb = w0.clone(), b0.clone(), torch.zeros_like(w0), torch.zeros_like(b0)
    for gw, gb in grads(3, seed=4):
        lr = opt.learning_rate()
        want_w, vw = textbook_step(kind, want_w, vw, gw, lr, 0.2, 0.5)
        want_b, vb = textbook_step(kind, want_b, vb, gb, lr, 0.0, 0.5)  # biases: no decay
        w.grad, b.grad = gw, gb
        opt.step()
    torch.testing.assert_close(w.detach(), want_w, rtol=1e-14, atol=1e-15)
    torch.testing.assert_close(b.detach(), want_b, rtol=1e-14, atol=1e-15)


def test_weight_decay_reads_the_old_weight_for_lambda():
    """λ and wd together (SGD): w' = (1 − α·wd)·w + α·(−∇ − λw), λ on the w before the decay."""
    w = torch.nn.Parameter(torch.tensor([2.0, -1.0], dtype=torch.float64))
    opt = DsstneOptimizer({"w": w}, "sgd", Hyperparameters(alpha=0.5, lam=0.1, weight_decay=0.2))
    w.grad = torch.tensor([0.25, 0.5], dtype=torch.float64)
    opt.step()
    old = torch.tensor([2.0, -1.0], dtype=torch.float64)
    torch.testing.assert_close(w.detach(), 0.9 * old + 0.5 * (-w.grad - 0.1 * old), rtol=1e-15, atol=0)


@pytest.mark.parametrize("kind", list(Optimizer), ids=lambda k: k.value)
def test_rows_not_in_the_batch_decay_as_a_dense_zero_gradient_would(kind):
    """A row-sparse gradient over 4 of 12 rows equals the dense gradient with zero rows: the 8
    other rows decay (and, for SGD with wd alone, only decay)."""
    w0, _ = start(3)
    results = []
    for sparse in (True, False):
        w = torch.nn.Parameter(w0.clone())
        opt = DsstneOptimizer({"w": w}, kind, Hyperparameters(alpha=0.05, lam=0.0, weight_decay=0.4))
        for step, (gw, _) in enumerate(grads(3, seed=5)):
            rows = torch.tensor([1, 4, 5, 9]) + step % 2
            if sparse:
                w.row_grad = RowSparseGrad(rows, gw[rows], torch.tensor(4))
            else:
                dense = torch.zeros_like(gw)
                dense[rows] = gw[rows]
                w.grad = dense
            opt.step()
            opt.zero_grad()
        results.append(w.detach())
    torch.testing.assert_close(results[0], results[1], rtol=1e-14, atol=1e-15)
    if kind == Optimizer.SGD:  # row 0 is never in a batch: three decays of (1 − 0.05·0.4)
        torch.testing.assert_close(results[0][0], w0[0] * 0.98 ** 3, rtol=1e-15, atol=0)


def test_the_networks_weight_decay_fills_the_hyperparameters():
    from tests.helpers import config

    cfg = config([{"N": 4, "DataSet": "a", "Sparse": True}, {"N": 4, "DataSet": "b"}], WeightDecay=0.01, Decay=0.5)
    h = Hyperparameters().with_network(cfg)
    assert (h.weight_decay, h.decay) == (0.01, 0.5)
    assert Hyperparameters(weight_decay=0.2).with_network(cfg).weight_decay == 0.2  # given beats the file
