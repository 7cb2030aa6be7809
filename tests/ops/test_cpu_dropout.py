"""ops/cpu_dropout.py: the CPU's dropout equals ``dropout_ref`` bit for bit, forward and
backward — float32 and float64, NaN, ±inf and −0.0 inputs, a model-parallel shard's columns,
probabilities whose float32 rounding is above or below them — and ``ops.functional.dropout``
uses it on the CPU."""

from __future__ import annotations

import pytest
import torch

from destiny.ops import cpu_dropout, functional
from destiny.ops.random import uniform
from destiny.ops.reference import dropout_ref

WORD = {torch.float32: torch.int32, torch.float64: torch.int64}


def same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.dtype == b.dtype and torch.equal(a.detach().view(WORD[a.dtype]), b.detach().view(WORD[b.dtype]))


def values(shape, dtype, seed: int = 0) -> torch.Tensor:
    x = torch.randn(*shape, dtype=dtype, generator=torch.Generator().manual_seed(seed))
    special = torch.tensor([float("nan"), float("inf"), -float("inf"), -0.0, 0.0], dtype=dtype)
    flat = x.view(-1)
    flat[:min(5, flat.numel())] = special[:flat.numel()]
    return x


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("shape, p, seed", [((64, 6144), 0.2, 5), ((37, 781), 0.37, 123), ((3,), 0.5, 1),
                                            ((0, 4), 0.5, 2), ((5, 7), 0.7, 9), ((4, 3, 5), 0.9, 10)])
def test_forward_and_backward_equal_the_reference_bitwise(dtype, shape, p, seed):
    x = values(shape, dtype)
    got_x, want_x = x.clone().requires_grad_(), x.clone().requires_grad_()
    got, want = cpu_dropout.dropout(got_x, p, seed), dropout_ref(want_x, p, seed)
    assert same_bits(got, want)
    g = values(shape, dtype, seed=1)
    got.backward(g)
    want.backward(g)
    assert same_bits(got_x.grad, want_x.grad)


def test_a_shard_draws_the_whole_layers_numbers():
    x = values((9, 10), torch.float32)
    assert same_bits(cpu_dropout.dropout(x, 0.3, 4, 20, 57), dropout_ref(x, 0.3, 4, 20, 57))


def test_keep_words_are_u_at_least_p_for_rounded_probabilities():
    u = uniform(3, 200_000)
    ups = [u[17].item(), torch.nextafter(u[17], torch.tensor(2.0)).item()]  # p equal to a drawn number, and above
    for p in [0.2, 0.37, 0.5, 0.7, 0.9, 0.1, 1e-9, 0.999999, *ups]:  # fl32(p) > p for 0.2, < p for 0.7
        words = cpu_dropout.keep_words(u.clone(), p)
        assert torch.equal(words, -(u >= p).to(torch.int32)), p


def test_the_functional_dropout_takes_it_on_the_cpu():
    x = torch.ones(3, 4, requires_grad=True)
    y = functional.dropout(x, 0.5, 7)
    assert type(y.grad_fn).__name__ == "_DropoutBackward" and same_bits(y, dropout_ref(x, 0.5, 7))
    half = torch.ones(3, 4, dtype=torch.float16)  # not float32 or float64: the reference
    assert torch.equal(functional.dropout(half, 0.5, 7), dropout_ref(half, 0.5, 7))
