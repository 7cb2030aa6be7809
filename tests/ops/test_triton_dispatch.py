"""How ``ops.functional`` chooses between kernels and references, and a whole training run on
the kernels against the same run on the references."""

from __future__ import annotations

import pytest
import torch

from destiny.backend import HAS_TRITON, use_triton
from destiny.errors import UsageError
from destiny.ops import functional as F
from destiny.train.optimizers import Hyperparameters
from destiny.train.trainer import Trainer
from tests.helpers import clustered_dataset
from tests.ops.kernel_check import assert_close
from tests.train.test_trainer import autoencoder


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
    in place and the fused optimizer, all at once."""
    data = clustered_dataset(96, 40, seed=2)
    runs = []
    for force in (False, True):
        net = autoencoder(40, seed=3, dropout=0.3, denoise=0.1).to(device)
        trainer = Trainer(net, "adam", Hyperparameters(alpha=0.01), batch_size=32, progress=False, device=device)
        with F.kernels(force):
            result = trainer.fit({"in": data, "out": data}, 1)[0]
            error = trainer.evaluate({"in": data, "out": data})
        runs.append((result.training_error, error, [p.detach().clone() for p in net.parameters()]))
    (err_ref, val_ref, w_ref), (err_k, val_k, w_k) = runs
    assert err_k == pytest.approx(err_ref, rel=1e-5) and val_k == pytest.approx(val_ref, rel=1e-5)
    for a, b in zip(w_k, w_ref):
        assert_close(a, b.double(), torch.float32, what="weights after training")
