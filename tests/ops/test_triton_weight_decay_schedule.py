"""The fused optimizer with decoupled weight decay and a learning-rate schedule against the
torch formula (``DsstneOptimizer``'s reference path): the rate computed on the device from its
step counter equals ``learning_rate()`` at every step of every schedule kind, and whole
updates (dense and row-sparse, every optimizer) agree as the plain fused update does."""

from __future__ import annotations

import pytest
import torch

from destiny.config.enums import ScheduleKind, ScheduleUnit
from destiny.ops import functional as F
from destiny.train.optimizers import DsstneOptimizer, Hyperparameters, Optimizer
from destiny.train.schedule import Schedule
from tests.ops.kernel_check import assert_close
from tests.ops.test_triton_optimizer import ROWS, UNITS, gradients

SCHEDULES = {
    "constant": Schedule(),
    "warmup": Schedule(ScheduleKind.CONSTANT, warmup=3),
    "linear": Schedule(ScheduleKind.LINEAR, warmup=2, final_ratio=0.1),
    "cosine": Schedule(ScheduleKind.COSINE, warmup=1, final_ratio=0.05),
    "cosine-to-0": Schedule(ScheduleKind.COSINE),
    "step-updates": Schedule(ScheduleKind.STEP, every=3, unit=ScheduleUnit.UPDATES, gamma=0.5),
    "step-epochs": Schedule(ScheduleKind.STEP, warmup=2, every=1, unit=ScheduleUnit.EPOCHS, gamma=0.3),
}
HYPER = dict(alpha=0.05, lam=0.01, lam1=0.001, mu=0.9, mu1=0.99, decay=0.01, weight_decay=0.2)


@pytest.mark.parametrize("name", list(SCHEDULES))
@pytest.mark.parametrize("decay", [0.0, 0.02], ids=["no-decay", "decay"])
def test_the_device_rate_is_the_host_rate_at_every_step(device, name, decay):
    """14 steps of a 12-update run (past its end), 4 updates an epoch; the device's float32 rate
    against the host's float64 one, rounded to float32."""
    w = torch.nn.Parameter(torch.zeros(8, device=device))
    opt = DsstneOptimizer({"w": w}, "adam", Hyperparameters(alpha=0.3, decay=decay), schedule=SCHEDULES[name])
    opt.plan(12, 4)
    host, dev = [], []
    with F.kernels(True):
        for _ in range(14):
            host.append(opt.learning_rate())
            opt.step()  # no gradient: the device counter and its scalars advance all the same
            dev.append(float(opt._device["scalars"][0]))
    want = torch.tensor(host, dtype=torch.float32).double()
    torch.testing.assert_close(torch.tensor(dev, dtype=torch.float64), want, rtol=2e-7, atol=0)
    assert opt.steps == 14 and int(opt._device["steps"]) == 14


def test_planning_again_updates_the_device_constants_in_place(device):
    w = torch.nn.Parameter(torch.zeros(4, device=device))
    opt = DsstneOptimizer({"w": w}, "sgd", Hyperparameters(alpha=1.0), schedule=SCHEDULES["linear"])
    opt.plan(10)
    with F.kernels(True):
        opt.step()
        consts = opt._device["consts"]
        opt.plan(40)  # a later fit with more epochs
        assert opt._device["consts"] is consts and float(consts[6]) == 40.0
        opt.step()
    assert float(opt._device["scalars"][0]) == pytest.approx(Schedule.factor(SCHEDULES["linear"].planned(40), 1),
                                                              rel=1e-7)


def train(device, kind, dtype, sparse, force, schedule):
    gen = torch.Generator().manual_seed(1)
    w = torch.nn.Parameter((torch.randn(ROWS, UNITS, generator=gen) * 0.1).to(device=device, dtype=dtype))
    b = torch.nn.Parameter((torch.randn(UNITS, generator=gen) * 0.1).to(device=device, dtype=dtype))
    opt = DsstneOptimizer({"w": w, "b": b}, kind, Hyperparameters(**HYPER), regularized={"w"}, schedule=schedule)
    opt.plan(3, 1)
    with F.kernels(force):
        for gw, gb in gradients(device, sparse=sparse):
            w.grad, b.grad = gw.to(dtype), gb.to(dtype)
            opt.step()
    return [w.detach(), b.detach()] + [t for st in opt.state.values() for t in st.values()]


@pytest.mark.parametrize("kind", list(Optimizer), ids=lambda k: k.value)
@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "row-sparse"])
def test_fused_updates_with_weight_decay_and_a_schedule_match_the_formula(device, kind, sparse):
    """3 steps with λ, λ₁, wd, Decay and a warmed-up cosine: fused float32 against the torch
    formula in float64 (the truth) and float32 (PyTorch's own error)."""
    schedule = SCHEDULES["cosine"]
    truth = train(device, kind, torch.float64, sparse, False, schedule)
    baseline = train(device, kind, torch.float32, sparse, False, schedule)
    fused = train(device, kind, torch.float32, sparse, True, schedule)
    names = ["w", "b"] + [f"state {i}" for i in range(len(truth) - 2)]
    for name, f, t, base in zip(names, fused, truth, baseline):
        assert_close(f, t, torch.float32, base, what=f"{kind.value} {name}")


def test_weight_decay_alone_decays_the_rows_outside_the_batch_on_the_fused_path(device):
    """SGD with only wd and a row-sparse gradient: every row is visited (rows outside the batch
    shrink by 1 − α·wd), as the dense formula with zero rows."""
    results = []
    for force in (True, False):
        gen = torch.Generator().manual_seed(2)
        w = torch.nn.Parameter(torch.randn(ROWS, UNITS, generator=gen).to(device))
        opt = DsstneOptimizer({"w": w}, "sgd", Hyperparameters(alpha=0.1, lam=0.0, weight_decay=0.5))
        with F.kernels(force):
            for gw, _ in gradients(device, steps=2, sparse=True, seed=3):
                w.grad = gw.float()
                opt.step()
        results.append(w.detach().cpu())
    assert_close(results[0], results[1].double(), torch.float32, what="sgd wd-only row-sparse")
    seen = set().union(*(g.coalesce().indices()[0].tolist() for g, _ in gradients("cpu", 2, True, 3)))
    untouched = [r for r in range(ROWS) if r not in seen]
    assert untouched, "the test needs a row outside both batches"
    gen = torch.Generator().manual_seed(2)
    w0 = torch.randn(ROWS, UNITS, generator=gen)
    assert_close(results[0][untouched], (w0[untouched].double() * 0.95 ** 2), torch.float32, what="untouched rows")
