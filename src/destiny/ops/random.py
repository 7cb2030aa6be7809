"""Counter-based random numbers that are the same on every device and in every kernel.

Philox4x32-10 (Salmon et al., SC'11) exactly as Triton's ``tl.randint4x`` computes it, written
in plain torch int64 arithmetic: the uniform numbers depend only on (seed, offset), never on
thread scheduling, batch layout or device. Dropout, denoising and shuffling draw from streams
keyed by (run seed, purpose, epoch, step, layer), so a resumed run draws the same numbers, and a
fused Triton kernel using ``tl.rand4x(seed, offset)`` reproduces the reference bit for bit.
"""

from __future__ import annotations

import hashlib
import struct

import torch

_MASK32 = 0xFFFFFFFF
_KEY_A, _KEY_B = 0x9E3779B9, 0xBB67AE85
_ROUND_A, _ROUND_B = 0xD2511F53, 0xCD9E8D57
_SCALE = 4.6566127342e-10  # 2**-31, Triton's uint_to_uniform_float


def stream_seed(*key: int | str) -> int:
    """A 63-bit seed for one stream, from a key such as (seed, "dropout", epoch, step, layer)."""
    text = "\x1f".join(str(k) for k in key).encode()
    return struct.unpack("<Q", hashlib.blake2b(text, digest_size=8).digest())[0] & ((1 << 63) - 1)


def philox4x32(seed: int, counter: torch.Tensor, rounds: int = 10) -> tuple[torch.Tensor, ...]:
    """Four uint32 words (as int64 tensors) for each int64 ``counter`` value: Triton's
    ``randint4x(seed, counter)`` with counter = (counter lo, counter hi, 0, 0).

    Each round multiplies two words by a constant < 2**32: the 64-bit product wraps in int64
    (two's complement), which keeps all 64 bits, so its low word is ``p & MASK`` and its high
    word ``(p >> 32) & MASK``. The ops run in place where they can (1.7× faster on a CPU)."""
    c0 = counter & _MASK32
    c1 = (counter >> 32).bitwise_and_(_MASK32)
    c2 = torch.zeros_like(c0)
    c3 = torch.zeros_like(c0)
    k0, k1 = seed & _MASK32, (seed >> 32) & _MASK32
    for _ in range(rounds):
        product_b = c2 * _ROUND_B
        product_a = c0 * _ROUND_A
        lo_b = product_b.bitwise_and(_MASK32)
        lo_a = product_a.bitwise_and(_MASK32)
        hi_b = product_b.bitwise_right_shift_(32).bitwise_and_(_MASK32)
        hi_a = product_a.bitwise_right_shift_(32).bitwise_and_(_MASK32)
        c0, c1, c2, c3 = hi_b.bitwise_xor_(c1).bitwise_xor_(k0), lo_b, hi_a.bitwise_xor_(c3).bitwise_xor_(k1), lo_a
        k0 = (k0 + _KEY_A) & _MASK32
        k1 = (k1 + _KEY_B) & _MASK32
    return c0, c1, c2, c3


def _to_uniform(x: torch.Tensor) -> torch.Tensor:
    """Triton's uint→float: the word's int32 bit pattern i, then i (i ≥ 0) or −i − 1 (i < 0),
    times 2⁻³¹. For a word x in [0, 2³²) that is x below 2³¹ and 2³² − 1 − x (x XOR 0xFFFFFFFF)
    from 2³¹ on: one shift, multiply and XOR, integer-exact."""
    x = x.bitwise_xor((x >> 31) * _MASK32)
    return x.to(torch.float32) * _SCALE


def uniform(seed: int, n: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """``n`` float32 uniforms in [0, 1): element i is word (i % 4) of philox(seed, i // 4),
    as ``tl.rand4x(seed, offsets)`` lays them out for offsets = i // 4."""
    blocks = (n + 3) // 4
    counter = torch.arange(blocks, dtype=torch.int64, device=device)
    words = torch.stack(philox4x32(seed, counter), dim=1)  # (blocks, 4)
    return _to_uniform(words.reshape(-1)[:n])


def uniform_at(seed: int, index: torch.Tensor) -> torch.Tensor:
    """The uniforms of ``uniform(seed, ·)`` at the given element numbers (int64 tensor, any
    shape): element g is word g % 4 of philox(seed, g // 4). So any slice of a stream — one
    rank's columns of a dropout mask, one shard of a weight matrix — is drawn on its own,
    bitwise equal to the same elements of the whole stream. Costs one Philox call per element
    (``uniform`` shares a call between 4 consecutive elements)."""
    index = index.to(torch.int64)
    words = philox4x32(seed, index >> 2)
    word = index & 3
    out = torch.where(word == 0, words[0], words[1])
    out = torch.where(word == 2, words[2], out)
    out = torch.where(word == 3, words[3], out)
    return _to_uniform(out)


def uniform_range(seed: int, start: int, n: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """Elements start … start + n − 1 of ``uniform(seed, ·)`` (one Philox call per 4 elements)."""
    first, last = start // 4, (start + n + 3) // 4
    counter = torch.arange(first, last, dtype=torch.int64, device=device)
    words = torch.stack(philox4x32(seed, counter), dim=1).reshape(-1)  # (4·blocks,) from element 4·first
    skip = start - 4 * first
    return _to_uniform(words[skip:skip + n])


def normal_at(seed: int, index: torch.Tensor) -> torch.Tensor:
    """Standard normal float32 numbers for element numbers ``index`` (int64, any shape), each
    on its own Philox counter: Box–Muller z = √(−2 ln u₁)·cos(2π u₂) from words 0 and 1 of
    philox(seed, g), u₁ ∈ (0, 1], computed in float64. Like ``uniform_at``, any slice of the
    stream is drawn on its own. (log and cos are not correctly rounded: CPU and GPU libraries
    may differ in the last float64 bit, so on rare elements in the last float32 bit.)"""
    words = philox4x32(seed, index.to(torch.int64))
    u1 = 1.0 - _to_uniform(words[0]).double()  # (0, 1]
    u2 = _to_uniform(words[1]).double()
    return (torch.sqrt(-2.0 * torch.log(u1)) * torch.cos(2.0 * torch.pi * u2)).float()
