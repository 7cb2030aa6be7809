"""The sparse references against dense computations that are obviously right."""

from __future__ import annotations

import pytest
import torch

from destiny.config import Activation, ErrorFunction
from destiny.nn.activations import ActivationSpec
from destiny.nn.losses import LossSpec, Outputs, element_loss
from destiny.ops.functional import sparse_linear
from destiny.ops.random import philox4x32, uniform
from destiny.ops.reference import (
    denoise_ref,
    dropout_ref,
    output_loss_ref,
    sparse_linear_ref,
    sparse_weight_grad_ref,
)
from tests.helpers import random_batch

SHAPES = [(1, 1, 1), (3, 5, 4), (37, 1823, 30), (64, 781, 200)]


@pytest.mark.parametrize("batch,features,per_row", SHAPES)
@pytest.mark.parametrize("values", [False, True])
def test_sparse_linear_equals_dense_product(batch, features, per_row, values):
    b = random_batch(batch, features, per_row, values=values, seed=batch)
    w = torch.randn(features, 7, dtype=torch.float64)
    bias = torch.randn(7, dtype=torch.float64)
    dense = b.to_dense(torch.float64)
    torch.testing.assert_close(sparse_linear_ref(b, w, bias), dense @ w + bias)


@pytest.mark.parametrize("batch,features,per_row", SHAPES)
def test_sparse_weight_grad_touches_only_present_rows(batch, features, per_row):
    b = random_batch(batch, features, per_row, values=True, seed=features)
    grad_out = torch.randn(batch, 5, dtype=torch.float64)
    rows, grad_rows = sparse_weight_grad_ref(b, grad_out)
    dense = b.to_dense(torch.float64).t() @ grad_out
    assert torch.equal(rows, torch.unique(b.indices))
    torch.testing.assert_close(grad_rows, dense[rows])
    untouched = torch.ones(features, dtype=torch.bool)
    untouched[rows] = False
    assert torch.count_nonzero(dense[untouched]) == 0


