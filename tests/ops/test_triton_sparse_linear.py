"""The sparse input layer's kernels — forward gather-sum and weight gradient — against
``sparse_linear_ref`` and ``sparse_weight_grad_ref``, through ``ops.functional.sparse_linear``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from destiny.ops import functional as F
from destiny.ops import reference as ref
from destiny.ops.sparse import SparseBatch
from tests.helpers import random_batch
from tests.ops.kernel_check import cast, check_op

SHAPES = [  # (batch, features, most nonzeros an example, units)
    (1, 1, 1, 1),
    (3, 5, 4, 7),
    (37, 1823, 12, 781),  # irregular: nnz, units and batch not multiples of any block
]


def batch_on(device, batch, features, per_row, *, values=True, seed=0) -> SparseBatch:
    return cast(random_batch(batch, features, per_row, values=values, seed=seed, dtype=torch.float32), None, device)


def csr(device, rows: list[list[int]], features: int, values: bool = True) -> SparseBatch:
    """A batch from explicit feature lists; values 0.5, 1.5, 2.5, ... in order."""
    offsets = torch.tensor(np.cumsum([0] + [len(r) for r in rows]), dtype=torch.int64)
    indices = torch.tensor([i for r in rows for i in r], dtype=torch.int64)
    vals = torch.arange(indices.numel(), dtype=torch.float32) + 0.5 if values else None
    return SparseBatch(offsets, indices, vals, features).to(device)


def weights(device, features, units, seed=0, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(features, units, generator=gen) * 0.1).to(device=device, dtype=dtype)


@pytest.mark.parametrize("batch,features,per_row,units", SHAPES, ids=lambda v: str(v))
@pytest.mark.parametrize("values,bias", [(False, False), (True, True)], ids=["indicator", "values+bias"])
def test_forward_and_weight_gradient_match_the_reference(device, batch, features, per_row, units, values, bias):
    b = batch_on(device, batch, features, per_row, values=values, seed=features)
    w = weights(device, features, units, seed=units)
    bias_t = weights(device, 1, units, seed=1)[0] if bias else None
    check_op(F.sparse_linear, (b, w, bias_t), dtype=torch.float32, diff=(1, 2) if bias else (1,), name="sparse_linear")


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
def test_low_precision_weights_within_twice_pytorchs_error(device, dtype):
    b = batch_on(device, 9, 300, 20, seed=4)
    diff = (1,) if device.type == "cuda" else ()  # the CPU reference has no half-precision CSR product
    check_op(F.sparse_linear, (b, weights(device, 300, 130, seed=2, dtype=dtype), None), dtype=dtype, diff=diff,
             name=f"sparse_linear {dtype}")


def test_a_feature_in_every_example_sums_its_rows_in_example_order(device):
    """Feature 3 appears in all 40 examples: its gradient segment spans three BLOCK_K chunks."""
    rows = [[3] + ([7 + i % 5] if i % 2 else []) for i in range(40)]
    b = csr(device, rows, features=20)
    w = weights(device, 20, 33)
    check_op(F.sparse_linear, (b, w, None), dtype=torch.float32, diff=(1,), name="hot feature")
    from destiny.ops.triton.sparse_weight_grad import sparse_weight_grad

    g = weights(device, 40, 33, seed=9)
    features, grad_rows = sparse_weight_grad(b, g).valid()
    ref_features, ref_rows = ref.sparse_weight_grad_ref(b, g)
    assert torch.equal(features, ref_features)
    expected = sum(float(b.values[k]) * g[int(b.rows()[k])].double()
                   for k in range(b.nnz) if int(b.indices[k]) == 3)
    torch.testing.assert_close(grad_rows[0].double(), expected, rtol=1e-5, atol=1e-6)


def test_int32_indices_empty_examples_and_an_empty_batch(device):
    b = csr(device, [[], [4, 1, 9], [], [0]], features=10)
    b32 = SparseBatch(b.offsets, b.indices.int(), b.values, b.n_features)
    w = weights(device, 10, 5)
    with F.kernels(True):
        out = F.sparse_linear(b32, w)
    torch.testing.assert_close(out, ref.sparse_linear_ref(b, w))
    assert torch.equal(out[0], torch.zeros(5, device=device)) and torch.equal(out[2], torch.zeros(5, device=device))
    empty = csr(device, [[], []], features=10)
    bias = torch.ones(5, device=device)
    check_op(F.sparse_linear, (empty, w, bias), dtype=torch.float32, diff=(1, 2), name="empty batch")


def test_a_transposed_weight_falls_back_to_the_reference(device):
    b = batch_on(device, 5, 30, 6, seed=2)
    w_t = weights(device, 8, 30).t()  # (30, 8), column stride 30
    with F.kernels(True):
        out = F.sparse_linear(b, w_t)
    torch.testing.assert_close(out, ref.sparse_linear_ref(b, w_t.contiguous()))


def padded(batch: SparseBatch, capacity: int) -> SparseBatch:
    """The batch with capacity − nnz padding slots (feature n_features, value 0, row B)."""
    pad = capacity - batch.nnz
    out = SparseBatch(batch.offsets, torch.cat([batch.indices, torch.full((pad,), batch.n_features,
                                                                          device=batch.device)]),
                      None if batch.values is None else torch.cat([batch.values, batch.values.new_zeros(pad)]),
                      batch.n_features, batch.weights, batch.ignore_zero, padded=True)
    out._rows = torch.cat([batch.rows(), torch.full((pad,), batch.batch_size, device=batch.device)])
    return out


@pytest.mark.parametrize("values", [False, True], ids=["indicator", "values"])
def test_a_padded_batch_gives_the_unpadded_results(device, values):
    """Padding slots (sentinel feature, value 0) change neither the output nor the gradient:
    the same features, and rows bitwise equal to the unpadded batch's."""
    b = batch_on(device, 11, 300, 9, values=values, seed=5)
    w = weights(device, 300, 70)
    check_op(F.sparse_linear, (padded(b, b.nnz + 37), w, weights(device, 1, 70)[0]), dtype=torch.float32,
             diff=(1, 2), name="padded")
    g = weights(device, 11, 70, seed=3)
    from destiny.ops.triton.sparse_weight_grad import sparse_weight_grad

    exact, pad = sparse_weight_grad(b, g), sparse_weight_grad(padded(b, b.nnz + 37), g)
    assert pad.capacity == min(b.nnz + 37, 300) and int(pad.count) == int(exact.count)
    for x, y in zip(exact.valid(), pad.valid()):
        assert torch.equal(x, y)


