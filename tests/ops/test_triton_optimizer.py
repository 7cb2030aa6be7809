"""The fused optimizer kernels through ``DsstneOptimizer``: every kind, dense and row-sparse
gradients, with and without regularisation, against the torch formula in float64 (the truth)
and in float32 (PyTorch's own error)."""

from __future__ import annotations

import pytest
import torch

from destiny.ops import functional as F
from destiny.ops.sparse import RowSparseGrad
from destiny.train.optimizers import DsstneOptimizer, Hyperparameters, Optimizer
from tests.ops.kernel_check import assert_close

HYPER = dict(alpha=0.05, lam=0.01, lam1=0.001, mu=0.9, mu1=0.99, decay=0.01)
ROWS, UNITS = 300, 37


def gradients(device, steps=3, sparse=False, seed=0):
    """Per step: (weight gradient (dense, or sparse COO over 40 unsorted rows), bias gradient)."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(steps):
        g = torch.randn(ROWS, UNITS, generator=gen, dtype=torch.float64)
        if sparse:
            rows = torch.randperm(ROWS, generator=gen)[:40]
            g = torch.sparse_coo_tensor(rows.unsqueeze(0), g[rows], (ROWS, UNITS), check_invariants=False)
        out.append((g.to(device), torch.randn(UNITS, generator=gen, dtype=torch.float64).to(device)))
    return out


def train(device, kind, dtype, sparse, regularized, force):
    gen = torch.Generator().manual_seed(1)
    w = torch.nn.Parameter((torch.randn(ROWS, UNITS, generator=gen) * 0.1).to(device=device, dtype=dtype))
    b = torch.nn.Parameter((torch.randn(UNITS, generator=gen) * 0.1).to(device=device, dtype=dtype))
    opt = DsstneOptimizer({"w": w, "b": b}, kind, Hyperparameters(**HYPER), regularized={"w"} if regularized else set())
    with F.kernels(force):
        for gw, gb in gradients(device, sparse=sparse):
            w.grad, b.grad = gw.to(dtype), gb.to(dtype)
            opt.step()
    return [w.detach(), b.detach()] + [t for st in opt.state.values() for t in st.values()]


@pytest.mark.parametrize("kind", list(Optimizer), ids=lambda k: k.value)
@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "row-sparse"])
@pytest.mark.parametrize("regularized", [True, False], ids=["reg", "noreg"])
def test_fused_update_matches_the_formula(device, kind, sparse, regularized):
    truth = train(device, kind, torch.float64, sparse, regularized, force=False)
    baseline = train(device, kind, torch.float32, sparse, regularized, force=False)
    fused = train(device, kind, torch.float32, sparse, regularized, force=True)
    names = ["w", "b"] + [f"state {i}" for i in range(len(truth) - 2)]
    for name, f, t, base in zip(names, fused, truth, baseline):
        assert_close(f, t, torch.float32, base, what=f"{kind.value} {name}")
    if device.type == "cuda":
        again = train(device, kind, torch.float32, sparse, regularized, force=True)
        assert all(torch.equal(x, y) for x, y in zip(fused, again))


def test_the_dispatch_uses_the_kernel_only_when_told(device, monkeypatch):
    """kernels(True) routes DsstneOptimizer through the fused kernels (on CPU under the
    interpreter); float64 parameters keep the torch formula."""
    import destiny.ops.triton.optimizer as tk

    calls = []
    monkeypatch.setattr(tk, "fused_update", lambda *a, **k: calls.append("dense"))
    monkeypatch.setattr(tk, "fused_sparse_update", lambda *a, **k: calls.append("sparse"))
    p = torch.nn.Parameter(torch.ones(4, 3, device=device))
    q = torch.nn.Parameter(torch.ones(4, 3, device=device, dtype=torch.float64))
    opt = DsstneOptimizer({"p": p, "q": q}, "adam")
    p.grad = torch.sparse_coo_tensor(torch.tensor([[1]]), torch.ones(1, 3), (4, 3), check_invariants=False).to(device)
    q.grad = torch.ones(4, 3, device=device, dtype=torch.float64)
    with F.kernels(True):
        opt.step()
    assert calls == ["sparse"]
    with F.kernels(False):
        opt.step()
    assert calls == ["sparse"]


@pytest.mark.gpu
@pytest.mark.slow
@pytest.mark.parametrize("kind", [Optimizer.ADAM, Optimizer.SGD], ids=lambda k: k.value)
def test_row_sparse_update_of_a_ten_million_row_weight(kind):
    """10M × 256 (2.56e9 elements): rows above 8,388,607 sit past 2^31 elements."""
    n, units = 10_000_000, 256
    w = torch.nn.Parameter(torch.empty(n, units, device="cuda").uniform_(-0.1, 0.1))
    opt = DsstneOptimizer({"w": w}, kind, Hyperparameters(**HYPER))
    rows = torch.tensor([n - 1, 8_388_608, 3, 9_000_001], device="cuda")
    values = torch.randn(4, units, device="cuda")
    watch = torch.tensor([n - 1, 8_388_608, 3, 9_000_001, n - 2, 8_388_607, 0], device="cuda")
    before = w.detach()[watch].double()
    w.grad = torch.sparse_coo_tensor(rows.unsqueeze(0), values, (n, units), check_invariants=False)
    opt.step()
    # the same rows through the torch formula, as a small dense parameter (g = 0 on the others)
    small = torch.nn.Parameter(before.clone())
    dense = torch.zeros(len(watch), units, dtype=torch.float64, device="cuda")
    dense[:4] = values.double()
    small.grad = dense
    DsstneOptimizer({"w": small}, kind, Hyperparameters(**HYPER)).step()
    assert_close(w.detach()[watch], small.detach(), torch.float32, what=f"{kind.value} rows")


def padded_row_grad(gw: torch.Tensor, device, extra: int = 5) -> RowSparseGrad:
    """The COO gradient as a RowSparseGrad of capacity U + extra whose entries past its count
    are garbage (NaN rows, repeated features): a count read from device memory must hide them."""
    coo = gw.coalesce()
    features, rows = coo.indices()[0], coo.values()
    count = features.numel()
    features = torch.cat([features, features[:1].repeat(extra)])
    rows = torch.cat([rows, torch.full((extra, rows.shape[1]), float("nan"), dtype=rows.dtype, device=rows.device)])
    return RowSparseGrad(features.to(device), rows.to(device), torch.tensor(count, device=device))


@pytest.mark.parametrize("kind", [Optimizer.SGD, Optimizer.MOMENTUM, Optimizer.ADAM], ids=lambda k: k.value)
@pytest.mark.parametrize("regularized", [True, False], ids=["reg", "noreg"])
def test_a_row_grad_with_a_device_count_equals_the_coo_gradient(device, kind, regularized):
    """``param.row_grad`` (static capacity, count on the device) updates exactly as the same
    gradient given as sparse COO, on the kernels and on the torch formula."""
    for force in (False, True):
        runs = []
        for as_row_grad in (False, True):
            gen = torch.Generator().manual_seed(1)
            w = torch.nn.Parameter((torch.randn(ROWS, UNITS, generator=gen) * 0.1).to(device))
            opt = DsstneOptimizer({"w": w}, kind, Hyperparameters(**HYPER), regularized={"w"} if regularized else set())
            with F.kernels(force):
                for gw, _ in gradients(device, sparse=True):
                    if as_row_grad:
                        w.row_grad = padded_row_grad(gw.float(), device)
                    else:
                        w.grad = gw.float()
                    opt.step()
                    opt.zero_grad()
                    assert w.grad is None and w.row_grad is None
            runs.append([w.detach()] + list(opt.state["w"].values()))
        assert all(torch.equal(a, b) for a, b in zip(*runs))


def test_a_dense_and_a_row_sparse_gradient_are_summed(device):
    """A weight shared transposed with the sparse input layer gets both."""
    gw, _ = gradients(device, steps=1, sparse=True)[0]
    dense = torch.randn(ROWS, UNITS, generator=torch.Generator().manual_seed(3)).to(device)
    results = []
    for both in (True, False):
        w = torch.nn.Parameter(torch.zeros(ROWS, UNITS, device=device))
        opt = DsstneOptimizer({"w": w}, "momentum", Hyperparameters(**HYPER))
        with F.kernels(True):
            if both:
                w.grad, w.row_grad = dense.clone(), padded_row_grad(gw.float(), device)
            else:
                w.grad = dense + gw.float().to_dense()
            opt.step()
        results.append(w.detach().clone())
    assert_close(results[0], results[1].double(), torch.float32, what="dense + rows")


def test_the_device_step_counter_follows_the_host_one(device):
    """Decay and Adam's bias corrections come from a device counter: it advances with every
    step (gradients or not), restarts from ``steps`` when that is set (checkpoints), and an
    alpha override holds for one step."""
    def run(steps_before: int, override=None):
        w = torch.nn.Parameter(torch.ones(3, 4, device=device))
        opt = DsstneOptimizer({"w": w}, "adam", Hyperparameters(**HYPER))
        with F.kernels(True):
            opt.step()  # no gradient: the counter still advances
            opt.steps = steps_before
            w.grad = torch.full((3, 4), 0.5, device=device)
            opt.step(alpha=override)
        return w.detach(), opt.steps

    for steps_before, override in [(0, None), (7, None), (41, 0.003)]:
        got, steps = run(steps_before, override)
        assert steps == steps_before + 1
        h = Hyperparameters(**HYPER).resolved(Optimizer.ADAM)
        t = steps_before + 1
        lr = override if override is not None else h.alpha / (1 + h.decay * steps_before)
        g = -0.5 - h.lam * 1.0 - h.lam1
        m, s = (1 - h.mu) * g, (1 - h.mu1) * g * g
        expected = 1.0 + lr * (m / (1 - h.mu ** t)) / ((s / (1 - h.mu1 ** t)) ** 0.5 + 1e-8)
        assert_close(got, torch.full((3, 4), expected, dtype=torch.float64), torch.float32, what=f"step {t}")