def test_sparse_linear_autograd_gives_a_row_sparse_gradient():
    b = random_batch(9, 40, 6, values=True, seed=3)
    w = torch.randn(40, 3, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(3, dtype=torch.float64, requires_grad=True)
    sparse_linear(b, w, bias).square().sum().backward()
    w2 = w.detach().clone().requires_grad_()
    b2 = bias.detach().clone().requires_grad_()
    (b.to_dense(torch.float64) @ w2 + b2).square().sum().backward()
    assert w.grad is None  # autograd sees none: the row-sparse gradient is on the weight
    features, rows = w.row_grad.valid()
    assert torch.equal(features, torch.unique(b.indices)) and int(w.row_grad.count) == features.numel()
    torch.testing.assert_close(w.row_grad.to_dense(40), w2.grad)
    torch.testing.assert_close(rows, w2.grad[features])
    torch.testing.assert_close(bias.grad, b2.grad)
    assert set(features.tolist()) == set(b.indices.tolist())


def test_padded_batches_give_the_exact_batchs_results():
    """SparseRows.take with a capacity: padding slots (sentinel feature n_features, value 0,
    row batch) after the real ones; forward, weight gradient and loss equal the exact batch's."""
    from destiny.ops.sparse import SparseRows
    from tests.helpers import sparse_dataset

    rows = [[1, 4, 7], [], [0, 2], [9, 3, 5, 8], [6]]
    data = SparseRows(sparse_dataset(rows, 10, values=[[0.5 * (i + 1) for i in range(len(r))] for r in rows]))
    examples = torch.tensor([3, 1, 0, 4])
    exact, pad = data.take(examples), data.take(examples, capacity=16)
    assert pad.padded and pad.nnz == 16 and torch.equal(pad.offsets, exact.offsets)
    assert torch.equal(pad.indices, torch.cat([exact.indices, torch.full((8,), 10)]))
    assert torch.equal(pad.values, torch.cat([exact.values, torch.zeros(8)]))
    assert torch.equal(pad.rows(), torch.tensor([0, 0, 0, 0, 2, 2, 2, 3] + [4] * 8))
    w = torch.randn(10, 3, dtype=torch.float64)
    torch.testing.assert_close(sparse_linear_ref(pad, w), sparse_linear_ref(exact, w))
    g = torch.randn(4, 3, dtype=torch.float64)
    for x, y in zip(sparse_weight_grad_ref(pad, g), sparse_weight_grad_ref(exact, g)):
        assert torch.equal(x, y)
    spec = LossSpec(ErrorFunction.CROSS_ENTROPY, ActivationSpec(Activation.SIGMOID))
    z = torch.randn(4, 10, dtype=torch.float64)
    torch.testing.assert_close(output_loss_ref(z, pad, spec), output_loss_ref(z, exact, spec))
    assert torch.equal(pad.unpadded().indices, exact.indices)


LOSSES = [
    (ErrorFunction.L1, Activation.LINEAR), (ErrorFunction.L2, Activation.SIGMOID), (ErrorFunction.L2, Activation.TANH),
    (ErrorFunction.L2, Activation.SOFTMAX), (ErrorFunction.CROSS_ENTROPY, Activation.SIGMOID),
    (ErrorFunction.CROSS_ENTROPY, Activation.SOFTMAX), (ErrorFunction.SCALED_MARGINAL_CROSS_ENTROPY, Activation.SIGMOID),
    (ErrorFunction.SCALED_MARGINAL_CROSS_ENTROPY, Activation.SOFTMAX),
    (ErrorFunction.DATA_SCALED_MARGINAL_CROSS_ENTROPY, Activation.SIGMOID), (ErrorFunction.HINGE, Activation.TANH),
    (ErrorFunction.L2_HINGE, Activation.LINEAR),
]


@pytest.mark.parametrize("fn,act", LOSSES, ids=lambda x: x.json)
@pytest.mark.parametrize("values", [False, True])
@pytest.mark.parametrize("boost", [(1.0, 1.0), (30.0, 0.5)])
def test_two_pass_sparse_loss_equals_dense_targets(fn, act, values, boost):
    spec = LossSpec(fn, ActivationSpec(act), 0.8, 0.2, 2.0, 0.7, *boost)
    b = random_batch(11, 23, 6, values=values, seed=5, weights=True)
    z = (torch.randn(11, 23, dtype=torch.float64) * 2).requires_grad_()
    sparse = output_loss_ref(z, b, spec)
    t = b.to_dense(torch.float64)
    if act == Activation.SOFTMAX and fn == ErrorFunction.CROSS_ENTROPY and not values:
        t = t / t.sum(1, keepdim=True).clamp(min=1)
    dense = element_loss(Outputs(z, spec), t, spec).sum(1) * b.weights
    torch.testing.assert_close(sparse, dense)
    g1, = torch.autograd.grad(sparse.sum(), z)
    g2, = torch.autograd.grad(dense.sum(), z)
    torch.testing.assert_close(g1, g2)


def test_sigmoid_cross_entropy_delta_is_a_minus_t_and_smce_has_dsstne_margins():
    z = torch.tensor([[-3.0, 0.0, 3.0, 1.0]], dtype=torch.float64, requires_grad=True)
    t = torch.tensor([[1.0, 0.0, 1.0, 0.0]], dtype=torch.float64)
    a = torch.sigmoid(z).detach()
    ce = LossSpec(ErrorFunction.CROSS_ENTROPY, ActivationSpec(Activation.SIGMOID))
    g, = torch.autograd.grad(output_loss_ref(z, t, ce).sum(), z)
    torch.testing.assert_close(g, a - t)
    smce = LossSpec(ErrorFunction.SCALED_MARGINAL_CROSS_ENTROPY, ActivationSpec(Activation.SIGMOID), 0.9, 0.1, 30.0, 1.0)
    g, = torch.autograd.grad(output_loss_ref(z, t, smce).sum(), z)
    # t=1, a=0.047 < 0.9: 30(a-1); t=0, a=0.5 > 0.1: a; t=1, a=0.953 ≥ 0.9: 0; t=0, a=0.73: a
    expected = torch.tensor([[30 * (a[0, 0] - 1), a[0, 1], 0.0, a[0, 3]]], dtype=torch.float64)
    torch.testing.assert_close(g, expected)


def test_ignore_zero_scores_only_the_nonzero_targets():
    spec = LossSpec(ErrorFunction.L2, ActivationSpec(Activation.LINEAR))
    b = random_batch(4, 10, 3, values=True, seed=1)
    b.ignore_zero = True
    z = torch.randn(4, 10, dtype=torch.float64)
    t = b.to_dense(torch.float64)
    mask = t != 0
    torch.testing.assert_close(output_loss_ref(z, b, spec), (0.5 * (z - t) ** 2 * mask).sum(1))


def test_philox_matches_a_big_integer_implementation():
    def reference(seed, c):
        m = 0xFFFFFFFF
        c0, c1, c2, c3, k0, k1 = c & m, (c >> 32) & m, 0, 0, seed & m, (seed >> 32) & m
        for _ in range(10):
            pb, pa = 0xCD9E8D57 * c2, 0xD2511F53 * c0
            c0, c1, c2, c3 = ((pb >> 32) ^ c1 ^ k0) & m, pb & m, ((pa >> 32) ^ c3 ^ k1) & m, pa & m
            k0, k1 = (k0 + 0x9E3779B9) & m, (k1 + 0xBB67AE85) & m
        return c0, c1, c2, c3

    seed = (1 << 62) + 12345
    counters = [0, 1, 2**31 + 5, 2**40 + 7]
    words = philox4x32(seed, torch.tensor(counters))
    for i, c in enumerate(counters):
        assert tuple(int(w[i]) for w in words) == reference(seed, c)
    u = uniform(7, 100_000)
    assert 0 <= float(u.min()) and float(u.max()) < 1 and abs(float(u.mean()) - 0.5) < 0.01
    assert torch.equal(u, uniform(7, 100_000)) and not torch.equal(u, uniform(8, 100_000))


def test_dropout_and_denoising_keep_expectations():
    x = torch.ones(200, 500, dtype=torch.float64)
    y = dropout_ref(x, 0.3, seed=1)
    assert abs(float((y == 0).double().mean()) - 0.3) < 0.01
    assert abs(float(y.mean()) - 1.0) < 0.02
    b = random_batch(300, 1000, 50, seed=2)
    d = denoise_ref(b, 0.25, seed=4)
    # static: every slot stays, dropped ones with value 0, kept ones scaled by 1/(1 - p)
    assert d.nnz == b.nnz and torch.equal(d.indices, b.indices) and torch.equal(d.offsets, b.offsets)
    kept = d.values != 0
    assert abs(float(kept.double().mean()) - 0.75) < 0.02
    assert torch.allclose(d.values[kept], torch.full_like(d.values[kept], 1 / 0.75))
    assert torch.equal(kept, uniform(4, b.nnz) >= 0.25)


def test_static_denoising_changes_no_sum_or_gradient():
    """The dropped nonzeros (value 0) add nothing to the forward sums or the weight gradient."""
    b = random_batch(40, 60, 9, values=True, seed=6)
    d = denoise_ref(b, 0.4, seed=9)
    kept = d.values != 0
    rows = d.rows()[kept]
    compact = type(b)(torch.cat([torch.zeros(1, dtype=torch.int64), torch.cumsum(torch.bincount(rows, minlength=40), 0)]),
                      d.indices[kept], d.values[kept].double(), 60)
    w = torch.randn(60, 5, dtype=torch.float64)
    static = type(b)(d.offsets, d.indices, d.values.double(), 60)
    torch.testing.assert_close(sparse_linear_ref(static, w), sparse_linear_ref(compact, w))
    g = torch.randn(40, 5, dtype=torch.float64)
    f_static, r_static = sparse_weight_grad_ref(static, g)
    f_compact, r_compact = sparse_weight_grad_ref(compact, g)
    dense = torch.zeros(60, 5, dtype=torch.float64)
    dense[f_static] = r_static
    torch.testing.assert_close(dense[f_compact], r_compact)
    dense[f_compact] = 0
    assert torch.count_nonzero(dense) == 0  # the dropped-only features have zero rows