def test_a_batch_of_only_padding_has_no_gradient_rows(device):
    b = padded(csr(device, [[], []], features=10), 8)
    w = weights(device, 10, 5).requires_grad_()
    with F.kernels(True):
        out = F.sparse_linear(b, w)
        out.backward(torch.ones_like(out))
    assert torch.equal(out, torch.zeros_like(out))
    assert int(w.row_grad.count) == 0 and w.row_grad.valid()[0].numel() == 0


def test_two_contributions_to_one_weight_add_up(device):
    """A weight read by two sparse layers: its row_grad is the sum, rows of a shared feature
    added in call order; a non-leaf weight gets a dense gradient instead."""
    b1, b2 = batch_on(device, 6, 50, 7, seed=1), batch_on(device, 6, 50, 7, seed=2)
    g1, g2 = weights(device, 6, 9, seed=4), weights(device, 6, 9, seed=5)
    for force in (False, True):
        w = weights(device, 50, 9).requires_grad_()
        with F.kernels(force):
            (F.sparse_linear(b1, w) * g1).sum().backward()
            (F.sparse_linear(b2, w) * g2).sum().backward()
        dense = b1.to_dense().t() @ g1 + b2.to_dense().t() @ g2
        features, rows = w.row_grad.valid()
        assert torch.equal(features.cpu(), torch.unique(torch.cat([b1.indices, b2.indices])).cpu())
        torch.testing.assert_close(rows, dense[features])
        view = weights(device, 9, 50).t().contiguous().requires_grad_()
        with F.kernels(force):
            (F.sparse_linear(b1, view * 1.0) * g1).sum().backward()
        torch.testing.assert_close(view.grad, b1.to_dense().t() @ g1)


@pytest.mark.gpu
@pytest.mark.slow
def test_ten_million_features_by_256_has_no_int32_overflow():
    """2.56e9 weights (10 GiB): row offsets idx·256 pass 2^31 for features above 8,388,607."""
    n, units = 10_000_000, 256
    w = torch.empty(n, units, device="cuda").uniform_(-1, 1).requires_grad_()
    rows = [[0, n - 1, 8_400_000], [n - 2, 9_999_990, 8_388_608], [], [n - 1]]
    b = csr("cuda", rows, features=n)
    out = F.sparse_linear(b, w)
    for r, feats in enumerate(rows):
        start = sum(len(x) for x in rows[:r])
        expected = sum((float(b.values[start + j]) * w[f].detach().double() for j, f in enumerate(feats)),
                       torch.zeros(units, dtype=torch.float64, device="cuda"))
        torch.testing.assert_close(out[r].double(), expected, rtol=1e-5, atol=1e-5)
    g = torch.randn(4, units, device="cuda")
    out.backward(g)
    assert w.grad is None
    features, values = w.row_grad.valid()
    assert torch.equal(features.cpu(), torch.tensor(sorted({f for r in rows for f in r})))
    row_of = {f: i for i, f in enumerate(features.tolist())}
    # rows = Xᵀ g, feature n - 1 from examples 0 and 3
    expected = torch.zeros(len(row_of), units, dtype=torch.float64, device="cuda")
    for k in range(b.nnz):
        expected[row_of[int(b.indices[k])]] += float(b.values[k]) * g[int(b.rows()[k])].double()
    torch.testing.assert_close(values.double(), expected, rtol=1e-5, atol=1e-5)
