"""ops/cpu_loss.py: the CPU's two-pass output loss equals ``output_loss_ref`` — the loss and
its gradient — for Sigmoid + CrossEntropy and Linear + L2, with indicator and valued targets,
data weights and padded batches; ``output_loss`` uses it on the CPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from destiny.config import Activation, ErrorFunction
from destiny.nn.activations import ActivationSpec
from destiny.nn.losses import LossSpec
from destiny.ops import cpu_loss, functional
from destiny.ops.reference import output_loss_ref
from destiny.ops.sparse import SparseBatch

KINDS = [(ErrorFunction.CROSS_ENTROPY, Activation.SIGMOID), (ErrorFunction.L2, Activation.LINEAR)]


def batch(values: bool, weights: bool, seed: int = 0, rows: int = 9, width: int = 31) -> SparseBatch:
    rng = np.random.default_rng(seed)
    lists = [np.sort(rng.choice(width, size=rng.integers(0, 7), replace=False)) for _ in range(rows)]
    offsets = torch.as_tensor(np.concatenate([[0], np.cumsum([len(x) for x in lists])]), dtype=torch.int64)
    indices = torch.as_tensor(np.concatenate(lists), dtype=torch.int64)
    vals = torch.as_tensor(rng.random(len(indices)), dtype=torch.float64) if values else None
    w = torch.as_tensor(rng.random(rows) + 0.5, dtype=torch.float64) if weights else None
    return SparseBatch(offsets, indices, vals, width, w)


@pytest.mark.parametrize("error, activation", KINDS)
@pytest.mark.parametrize("values, weights", [(False, False), (True, False), (False, True), (True, True)])
def test_loss_and_gradient_equal_the_reference(error, activation, values, weights):
    spec = LossSpec(error, ActivationSpec(activation))
    target = batch(values, weights)
    assert cpu_loss.supports(spec, target)
    z0 = torch.randn(9, 31, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 3
    got_z, want_z = z0.clone().requires_grad_(), z0.clone().requires_grad_()
    got, want = cpu_loss.output_loss(got_z, target, spec), output_loss_ref(want_z, target, spec)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    seed = torch.rand(9, dtype=torch.float64)
    got.backward(seed)
    want.backward(seed)
    torch.testing.assert_close(got_z.grad, want_z.grad, rtol=1e-12, atol=1e-12)


def test_padded_batches_and_the_dispatch():
    spec = LossSpec(ErrorFunction.CROSS_ENTROPY, ActivationSpec(Activation.SIGMOID))
    target = batch(False, False)
    extra = torch.full((5,), 31, dtype=torch.int64)  # padding slots past the last example (column = width)
    padded = SparseBatch(target.offsets, torch.cat([target.indices, extra]), None, 31, None, padded=True)
    z = torch.randn(9, 31, dtype=torch.float32)
    torch.testing.assert_close(functional.output_loss(z, padded, spec), output_loss_ref(z, target, spec))
    assert not cpu_loss.supports(spec, SparseBatch(target.offsets, target.indices, None, 31, None, True))
    softmax = LossSpec(ErrorFunction.CROSS_ENTROPY, ActivationSpec(Activation.SOFTMAX))
    assert not cpu_loss.supports(softmax, target)
    boosted = LossSpec(ErrorFunction.CROSS_ENTROPY, ActivationSpec(Activation.SIGMOID), boost_one=2.0)
    assert not cpu_loss.supports(boosted, target)
