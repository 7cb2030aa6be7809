"""The chunked linear + multinomial loss against its unchunked reference
(``reference.linear_multinomial_ref``): loss and the gradients of h, W and b in float64 for
chunks of every size (one, irregular, one column), analog targets, data weights, empty
examples, padded target batches, no bias; and the (batch × items) output never exists."""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from destiny.ops import reference as ref
from destiny.ops.linear_multinomial import default_chunk, linear_multinomial
from tests.helpers import random_batch

B, H, N = 7, 5, 45


def inputs(seed: int = 0, bias: bool = True, batch: int = B, width: int = N):
    gen = torch.Generator().manual_seed(seed)
    h = torch.randn(batch, H, generator=gen, dtype=torch.float64)
    w = torch.randn(H, width, generator=gen, dtype=torch.float64)
    b = torch.randn(width, generator=gen, dtype=torch.float64) if bias else None
    return h, w, b


def check(target, *, chunk, seed=0, bias=True, batch=B, width=N):
    """Loss and the three gradients under a random per-example cotangent, against the reference."""
    got, want = [], []
    cot = torch.randn(batch, generator=torch.Generator().manual_seed(seed + 100), dtype=torch.float64)
    for fn, out in ((lambda *a: linear_multinomial(*a, chunk=chunk), got), (ref.linear_multinomial_ref, want)):
        leaves = [t.clone().requires_grad_() if t is not None else None for t in inputs(seed, bias, batch, width)]
        loss = fn(*leaves, target)
        (loss * cot).sum().backward()
        out += [loss.detach()] + [t.grad for t in leaves if t is not None]
    for name, g, w in zip(["loss", "h", "W", "b"], got, want):
        torch.testing.assert_close(g, w, rtol=1e-12, atol=1e-12, msg=lambda m: f"{name} (chunk {chunk}): {m}")


@pytest.mark.parametrize("chunk", [N, 16, 7, 1, 1000])
@pytest.mark.parametrize("values", [False, True], ids=["indicator", "analog"])
def test_chunks_of_any_size_give_the_reference(chunk, values):
    check(random_batch(B, N, 9, values=values, seed=3, weights=values), chunk=chunk)


def test_no_bias_and_empty_examples():
    from destiny.ops.sparse import SparseBatch

    t = SparseBatch(torch.tensor([0, 0, 3, 3, 4, 4, 6, 6]), torch.tensor([1, 20, 44, 0, 5, 30]), None, N)
    check(t, chunk=10, bias=False)


def test_a_padded_target_batch():
    from tests.ops.test_triton_sparse_linear import padded

    t = random_batch(B, N, 9, values=True, seed=5, weights=True)
    check(padded(t, t.nnz + 11), chunk=8)


def test_the_defaults():
    assert default_chunk(1024, 10_000_000) == 16384 and default_chunk(1024, 300) == 300
    check(random_batch(B, N, 6, seed=2), chunk=None)


class _Largest(TorchDispatchMode):
    """The largest number of elements of any tensor an op returns."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in (out if isinstance(out, (tuple, list)) else [out]):
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


def test_the_batch_by_items_output_never_exists():
    """64 × 3000 outputs in chunks of 100 columns: no op makes a tensor bigger than W (H × N,
    the gradient of W) — the reference makes the 64 × 3000 one."""
    batch, width = 64, 3000
    h, w, b = (t.requires_grad_() for t in inputs(1, True, batch, width))
    t = random_batch(batch, width, 20, seed=4)
    with _Largest() as seen:
        linear_multinomial(h, w, b, t, chunk=100).sum().backward()
    assert seen.largest <= max(H * width, batch * 100), seen.largest
    with _Largest() as seen:
        ref.linear_multinomial_ref(h, w, b, t).sum().backward()
    assert seen.largest >= batch * width
