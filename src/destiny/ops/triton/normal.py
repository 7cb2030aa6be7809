"""Standard normal numbers from a counter-based stream: the ε of a Variational layer's sample.

Element g of the stream is ``destiny.ops.random.normal_at(seed, g)`` (its spec and the CPU
path): words 0 and 1 of Philox4x32-10(seed, counter g) as uniforms u₀, u₁ (``tl.rand4x``, the
same words and float32 uniforms as ``ops.random``), then Box–Muller in float64,
z = √(−2 ln(1 − u₀))·cos(2π u₁), rounded to float32. One Philox call per element; nothing is
stored for backward (the sample's gradient needs ε once, kept by autograd: (batch, N) float32).

The seed is an int or a 0-d int64 device tensor read by the kernel, so a CUDA graph of the
training step draws each step's numbers (the step copies its seeds into that tensor before a
replay). float64 log and cos are libdevice's on the GPU and NumPy's under the interpreter: an
element may differ from the CPU reference in the last float32 bit (``normal_at``'s note), never
between two runs on one device.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from destiny.backend import TRITON_INTERPRET

TWO_PI = tl.constexpr(6.283185307179586)  # 2.0 * math.pi, as the reference computes it in float64 (a constexpr: a jit function reads no plain globals)


@triton.jit
def normal_kernel(out_ptr, n, seed, seed_ptr, SEED_PTR: tl.constexpr, BLOCK: tl.constexpr):
    """out[g] = normal number g of the stream, g < n (int64 offsets: n may pass 2^31). The seed:
    the argument, or seed_ptr[0] (SEED_PTR)."""
    if SEED_PTR:
        seed = tl.load(seed_ptr)
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)  # (BLOCK,) element = counter
    u0, u1, _, _ = tl.rand4x(seed, offs)
    a = 1.0 - u0.to(tl.float64)  # (0, 1]
    two_pi = tl.full((BLOCK,), TWO_PI, tl.float64)  # a float64 constant (a bare literal is float32)
    z = tl.sqrt(-2.0 * tl.log(a)) * tl.cos(two_pi * u1.to(tl.float64))
    tl.store(out_ptr + offs, z.to(tl.float32), mask=offs < n)


BLOCK = 4096 if TRITON_INTERPRET else 1024


def standard_normal(n: int, seed: int | torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """(n,) float32: elements 0 … n − 1 of the normal stream of ``seed`` (an int, or a 0-d int64
    tensor on ``device`` read by the kernel: no host sync). Writes 4·n bytes; about 10 Philox
    rounds, a log, a cos and a sqrt in float64 an element."""
    out = torch.empty(n, dtype=torch.float32, device=device)
    if n:
        if isinstance(seed, torch.Tensor):
            if seed.numel() != 1 or seed.dtype != torch.int64 or seed.device != out.device:
                raise ValueError(f"a device seed is one int64 on {out.device}; got {seed.dtype} "
                                 f"{tuple(seed.shape)} on {seed.device}")
            seed_arg, seed_ptr, from_ptr = 0, seed, True
        else:
            seed_arg, seed_ptr, from_ptr = int(seed), out, False
        normal_kernel[(triton.cdiv(n, BLOCK),)](out, n, seed_arg, seed_ptr, SEED_PTR=from_ptr, BLOCK=BLOCK,
                                                 num_warps=4)
    return out
