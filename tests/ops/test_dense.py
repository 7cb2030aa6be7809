"""dense_linear: the padded product (for cuBLAS's aligned kernels) against torch.addmm."""

import pytest
import torch

from destiny.ops.dense import ALIGN, dense_linear, needs_padding


def _operands(n: int, dtype=torch.float64, bias: bool = True):
    g = torch.Generator().manual_seed(n)
    x = torch.randn(7, 13, generator=g, dtype=dtype, requires_grad=True)
    w = torch.randn(13, n, generator=g, dtype=dtype, requires_grad=True)
    b = torch.randn(n, generator=g, dtype=dtype, requires_grad=True) if bias else None
    return x, w, b


@pytest.mark.parametrize("n", [1, 5, ALIGN + 3, 3 * ALIGN - 1])
@pytest.mark.parametrize("bias", [True, False])
def test_padded_product_and_gradients_equal_addmm(n, bias):
    x, w, b = _operands(n, bias=bias)
    z = dense_linear(x, w, b, force=True)
    assert z.shape == (7, n)
    expected = x @ w + (b if bias else 0)
    torch.testing.assert_close(z, expected, rtol=0, atol=1e-12)
    g = torch.randn(7, n, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    grads = torch.autograd.grad(z, [x, w] + ([b] if bias else []), g)
    want = torch.autograd.grad(expected, [x, w] + ([b] if bias else []), g)
    for got, ref in zip(grads, want):
        assert got.shape == ref.shape and got.is_contiguous()
        torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-12)


def test_gradcheck():
    x, w, b = _operands(ALIGN + 5)
    assert torch.autograd.gradcheck(lambda x, w, b: dense_linear(x, w, b, force=True), (x, w, b))


def test_in_place_delta_is_used_without_a_copy():
    """The fused output loss overwrites the product's memory with the delta: backward must read
    it as the padded gradient (its pad columns are the product's zeros)."""
    x, w, b = _operands(ALIGN + 2)
    z = dense_linear(x, w, b, force=True)
    assert z.stride() == (2 * ALIGN, 1)
    full = z.as_strided((7, 2 * ALIGN), (2 * ALIGN, 1))
    assert torch.count_nonzero(full[:, ALIGN + 2:]) == 0  # x @ 0 + 0
    delta = torch.randn(7, ALIGN + 2, dtype=torch.float64)
    alias = torch.empty(0, dtype=z.dtype).set_(z.untyped_storage(), 0, z.shape, z.stride())
    alias.copy_(delta)  # what the fused kernel does: writes z's memory, outside autograd
    gx, gw, gb = torch.autograd.grad(z, [x, w, b], z)
    torch.testing.assert_close(gx, delta @ w.detach().t())
    torch.testing.assert_close(gw, x.detach().t() @ delta)
    torch.testing.assert_close(gb, delta.sum(0))


def test_aligned_and_cpu_products_are_plain_addmm():
    x, w, b = _operands(2 * ALIGN, dtype=torch.float32)
    assert not needs_padding(x, w, force=True)
    x, w, b = _operands(ALIGN + 1, dtype=torch.float32)
    assert not needs_padding(x, w)  # CPU float32: nothing to gain
    assert torch.equal(dense_linear(x, w, b), torch.addmm(b, x, w))



def test_training_through_the_padded_product_matches_addmm(device, monkeypatch):
    """The whole static step on the kernels (the fused output loss writing its delta into the
    padded product's memory) with every dense product padded, against the same training with
    plain addmm: its 40 outputs are not a multiple of ALIGN."""
    from destiny.ops import dense
    from tests.ops.kernel_check import assert_close
    from tests.ops.test_triton_trainer import fit

    _, w_plain, e_plain = fit(device, force=True, static=True, optimizer="momentum", lam=0.001)
    calls = []
    original = dense._PaddedLinear.forward

    def counted(ctx, *args):
        calls.append(1)
        return original(ctx, *args)

    monkeypatch.setattr(dense, "_compute_dtype", lambda x, w: torch.float32)
    monkeypatch.setattr(dense._PaddedLinear, "forward", staticmethod(counted))
    _, w_pad, e_pad = fit(device, force=True, static=True, optimizer="momentum", lam=0.001)
    assert calls
    assert e_pad == pytest.approx(e_plain, rel=1e-5)
    for a, b in zip(w_pad, w_plain):
        assert_close(a, b.double(), torch.float32, what="weights after training")
