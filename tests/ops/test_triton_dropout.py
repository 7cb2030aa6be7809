"""Fused dropout and alpha dropout: masks bitwise equal to the reference's Philox uniforms,
values and gradients equal to the reference's."""

from __future__ import annotations

import pytest
import torch

from destiny.ops import functional as F
from destiny.ops import reference as ref
from destiny.ops.random import _to_uniform, philox4x32, stream_seed
from tests.ops.kernel_check import check_op

SHAPES = [(1,), (3, 5), (37, 781), (2, 3, 1001)]  # numel 1, 15, 28897, 6006: never a multiple of 4·block
SEEDS = [0, 1, 2**31 + 7, stream_seed(12134, "dropout", 3, 17, "Hidden1")]  # 1 is specialised by Triton


def data(device, shape, dtype=torch.float32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=gen).to(device=device, dtype=dtype)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("seed", SEEDS, ids=lambda s: f"seed{s}")
def test_dropout_is_bitwise_the_reference(device, shape, seed):
    x = data(device, shape).requires_grad_()
    with F.kernels(True):
        y = F.dropout(x, 0.37, seed)
    expected = ref.dropout_ref(x.detach(), 0.37, seed)
    assert torch.equal(y.detach(), expected)
    g = data(device, shape, seed=1)
    y.backward(g)
    assert torch.equal(x.grad, torch.where(expected != 0, g * (1.0 / (1.0 - 0.37)), torch.zeros_like(g)))


@pytest.mark.parametrize("p", [0.0, 0.1, 0.9])
def test_keep_probability_and_mask_for_several_p(device, p):
    x = torch.ones(64, 257, device=device)
    with F.kernels(True):
        y = F.dropout(x, p, 99)
    keep = ref.dropout_ref(x, p, 99) != 0
    assert torch.equal(y != 0, keep)
    assert abs(float(keep.float().mean()) - (1 - p)) < 0.02


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
def test_half_precision_keeps_the_same_mask(device, dtype):
    x = data(device, (37, 781), dtype=dtype) + 3.0  # no zeros, so y != 0 is the mask
    with F.kernels(True):
        y = F.dropout(x, 0.37, 5)
    expected = ref.dropout_ref(x, 0.37, 5)
    assert torch.equal(y != 0, expected != 0)
    if device.type == "cuda":  # the interpreter rounds float→bf16 by truncation, the GPU to nearest
        assert torch.equal(y, expected)
    check_op(lambda t: F.dropout(t, 0.37, 5), (x,), dtype=dtype, diff=(0,), name=f"dropout {dtype}")


@pytest.mark.parametrize("shape", SHAPES[1:3], ids=str)
def test_alpha_dropout_matches_the_reference(device, shape):
    saturation = -1.0507009873554805 * 1.6732632423543772  # SELU's
    x = data(device, shape, seed=3)
    op = lambda t: F.alpha_dropout(t, 0.2, SEEDS[3], saturation)  # noqa: E731
    out = check_op(op, (x,), dtype=torch.float32, diff=(0,), name="alpha dropout")
    dropped = ref.dropout_ref(torch.ones_like(x), 0.2, SEEDS[3]) == 0
    a = (0.8 + saturation * saturation * 0.2 * 0.8) ** -0.5
    assert torch.allclose(out[dropped], torch.full_like(out[dropped], a * saturation - a * saturation * 0.2))


@pytest.mark.gpu
@pytest.mark.slow
def test_more_than_two_to_the_31_elements():
    """2^31 + 4099 fp16 elements (4 GiB): counters and offsets pass int32."""
    n = 2**31 + 4099
    seed = SEEDS[3]
    x = torch.ones(n, dtype=torch.float16, device="cuda")
    y = F.dropout(x, 0.5, seed)
    for start in (0, 2**31 - 4096, n - 4099):  # blocks of 4096 elements, 1024 counters
        counters = torch.arange(start // 4, (start + 4096 + 3) // 4, device="cuda")
        u = _to_uniform(torch.stack(philox4x32(seed, counters), dim=1).reshape(-1))[: min(4096, n - start)]
        keep = u >= 0.5
        assert torch.equal(y[start:start + keep.numel()] != 0, keep)


@pytest.mark.parametrize("seed", SEEDS, ids=lambda s: f"seed{s}")
def test_a_device_seed_draws_the_same_numbers(device, seed):
    """The seed read from a 0-d int64 device tensor (what a CUDA graph replays) equals the
    integer seed, forward and backward, dropout and alpha dropout."""
    x = data(device, (37, 781)).requires_grad_()
    y = data(device, (37, 781)).requires_grad_()
    g = data(device, (37, 781), seed=2)
    seed_t = torch.tensor(seed, dtype=torch.int64, device=device)
    with F.kernels(True):
        a, b = F.dropout(x, 0.37, seed), F.dropout(y, 0.37, seed_t)
        c, d = F.alpha_dropout(x.detach(), 0.2, seed, -1.7), F.alpha_dropout(y.detach(), 0.2, seed_t, -1.7)
    assert torch.equal(a, b) and torch.equal(c, d)
    a.backward(g)
    b.backward(g)
    assert torch.equal(x.grad, y.grad)


@pytest.mark.parametrize("values", [False, True], ids=["indicator", "values"])
def test_denoise_kernel_is_bitwise_the_reference_and_keeps_padding_zero(device, values):
    from tests.helpers import random_batch
    from tests.ops.kernel_check import cast
    from tests.ops.test_triton_sparse_linear import padded

    b = cast(random_batch(50, 300, 20, values=values, seed=3, dtype=torch.float32), None, device)
    for batch in (b, padded(b, b.nnz + 21)):
        for seed in SEEDS[2:]:
            with F.kernels(True):
                d = F.denoise(batch, 0.3, torch.tensor(seed, device=device))
                e = F.denoise(batch, 0.3, seed)
            expected = ref.denoise_ref(batch, 0.3, seed)
            assert torch.equal(d.values, expected.values) and torch.equal(e.values, expected.values)
            assert d.indices is batch.indices and d.padded == batch.padded
            assert not bool(d.values[b.nnz:].any())
