"""The fused optimizer kernels through ``DsstneOptimizer``: every kind, dense and row-sparse
gradients, with and without regularisation, against the torch formula in float64 (the truth)
and in float32 (PyTorch's own error)."""

from __future__ import annotations

import pytest
import torch

from destiny.ops import functional as F
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
