"""Dense products of a FullyConnected layer, shaped so cuBLAS takes its fast kernels.

On Hopper GPUs cuBLAS runs a matrix product with TMA/wgmma kernels only when every dimension's
rows are 16-byte aligned; a layer of 27,278 units (the MovieLens output) is not (27,278 × 2
bytes in bf16, × 4 in TF32), and cuBLAS falls back to Ampere kernels that run the same product
about 3× slower (NVIDIA H200, batch 1024 × 1536 → 27,278: bf16 0.37 ms against 0.12 ms with
27,280 columns; TF32 0.71 against 0.25; `benchmarks/train_step.py` times both as the floor).
Plain FP32 runs on the SIMT cores, which do not care.

``dense_linear`` therefore computes x @ w (+ b) for such a w in a product whose column count is
rounded up to a multiple of ``ALIGN``: w and b are copied (cast, under autocast) into zero-padded
buffers, the product is computed whole, and the (batch, units) result is a view of it. The pad
columns of the result are exactly 0 (x @ 0 + 0), which the backward pass relies on: when the
incoming gradient is that view itself (the fused output loss writes its delta in place), its
memory already is the padded gradient, with zeros in the pad, and nothing is copied.
Elsewhere (CPU, FP32, aligned widths) it is ``torch.addmm``: the same numbers as before.
"""

from __future__ import annotations

import torch

ALIGN = 16  # columns: 32 bytes in bf16, 64 in float32


def _compute_dtype(x: torch.Tensor, w: torch.Tensor) -> torch.dtype | None:
    """The reduced-precision dtype the product would run in on x's device (the autocast dtype,
    or float32 with TF32 allowed), or None for plain FP32 products."""
    if x.device.type != "cuda":
        return None
    if torch.is_autocast_enabled(x.device.type):
        return torch.get_autocast_dtype(x.device.type)
    if w.dtype == torch.float32 and torch.backends.cuda.matmul.allow_tf32:
        return torch.float32
    if w.dtype in (torch.bfloat16, torch.float16):
        return w.dtype
    return None


def needs_padding(x: torch.Tensor, w: torch.Tensor, force: bool = False) -> bool:
    """Whether ``dense_linear`` pads the product of x (batch, k) and w (k, n)."""
    if w.shape[1] % ALIGN == 0:
        return False
    return force or _compute_dtype(x, w) is not None


class _PaddedLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w, b, dtype):
        n = w.shape[1]
        m = -(-n // ALIGN) * ALIGN
        device_type = x.device.type
        with torch.autocast(device_type, enabled=False):
            w_pad = w.new_empty((w.shape[0], m), dtype=dtype)
            w_pad[:, :n].copy_(w)
            w_pad[:, n:].zero_()
            xc = x.to(dtype)
            if b is not None:
                b_pad = b.new_zeros((m,), dtype=dtype)
                b_pad[:n].copy_(b)
                z = torch.addmm(b_pad, xc, w_pad)
            else:
                z = torch.mm(xc, w_pad)
        ctx.save_for_backward(xc, w_pad)
        ctx.shape = (n, m, x.dtype, w.dtype, None if b is None else b.dtype)
        ctx.z_ptr = z.data_ptr()
        return z[:, :n]

    @staticmethod
    def backward(ctx, grad):
        xc, w_pad = ctx.saved_tensors
        n, m, x_dtype, w_dtype, b_dtype = ctx.shape
        device_type = grad.device.type
        with torch.autocast(device_type, enabled=False):
            if grad.data_ptr() == ctx.z_ptr and grad.stride() == (m, 1) and grad.dtype == w_pad.dtype:
                # The product's own memory, overwritten by the delta in place: pad columns are 0.
                g = grad.as_strided((grad.shape[0], m), (m, 1))
            else:
                g = grad.new_zeros((grad.shape[0], m), dtype=w_pad.dtype)
                g[:, :n].copy_(grad)
            grad_x = grad_w = grad_b = None
            if ctx.needs_input_grad[0]:
                grad_x = torch.mm(g, w_pad.t()).to(x_dtype)
            if ctx.needs_input_grad[1]:
                grad_w = torch.mm(xc.t(), g)[:, :n].to(w_dtype).contiguous()
            if b_dtype is not None and ctx.needs_input_grad[2]:
                grad_b = grad.sum(0, dtype=torch.promote_types(grad.dtype, torch.float32)).to(b_dtype)
        return grad_x, grad_w, grad_b, None


def dense_linear(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None = None, *,
                 force: bool = False) -> torch.Tensor:
    """x (batch, k) @ w (k, n) (+ b), differentiable; see the module docstring. force: pad even
    where it would not pay (the tests check the padded path on CPU this way)."""
    if needs_padding(x, w, force):
        dtype = _compute_dtype(x, w) or torch.promote_types(x.dtype, w.dtype)
        return _PaddedLinear.apply(x, w, b, dtype)
    return torch.mm(x, w) if b is None else torch.addmm(b, x, w)
