"""Counter-based random numbers that are the same on every device and in every kernel.

Philox4x32-10 (Salmon et al., SC'11) exactly as Triton's ``tl.randint4x`` computes it, written
in plain torch int64 arithmetic: the uniform numbers depend only on (seed, offset), never on
thread scheduling, batch layout or device. Dropout, denoising and shuffling draw from streams
keyed by (run seed, purpose, epoch, step, layer), so a resumed run draws the same numbers, and a
fused Triton kernel using ``tl.rand4x(seed, offset)`` reproduces the reference bit for bit.

``philox4x32`` is the spec, one op at a time over whole tensors; ``philox_words`` and the
uniforms (``uniform``, ``uniform_range``, ``uniform_at``, ``normal_at``) compute the same bits
in fewer ops, a chunk of counters at a time, in reused temporaries.
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


# -- the fast path: what dropout, denoising and initialisation draw from -----------------------

# Philox counters a pass. CPU: 128 Ki counters (1 MB an int64 temporary) is the fastest on 2
# threads: a smaller chunk saves cache misses but pays torch's ~4 µs an op more often, and ops
# under 32 Ki elements run on one thread (2-core EPYC, a 64 × 6144 mask: 6.2 ns a number in
# chunks of 32 Ki, 3.8 in one of 96 Ki). Elsewhere: it only bounds the temporaries (88 MB).
CHUNK_BLOCKS = 1 << 17
DEVICE_CHUNK_BLOCKS = 1 << 20


def _chunk(device: torch.device) -> int:
    return CHUNK_BLOCKS if device.type == "cpu" else DEVICE_CHUNK_BLOCKS


def _philox_into(seed: int, counter: torch.Tensor, words: torch.Tensor, scratch: list[torch.Tensor]) -> None:
    """words (b, 4) int32 ← the bit patterns of ``philox4x32(seed, counter)``; counter (b,)
    int64, scratch six (b,) int64. The same arithmetic in 10 ops a round instead of 12, in
    place: a product's low word is never masked out (it is only XORed into the next round's
    high word, and the masking of that result clears its high half too), the first round
    skips what its zero words c2, c3 make trivial, and the last round's words are narrowed to
    int32 as they are written."""
    a, c, pa, pc, qa, qc = scratch  # a, c: c0, c2 (< 2³²); pa, pc: their products; qa, qc: the last round's
    k0, k1 = seed & _MASK32, (seed >> 32) & _MASK32
    # round 1 of (c0, c1, c2, c3) = (counter lo, counter hi, 0, 0): c2·B = 0, so c0 = c1 ^ k0, c1 = 0
    torch.mul(torch.bitwise_and(counter, _MASK32, out=a), _ROUND_A, out=qa)  # c3 = lo(qa)
    torch.bitwise_right_shift(qa, 32, out=c).bitwise_xor_(k1).bitwise_and_(_MASK32)
    torch.bitwise_right_shift(counter, 32, out=a).bitwise_xor_(k0)  # counter hi < 2³¹: no high bits
    k0, k1 = (k0 + _KEY_A) & _MASK32, (k1 + _KEY_B) & _MASK32
    for round_ in range(1, 10):
        torch.mul(a, _ROUND_A, out=pa)  # 64-bit products, exact in int64's two's complement
        torch.mul(c, _ROUND_B, out=pc)
        if round_ == 9:
            break
        # c0 = hi(pc) ^ c1 ^ k0, c2 = hi(pa) ^ c3 ^ k1; c1 = lo(pc), c3 = lo(pa) stay in pc, pa
        torch.bitwise_right_shift(pc, 32, out=a)
        if round_ > 1:  # round 1 left c1 = 0
            a.bitwise_xor_(qc)
        a.bitwise_xor_(k0).bitwise_and_(_MASK32)
        torch.bitwise_right_shift(pa, 32, out=c).bitwise_xor_(qa).bitwise_xor_(k1).bitwise_and_(_MASK32)
        pa, qa, pc, qc = qa, pa, qc, pc
        k0, k1 = (k0 + _KEY_A) & _MASK32, (k1 + _KEY_B) & _MASK32
    # the words: int64 results written to int32 keep their low 32 bits
    torch.bitwise_xor(torch.bitwise_right_shift(pc, 32, out=a).bitwise_xor_(qc), k0, out=words[:, 0])
    words[:, 1].copy_(pc)
    torch.bitwise_xor(torch.bitwise_right_shift(pa, 32, out=c).bitwise_xor_(qa), k1, out=words[:, 2])
    words[:, 3].copy_(pa)


def _uniform_into(i: torch.Tensor, out: torch.Tensor, sign: torch.Tensor) -> None:
    """out (float32) ← ``_to_uniform`` of the int32 bit patterns i, which are overwritten;
    sign: int32 scratch of i's shape. i XOR (i >> 31) in int32 is Triton's i or −i − 1 itself."""
    torch.mul(i.bitwise_xor_(torch.bitwise_right_shift(i, 31, out=sign)), _SCALE, out=out)


def _scratch(m: int, device: torch.device) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
    """Temporaries for chunks of up to m counters: seven (m,) int64 (Philox's six and the
    counters), the (m, 4) int32 words and as many int32 for the uniforms' signs, all in one
    block. One block of this size, freed each call, leaves glibc's heap holding the pages of
    a training step (it raises the threshold above which freed memory goes back to the OS);
    as eleven tensors, the size of a step's activations, they and the activations were faulted
    in afresh every step (digits CNN, two epochs: 1,000 page faults against 233,000, some
    2.5 µs each on a virtual machine)."""
    block = torch.empty(11, m, dtype=torch.int64, device=device)
    return list(block[:7]), block[7:9].view(torch.int32).view(m, 4), block[9:11].view(torch.int32).view(m, 4)


def philox_words(seed: int, counter: torch.Tensor) -> torch.Tensor:
    """``philox4x32(seed, counter)`` as one (n, 4) int32 tensor of the words' bit patterns, for
    a (n,) int64 ``counter``: bitwise the same numbers, ``CHUNK_BLOCKS`` counters at a time
    with reused temporaries (a 64 × 6144 mask's ``uniform``: 3.5× faster than one pass of
    ``philox4x32`` on 1 CPU thread, 1.4× on 2)."""
    n = counter.numel()
    words = torch.empty(n, 4, dtype=torch.int32, device=counter.device)
    step = _chunk(counter.device)
    rows = list(torch.empty(6, min(step, n), dtype=torch.int64, device=counter.device))
    for lo in range(0, n, step):
        hi = min(lo + step, n)
        _philox_into(seed, counter[lo:hi], words[lo:hi], [r[:hi - lo] for r in rows])
    return words


def uniform(seed: int, n: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """``n`` float32 uniforms in [0, 1): element i is word (i % 4) of philox(seed, i // 4),
    as ``tl.rand4x(seed, offsets)`` lays them out for offsets = i // 4."""
    return uniform_range(seed, 0, n, device)


def uniform_at(seed: int, index: torch.Tensor) -> torch.Tensor:
    """The uniforms of ``uniform(seed, ·)`` at the given element numbers (int64 tensor, any
    shape): element g is word g % 4 of philox(seed, g // 4). So any slice of a stream — one
    rank's columns of a dropout mask, one shard of a weight matrix — is drawn on its own,
    bitwise equal to the same elements of the whole stream. Costs one Philox call per element
    (``uniform`` shares a call between 4 consecutive elements)."""
    flat = index.reshape(-1).to(torch.int64)
    out = torch.empty(flat.shape, dtype=torch.float32, device=flat.device)
    step = _chunk(flat.device)
    rows, words, signs = _scratch(min(step, flat.numel()), flat.device)
    for lo in range(0, flat.numel(), step):
        hi = min(lo + step, flat.numel())
        g, part = flat[lo:hi], [r[:hi - lo] for r in rows]
        _philox_into(seed, torch.bitwise_right_shift(g, 2, out=part[6]), words[:hi - lo], part[:6])
        word = torch.bitwise_and(g, 3, out=part[6])  # (b,) which of the four
        picked = torch.gather(words[:hi - lo], 1, word[:, None], out=signs[:hi - lo, :1]).view(-1)
        _uniform_into(picked, out[lo:hi], signs[:hi - lo, 1])
    return out.view(index.shape)


def uniform_range(seed: int, start: int, n: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """Elements start … start + n − 1 of ``uniform(seed, ·)`` (one Philox call per 4 elements),
    a chunk of counters at a time: its words are turned into uniforms while in cache."""
    device = torch.device(device)
    first, skip = start // 4, start % 4  # the first counter; the elements of its block before start
    blocks = (skip + n + 3) // 4
    out = torch.empty(n, dtype=torch.float32, device=device)
    step = _chunk(device)
    rows, words, signs = _scratch(min(step, blocks), device)
    for lo in range(0, blocks, step):
        b = min(step, blocks - lo)
        counter = torch.arange(first + lo, first + lo + b, dtype=torch.int64, device=device, out=rows[6][:b])
        _philox_into(seed, counter, words[:b], [r[:b] for r in rows[:6]])
        begin, end = max(4 * lo - skip, 0), min(4 * (lo + b) - skip, n)  # out's elements in this chunk
        at = begin - (4 * lo - skip)
        _uniform_into(words[:b].view(-1)[at:at + end - begin], out[begin:end], signs.view(-1)[:end - begin])
    return out


def normal_at(seed: int, index: torch.Tensor) -> torch.Tensor:
    """Standard normal float32 numbers for element numbers ``index`` (int64, any shape), each
    on its own Philox counter: Box–Muller z = √(−2 ln u₁)·cos(2π u₂) from words 0 and 1 of
    philox(seed, g), u₁ ∈ (0, 1], computed in float64. Like ``uniform_at``, any slice of the
    stream is drawn on its own. (log and cos are not correctly rounded: CPU and GPU libraries
    may differ in the last float64 bit, so on rare elements in the last float32 bit.)"""
    words = philox_words(seed, index.reshape(-1).to(torch.int64))[:, :2]  # (n, 2) int32: words 0 and 1
    u = torch.empty(words.shape, dtype=torch.float32, device=words.device)
    _uniform_into(words, u, torch.empty_like(words))
    u1 = 1.0 - u[:, 0].double()  # (0, 1]
    u2 = u[:, 1].double()
    return (torch.sqrt(-2.0 * torch.log(u1)) * torch.cos(2.0 * torch.pi * u2)).float().view(index.shape)
