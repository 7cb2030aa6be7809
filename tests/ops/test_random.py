"""ops/random.py: the chunked Philox (``philox_words``) and the uniforms drawn from it
(``uniform``, ``uniform_range``, ``uniform_at``) equal the one-pass spec (``philox4x32``,
``_to_uniform``) bit for bit: counters past 2³² and 2³¹, sizes and offsets that are not
multiples of 4, and chunk boundaries (``CHUNK_BLOCKS`` made small so that a few hundred numbers
span several chunks)."""

from __future__ import annotations

import pytest
import torch

from destiny.ops import random

SEEDS = [0, 7, (1 << 62) + 12345, 0xFFFF_FFFF_FFFF]


def spec(seed: int, start: int, n: int) -> torch.Tensor:
    """Elements start … start + n − 1 of the stream, from one pass of ``philox4x32``."""
    first = start // 4
    counter = torch.arange(first, (start + n + 3) // 4, dtype=torch.int64)
    words = torch.stack(random.philox4x32(seed, counter), dim=1).reshape(-1)
    return random._to_uniform(words)[start - 4 * first:start - 4 * first + n]


def bits(x: torch.Tensor) -> torch.Tensor:
    return x.view(torch.int32)


@pytest.fixture(params=[None, 5], ids=["one chunk", "5-counter chunks"])
def chunk(request, monkeypatch):
    if request.param is not None:
        monkeypatch.setattr(random, "CHUNK_BLOCKS", request.param)
    return request.param


@pytest.mark.parametrize("seed", SEEDS, ids=lambda s: f"seed{s}")
def test_philox_words_are_philox4x32_bitwise(seed, chunk):
    counter = torch.tensor([0, 1, 2, 3, 19, 2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**32 + 5, 2**40 + 7,
                            2**62 + 3, 12345, 4, 5, 6, 7])  # 17 counters: 3 full chunks and a partial one
    words = random.philox_words(seed, counter)
    assert words.shape == (17, 4) and words.dtype == torch.int32
    want = torch.stack(random.philox4x32(seed, counter), dim=1)  # uint32 values in int64
    assert torch.equal(words.to(torch.int64) & 0xFFFFFFFF, want)


@pytest.mark.parametrize("seed", SEEDS, ids=lambda s: f"seed{s}")
def test_uniform_and_uniform_range_are_the_one_pass_stream(seed, chunk):
    for n in (0, 1, 3, 4, 5, 19, 20, 21, 81, 1001):  # 20 elements = one 5-counter chunk
        assert torch.equal(bits(random.uniform(seed, n)), bits(spec(seed, 0, n))), n
    for start, n in [(0, 5), (3, 10), (1, 19), (2, 20), (19, 2), (20, 21), (21, 40), (998, 3), (401, 0), (7, 333),
                     (2**33 + 1, 45)]:  # counters past 2³²
        assert torch.equal(bits(random.uniform_range(seed, start, n)), bits(spec(seed, start, n))), (start, n)


@pytest.mark.parametrize("seed", SEEDS, ids=lambda s: f"seed{s}")
def test_uniform_at_is_the_stream_at_any_elements(seed, chunk):
    whole = spec(seed, 0, 1001)
    index = torch.randint(0, 1001, (7, 13), generator=torch.Generator().manual_seed(seed % 1000))
    got = random.uniform_at(seed, index)
    assert got.shape == (7, 13) and torch.equal(bits(got), bits(whole[index]))
    far = torch.tensor([2**35 + 2, 2**35 + 3, 2**35 + 4, 2**33 + 1])
    assert torch.equal(bits(random.uniform_at(seed, far)),
                       bits(torch.cat([spec(seed, int(g), 1) for g in far])))


def test_a_large_draw_spans_several_default_chunks():
    n = 4 * random.CHUNK_BLOCKS * 2 + 13  # two full chunks and a partial one
    assert torch.equal(bits(random.uniform(11, n)), bits(spec(11, 0, n)))
    assert torch.equal(bits(random.uniform_range(11, 4 * random.CHUNK_BLOCKS - 3, 9)),
                       bits(spec(11, 4 * random.CHUNK_BLOCKS - 3, 9)))


def test_normal_at_is_box_muller_of_words_0_and_1(chunk):
    index = torch.tensor([[0, 1, 2**33 + 5], [7, 19, 20]])
    words = random.philox4x32(3, index)
    u1, u2 = 1.0 - random._to_uniform(words[0]).double(), random._to_uniform(words[1]).double()
    want = (torch.sqrt(-2.0 * torch.log(u1)) * torch.cos(2.0 * torch.pi * u2)).float()
    assert torch.equal(bits(random.normal_at(3, index)), bits(want))
