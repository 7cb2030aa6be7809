"""The fused output loss + delta kernel against ``output_loss_ref`` and its autograd gradient:
every supported activation/loss pair, indicator and analog targets, DeltaBoost, data weights,
ignore_zero, empty examples, extreme pre-activations, in place and not."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from destiny.config import Activation, ErrorFunction
from destiny.nn.activations import ActivationSpec
from destiny.nn.losses import LossSpec
from destiny.ops import functional as F
from destiny.ops import reference as ref
from destiny.ops.sparse import SparseBatch
from tests.helpers import random_batch
from tests.ops.kernel_check import assert_close, cast, check_op

A, E = Activation, ErrorFunction
COMBOS = [
    (A.SIGMOID, E.CROSS_ENTROPY), (A.SIGMOID, E.SCALED_MARGINAL_CROSS_ENTROPY),
    (A.SIGMOID, E.DATA_SCALED_MARGINAL_CROSS_ENTROPY), (A.SIGMOID, E.L2), (A.SIGMOID, E.L1),
    (A.LINEAR, E.L2), (A.LINEAR, E.L1), (A.SOFTMAX, E.CROSS_ENTROPY), (A.SOFTMAX, E.MULTINOMIAL),
]
IDS = [f"{a.json}-{e.json}" for a, e in COMBOS]


def spec_of(act, fn, boost=(1.0, 1.0)) -> LossSpec:
    return LossSpec(fn, ActivationSpec(act), one_target=0.8, zero_target=0.2, one_scale=2.0, zero_scale=0.7,
                    boost_one=boost[0], boost_zero=boost[1])


def targets(device, batch, width, per_row, *, values, weights=False, seed=0, ignore_zero=False) -> SparseBatch:
    b = random_batch(batch, width, per_row, values=values, seed=seed, dtype=torch.float32, weights=weights)
    b.ignore_zero = ignore_zero
    return cast(b, None, device)


def logits(device, batch, width, seed=0, scale=3.0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(batch, width, generator=gen) * scale).to(device)


def in_place(z, target, spec):
    """output_loss on a temporary (z · 1 is not a leaf), as the network calls it."""
    return F.output_loss(z * 1.0, target, spec)


@pytest.mark.parametrize("act,fn", COMBOS, ids=IDS)
@pytest.mark.parametrize("values", [False, True], ids=["indicator", "analog"])
@pytest.mark.parametrize("extras", ["plain", "boost+weights+inplace"])
def test_loss_and_delta_match_the_reference(device, act, fn, values, extras):
    fancy = extras != "plain"
    spec = spec_of(act, fn, (30.0, 0.5) if fancy else (1.0, 1.0))
    t = targets(device, 7, 45, 9, values=values, weights=fancy, seed=1 + values)
    check_op(in_place if fancy else F.output_loss, (logits(device, 7, 45), t, spec),
             dtype=torch.float32, diff=(0,), name=f"{act.json}+{fn.json}")


@pytest.mark.parametrize("act,fn", COMBOS, ids=IDS)
def test_ignore_zero_scores_only_the_targets(device, act, fn):
    t = targets(device, 6, 40, 8, values=True, weights=True, seed=3, ignore_zero=True)
    check_op(F.output_loss, (logits(device, 6, 40, seed=1), t, spec_of(act, fn, (2.0, 0.5))),
             dtype=torch.float32, diff=(0,), name="ignore_zero")


@pytest.mark.parametrize("act,fn", [COMBOS[1], COMBOS[0], COMBOS[7], COMBOS[8]], ids=[IDS[1], IDS[0], IDS[7], IDS[8]])
def test_irregular_shape(device, act, fn):
    """37 × 1823 with up to 30 targets an example (the target loop runs partial blocks)."""
    t = targets(device, 37, 1823, 30, values=fn == E.CROSS_ENTROPY, weights=True, seed=11)
    check_op(in_place, (logits(device, 37, 1823, seed=2), t, spec_of(act, fn, (5.0, 0.8))),
             dtype=torch.float32, diff=(0,), name="37 × 1823")


@pytest.mark.parametrize("act,fn", [COMBOS[1], COMBOS[7], COMBOS[8]], ids=[IDS[1], IDS[7], IDS[8]])
def test_rows_wider_than_one_column_block(device, act, fn):
    """4500 columns: two column blocks of 4096, the last one partial."""
    t = targets(device, 3, 4500, 70, values=False, seed=5)
    check_op(F.output_loss, (logits(device, 3, 4500, seed=3), t, spec_of(act, fn)),
             dtype=torch.float32, diff=(0,), name="3 × 4500")


def test_odd_target_values_empty_examples_and_extreme_logits(device):
    """Zero and negative analog targets (the t ≤ 0 branches), examples with no targets, and
    pre-activations of ±40 and ±90 where σ rounds to 0 or 1."""
    rows = [[0, 3, 5, 9], [], [1, 2], [], [4, 6, 7, 8]]
    offsets = torch.tensor(np.cumsum([0] + [len(r) for r in rows]))
    indices = torch.tensor([i for r in rows for i in r])
    values = torch.tensor([1.0, 0.0, -0.5, 0.3, 1.0, 2.0, 0.0, 0.9, 1.0, -1.0])
    t = SparseBatch(offsets, indices, values, 10, torch.tensor([1.0, 2.0, 0.5, 1.0, 3.0])).to(device)
    z = torch.tensor([[-90.0, 90.0, -40.0, 40.0, 0.0, 1e-3, -1e-3, 15.0, -15.0, 3.0]] * 5)
    z = (z * torch.tensor([1.0, -1.0, 0.5, 1.0, -0.25])[:, None]).to(device)
    for act, fn in COMBOS:
        check_op(in_place, (z, t, spec_of(act, fn, (3.0, 0.25))), dtype=torch.float32, diff=(0,),
                 name=f"odd targets {act.json}+{fn.json}")


def test_no_targets_at_all(device):
    t = SparseBatch(torch.zeros(4, dtype=torch.int64), torch.zeros(0, dtype=torch.int64), None, 30).to(device)
    for act, fn in COMBOS:
        check_op(F.output_loss, (logits(device, 3, 30), t, spec_of(act, fn)), dtype=torch.float32, diff=(0,),
                 name=f"no targets {act.json}+{fn.json}")


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
def test_half_precision_outputs(device, dtype):
    t = targets(device, 9, 200, 12, values=False, seed=8)
    for act, fn in (COMBOS[1], COMBOS[7]):
        check_op(F.output_loss, (logits(device, 9, 200, seed=4, scale=2.0), t, spec_of(act, fn)), dtype=dtype,
                 diff=(0,), name=f"{dtype} {act.json}+{fn.json}")


def test_in_place_leaves_the_delta_in_z_and_allows_one_backward(device):
    spec = spec_of(A.SIGMOID, E.SCALED_MARGINAL_CROSS_ENTROPY)
    t = targets(device, 5, 60, 7, values=False, weights=True, seed=2)
    leaf = logits(device, 5, 60).requires_grad_()
    expected_delta, = torch.autograd.grad(ref.output_loss_ref(leaf, t, spec).sum(), leaf)
    z = leaf * 1.0
    with F.kernels(True):
        loss = F.output_loss(z, t, spec)
    assert_close(z.detach(), expected_delta, torch.float32, what="delta left in z")
    assert_close(loss, ref.output_loss_ref(leaf.detach(), t, spec), torch.float32, what="loss")
    (loss.sum() * 0.5).backward(retain_graph=True)
    assert_close(leaf.grad, expected_delta * 0.5, torch.float32, what="gradient")
    with pytest.raises(RuntimeError, match="backward ran twice"):
        loss.sum().backward()


def test_a_leaf_is_never_overwritten_and_no_grad_writes_nothing(device):
    spec = spec_of(A.SIGMOID, E.CROSS_ENTROPY)
    t = targets(device, 4, 50, 6, values=True, seed=6)
    z = logits(device, 4, 50).requires_grad_()
    before = z.detach().clone()
    with F.kernels(True):
        F.output_loss(z, t, spec).sum().backward()
        assert torch.equal(z.detach(), before)
        with torch.no_grad():
            temp = before * 1.0
            loss = F.output_loss(temp, t, spec, inplace=True)
    assert torch.equal(temp, before)
    assert_close(loss, ref.output_loss_ref(before, t, spec), torch.float32, what="no-grad loss")


def test_a_saved_z_makes_backward_fail_loudly(device):
    """exp saves its output; overwriting it with the delta must not go unnoticed."""
    x = logits(device, 3, 20, scale=0.5).requires_grad_()
    z = torch.exp(x)
    with F.kernels(True):
        loss = F.output_loss(z, targets(device, 3, 20, 4, values=False), spec_of(A.SIGMOID, E.CROSS_ENTROPY))
    with pytest.raises(RuntimeError, match="inplace"):
        loss.sum().backward()


@pytest.mark.parametrize("act,fn", [(A.TANH, E.L2), (A.SOFTMAX, E.L2), (A.SOFTMAX, E.SCALED_MARGINAL_CROSS_ENTROPY),
                                    (A.LINEAR, E.HINGE)], ids=lambda v: v.json)
def test_unsupported_pairs_fall_back_to_the_reference(device, act, fn):
    spec = spec_of(act, fn)
    t = targets(device, 4, 30, 5, values=True, seed=1)
    z = logits(device, 4, 30).requires_grad_()
    with F.kernels(True):
        loss = F.output_loss(z, t, spec)
        dense = F.output_loss(z, t.to_dense(), spec_of(A.SIGMOID, E.L2))
    assert "_OutputLoss" not in type(loss.grad_fn).__name__ and "_OutputLoss" not in type(dense.grad_fn).__name__
    torch.testing.assert_close(loss, ref.output_loss_ref(z, t, spec))


def _take(batch: SparseBatch, rows: list[int]) -> SparseBatch:
    parts = [(int(batch.offsets[r]), int(batch.offsets[r + 1])) for r in rows]
    idx = torch.cat([batch.indices[s:e] for s, e in parts])
    vals = None if batch.values is None else torch.cat([batch.values[s:e] for s, e in parts])
    offsets = torch.tensor(np.cumsum([0] + [e - s for s, e in parts]), device=batch.device)
    return SparseBatch(offsets, idx, vals, batch.n_features)


@pytest.mark.gpu
@pytest.mark.slow
@pytest.mark.parametrize("act,fn", [COMBOS[1], COMBOS[7]], ids=[IDS[1], IDS[7]])
def test_more_than_two_to_the_31_outputs(act, fn):
    """80,000 × 27,278 = 2.18e9 outputs (8.7 GB): row offsets pass 2^31 from row 78,726 on."""
    batch, width = 80_000, 27_278
    gen = torch.Generator(device="cuda").manual_seed(0)
    z = torch.randn(batch, width, device="cuda", generator=gen).mul_(3).requires_grad_()
    lengths = torch.randint(0, 6, (batch,), device="cuda", generator=gen)
    offsets = torch.zeros(batch + 1, dtype=torch.int64, device="cuda")
    torch.cumsum(lengths, 0, out=offsets[1:])
    rows = torch.repeat_interleave(torch.arange(batch, device="cuda"), lengths)
    k = torch.arange(rows.numel(), device="cuda") - offsets[rows]
    indices = (rows * 7919 + k * 5003) % width  # distinct within an example
    t = SparseBatch(offsets, indices, None, width)
    spec = spec_of(act, fn)
    loss = F.output_loss(z, t, spec)
    grad, = torch.autograd.grad(loss.sum(), z)
    for r in [0, 1, 78_725, 78_726, 78_727, batch - 1]:
        zr = z.detach()[r:r + 1].double().requires_grad_()
        expected = ref.output_loss_ref(zr, _take(t, [r]), spec)
        expected_grad, = torch.autograd.grad(expected.sum(), zr)
        assert_close(loss[r:r + 1], expected, torch.float32, what=f"loss of row {r}")
        assert_close(grad[r:r + 1], expected_grad, torch.float32, what=f"delta of row {r}")


@pytest.mark.parametrize("act,fn", [COMBOS[1], COMBOS[7]], ids=[IDS[1], IDS[7]])
def test_a_folded_gradient_seed_skips_the_multiply_and_equals_the_unfolded_gradient(device, act, fn):
    """grad_scale s folded into the kernel, backward seeded with s itself (as the Trainer
    does): z's gradient is the delta the kernel wrote, in z's memory, bitwise equal to the
    unfolded path's delta · s; any other upstream gradient is still exact."""
    spec = spec_of(act, fn, (2.0, 0.5))
    t = targets(device, 9, 70, 8, values=False, weights=True, seed=4)
    leaf = logits(device, 9, 70, seed=5).requires_grad_()
    s = torch.tensor(1.0 / 9, device=device)
    with F.kernels(True):
        z = leaf * 1.0
        seen = []
        z.register_hook(lambda g: seen.append(g.data_ptr()))
        loss = F.output_loss(z, t, spec, grad_scale=s)
        total = torch.stack([loss.sum(), torch.zeros((), device=device)]).sum()  # sums and stacks pass s on
        total.backward(s)
    assert seen == [z.data_ptr()]  # the delta in z's memory, untouched
    folded = leaf.grad.clone()
    leaf.grad = None
    with F.kernels(True):
        (F.output_loss(leaf * 1.0, t, spec).sum() / 9).backward()
    assert torch.equal(folded, leaf.grad)
    for upstream in (lambda l: (l * torch.arange(9.0, device=device)).sum(), lambda l: l.sum() * 3.0):
        leaf.grad = None
        with F.kernels(True):
            upstream(F.output_loss(leaf * 1.0, t, spec, grad_scale=s)).backward()
        got = leaf.grad.clone()
        leaf.grad = None
        with F.kernels(False):
            upstream(ref.output_loss_ref(leaf, t, spec)).backward()
        assert_close(got, leaf.grad.double(), torch.float32, what="other upstream gradient")


def test_a_padded_target_batch_gives_the_exact_loss_and_delta(device):
    from tests.ops.test_triton_sparse_linear import padded

    spec = spec_of(A.SIGMOID, E.SCALED_MARGINAL_CROSS_ENTROPY)
    t = targets(device, 7, 45, 9, values=True, weights=True, seed=1)
    check_op(in_place, (logits(device, 7, 45), padded(t, t.nnz + 13), spec), dtype=torch.float32, diff=(0,),
             name="padded targets")


def test_the_folded_loss_is_float32_for_half_outputs(device):
    t = targets(device, 4, 40, 5, values=False, seed=2)
    z = logits(device, 4, 40).to(torch.bfloat16).requires_grad_()
    with F.kernels(True):
        loss = F.output_loss(z * 1.0, t, spec_of(A.SIGMOID, E.CROSS_ENTROPY),
                             grad_scale=torch.tensor(0.25, device=device))
    assert loss.dtype == torch.float32
