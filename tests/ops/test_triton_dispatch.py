"""How ``ops.functional`` chooses between kernels and references, and a whole training run on
the kernels against the same run on the references."""

from __future__ import annotations

import pytest
import torch

from destiny.backend import HAS_TRITON, use_triton
from destiny.errors import UsageError
from destiny.config import Activation, ErrorFunction
from destiny.nn.noise import Noise
from destiny.ops import functional as F
from destiny.ops.sparse import SparseRows
from destiny.train.optimizers import DsstneOptimizer, Hyperparameters
from tests.helpers import clustered_dataset
from tests.ops.kernel_check import assert_close
from tests.train.test_trainer import autoencoder

COMBO = (Activation.SIGMOID, ErrorFunction.SCALED_MARGINAL_CROSS_ENTROPY)


def test_references_by_default_on_cpu_and_either_way_when_forced():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert not F.use_kernels(cpu)
    assert F.use_kernels(cuda) == use_triton(cuda)
    with F.kernels(False):
        assert not F.use_kernels(cuda) and not F.use_kernels(cpu)
    if HAS_TRITON:
        with F.kernels(True):
            assert F.use_kernels(cuda)
            with F.kernels(False):
                assert not F.use_kernels(cuda)
            assert F.use_kernels(cuda)
    assert not F.use_kernels(cpu)


@pytest.mark.skipif(not HAS_TRITON, reason="Triton is not importable")
def test_forcing_kernels_on_cpu_without_the_interpreter_says_how(monkeypatch):
    monkeypatch.setattr(F, "TRITON_INTERPRET", False)
    with F.kernels(True), pytest.raises(UsageError, match="TRITON_INTERPRET=1"):
        F.use_kernels(torch.device("cpu"))


def test_the_backward_pass_keeps_the_forward_passs_choice(device, monkeypatch):
    import destiny.ops.triton.sparse_weight_grad as tk

    calls = []
    real = tk.sparse_weight_grad
    monkeypatch.setattr(tk, "sparse_weight_grad", lambda *a: calls.append(1) or real(*a))
    from tests.ops.test_triton_sparse_linear import batch_on, weights

    w = weights(device, 20, 6).requires_grad_()
    with F.kernels(True):
        y = F.sparse_linear(batch_on(device, 4, 20, 5), w)
    with F.kernels(False):
        y.sum().backward()
    assert calls == [1]


def test_training_on_the_kernels_equals_training_on_the_references(device):
    """Three Adam steps of a sparse autoencoder (denoising, ReLU + dropout, sigmoid outputs with
    ScaledMarginalCrossEntropy): sparse_linear, its weight gradient, dropout, the fused loss
    in place and the fused optimizer, all at once. (A hand-written loop: the Trainer would switch
    PyTorch's deterministic mode on for the whole test session.)"""
    rows = SparseRows(clustered_dataset(96, 40, seed=2), device)
    runs = []
    for force in (False, True):
        net = autoencoder(40, seed=3, dropout=0.3, denoise=0.1).to(device)
        params = dict(net.named_parameters())
        opt = DsstneOptimizer(params, "adam", Hyperparameters(alpha=0.01),
                              regularized={name for name in params if name.startswith("weights.")})
        losses = []
        with F.kernels(force):
            for step in range(3):
                batch = rows.take(torch.arange(32 * step, 32 * step + 32, device=device))
                total, _ = net.loss({"in": batch}, {"out": batch}, Noise(7, 0, step))
                (total / 32).backward()
                opt.step()
                opt.zero_grad()
                losses.append(float(total.detach()))
            with torch.no_grad():
                losses.append(float(net.loss({"in": batch}, {"out": batch})[0]))
        runs.append((losses, [p.detach().clone() for p in net.parameters()]))
    (loss_ref, w_ref), (loss_k, w_k) = runs
    assert loss_k == pytest.approx(loss_ref, rel=1e-5)
    for a, b in zip(w_k, w_ref):
        assert_close(a, b.double(), torch.float32, what="weights after training")


@pytest.mark.gpu
def test_the_kernel_paths_run_under_pytorchs_deterministic_mode():
    """The Trainer turns torch.use_deterministic_algorithms on; no torch op around a kernel may
    then refuse to run."""
    from tests.ops.test_triton_output_loss import spec_of, targets
    from tests.ops.test_triton_sparse_linear import batch_on, weights

    was = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        w = torch.nn.Parameter(weights("cuda", 300, 64))
        x = F.dropout(F.sparse_linear(batch_on("cuda", 16, 300, 20), w), 0.3, 5)
        z = x @ weights("cuda", 64, 50)
        loss = F.output_loss(z, targets("cuda", 16, 50, 6, values=False), spec_of(*COMBO)).sum()
        loss.backward()
        opt = DsstneOptimizer({"w": w}, "adam")
        opt.step()
        torch.cuda.synchronize()
    finally:
        torch.use_deterministic_algorithms(was)


@pytest.mark.skipif(not HAS_TRITON, reason="Triton is not importable")
def test_kernels_on_cpu_under_the_interpreter_outside_pytest():
    """kernels(True) on CPU tensors in a plain Python process (no test conftest): a loop bound
    loaded from memory works with NumPy ≥ 2.4 (destiny.ops.triton repairs Triton's interpreter)."""
    import os
    import subprocess
    import sys

    script = ("import torch\n"
              "from destiny.ops import functional as F\n"
              "from destiny.ops.sparse import SparseBatch\n"
              "b = SparseBatch(torch.tensor([0, 2, 3]), torch.tensor([0, 1, 1], dtype=torch.int32), None, 4)\n"
              "with F.kernels(True):\n"
              "    print(float(F.sparse_linear(b, torch.ones(4, 8), None).sum()))\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, TRITON_INTERPRET="1"), cwd="/")
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "24.0"
