"""Fused output loss and delta for sparse targets: DSSTNE's two-pass trick in one kernel.

One program a row (example), three phases in a fixed order, so the row's loss is summed the
same way every run and nothing needs atomics:

1. Walk the row's CSR segment of targets: save the pre-activations z[row, col] of the targets
   (nnz floats of scratch; phase 2 may overwrite them) and, for SoftMax, Σ c_k, c_k the
   (boosted) target values.
2. Stream the row's columns, BLOCK_N at a time: every unit scored as a zero target — loss
   partials in a (BLOCK_N,) accumulator, delta ∂loss/∂z written over z (in place: z is the
   output GEMM's temporary) or into a fresh tensor. SoftMax reads the row twice (an online
   max/sum-exp pass, then a = exp(z − max)/Σ and the delta a·Σc); its zero-target loss is 0.
3. Walk the targets again: loss += loss(t) − loss(0) (ignore_zero: += loss(t)), and write the
   target's delta over the zero-target one.

``tl.debug_barrier()`` (``__syncthreads``) separates the phases: a thread of phase 2 may
overwrite z where another thread of phase 1 reads it, and phase 3 must overwrite phase 2's
delta. Precondition: the features of one example are distinct (``SparseDataset.validate``
checks it); a repeated target would count twice in the loss but once in the delta.

Spec: ``reference.output_loss_ref`` (loss) and its autograd gradient (delta). Supported:
Sigmoid with CrossEntropy, ScaledMarginalCrossEntropy, DataScaledMarginalCrossEntropy, L2, L1;
Linear with L2, L1; SoftMax with CrossEntropy and Multinomial (the same pass: delta
softmax(z)·Σt − t, indicator targets 1 instead of 1/#targets, no DeltaBoost). DeltaBoost (boost_one/boost_zero on
CrossEntropy and L2), per-example weights, ignore_zero, indicator or analog targets.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from destiny.config import Activation, ErrorFunction
from destiny.nn.losses import LossSpec
from destiny.ops.sparse import SparseBatch

# the kernels' activation (ACT) and loss (ERR) codes
LINEAR, SIGMOID, SOFTMAX = tl.constexpr(0), tl.constexpr(1), tl.constexpr(2)
L1, L2, CE, SMCE, DSMCE, MULT = (tl.constexpr(0), tl.constexpr(1), tl.constexpr(2), tl.constexpr(3), tl.constexpr(4),
                                 tl.constexpr(5))

_ACT = {Activation.LINEAR: LINEAR.value, Activation.SIGMOID: SIGMOID.value, Activation.SOFTMAX: SOFTMAX.value}
_ERR = {ErrorFunction.L1: L1.value, ErrorFunction.L2: L2.value, ErrorFunction.CROSS_ENTROPY: CE.value,
        ErrorFunction.SCALED_MARGINAL_CROSS_ENTROPY: SMCE.value,
        ErrorFunction.DATA_SCALED_MARGINAL_CROSS_ENTROPY: DSMCE.value, ErrorFunction.MULTINOMIAL: MULT.value}
SUPPORTED = {
    Activation.SIGMOID: {ErrorFunction.L1, ErrorFunction.L2, ErrorFunction.CROSS_ENTROPY,
                         ErrorFunction.SCALED_MARGINAL_CROSS_ENTROPY, ErrorFunction.DATA_SCALED_MARGINAL_CROSS_ENTROPY},
    Activation.LINEAR: {ErrorFunction.L1, ErrorFunction.L2},
    Activation.SOFTMAX: {ErrorFunction.CROSS_ENTROPY, ErrorFunction.MULTINOMIAL},
}


@triton.jit
def _element(z, t, ACT: tl.constexpr, ERR: tl.constexpr,
             one_target, zero_target, one_scale, zero_scale, boost_one, boost_zero):
    """Loss and ∂loss/∂z of output units with pre-activations z against targets t (fp32 tiles),
    as ``nn.losses.element_loss`` for the Sigmoid and Linear outputs. Sigmoid's logs are
    softplus of ±z from one exp, one reciprocal and one log: log σ(z) = −softplus(−z),
    log(1 − σ(z)) = −softplus(z); 1 − σ(z) is formed without cancellation."""
    if ACT == SIGMOID:
        e = tl.exp(-tl.abs(z))
        u = 1.0 + e
        r = 1.0 / u
        log1p_e = tl.log(u) + (e - (u - 1.0)) * r  # log1p(e): log u corrected by u's rounding error
        a = tl.where(z >= 0, r, e * r)  # σ(z)
        oma = tl.where(z >= 0, e * r, r)  # 1 − σ(z)
        sp_pos = tl.maximum(z, 0.0) + log1p_e  # softplus(z) = −log(1 − a)
        sp_neg = tl.maximum(-z, 0.0) + log1p_e  # softplus(−z) = −log a
        slope = a * oma  # σ'(z)
    else:  # Linear
        a = z
        slope = 1.0
    if ERR == L1:
        diff = a - t
        loss = tl.abs(diff)
        d = tl.where(diff > 0, slope, tl.where(diff < 0, -slope, 0.0))
    elif ERR == L2:
        diff = a - t
        loss = 0.5 * diff * diff
        d = diff * slope
    elif ERR == CE:
        loss = t * sp_neg + (1.0 - t) * sp_pos
        d = a * (1.0 - t) - t * oma  # a − t
    else:  # ScaledMarginal / DataScaledMarginal CrossEntropy
        one_on = a < one_target
        one = tl.where(one_on, one_scale * sp_neg, 0.0)
        d_one = tl.where(one_on, -one_scale * oma, 0.0)
        if ERR == DSMCE:
            one = one * t
            d_one = d_one * t
        zero_on = a > zero_target
        zero = tl.where(zero_on, zero_scale * sp_pos, 0.0)
        d_zero = tl.where(zero_on, zero_scale * a, 0.0)
        loss = tl.where(t > 0, one, zero)
        d = tl.where(t > 0, d_one, d_zero)
    if ERR == L2 or ERR == CE:  # DeltaBoost
        boost = tl.where(t > 0, boost_one, boost_zero)
        loss = loss * boost
        d = d * boost
    return loss, d


@triton.jit
def _targets(val_ptr, k, ok, count, HAS_VALUES: tl.constexpr, SPREAD: tl.constexpr):
    """Target values of nonzeros k: the data's values, else 1 (1/#targets when SPREAD)."""
    if HAS_VALUES:
        t = tl.load(val_ptr + k, mask=ok, other=0.0).to(tl.float32)
    elif SPREAD:
        t = tl.where(ok, 1.0, 0.0) / tl.maximum(count, 1).to(tl.float32)
    else:
        t = tl.where(ok, 1.0, 0.0)
    return t


@triton.jit
def output_loss_kernel(z_ptr, d_ptr, loss_ptr, zt_ptr, off_ptr, idx_ptr, val_ptr, wt_ptr, gs_ptr,
                       N, z_stride, d_stride,
                       one_target, zero_target, one_scale, zero_scale, boost_one, boost_zero,
                       ACT: tl.constexpr, ERR: tl.constexpr, HAS_VALUES: tl.constexpr,
                       HAS_WEIGHTS: tl.constexpr, IGNORE_ZERO: tl.constexpr, WRITE_DELTA: tl.constexpr,
                       HAS_SCALE: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_T: tl.constexpr):
    """Row pid of z (B, N): loss[pid] and, if WRITE_DELTA, the delta row into d (d may be z),
    times gs[0] (HAS_SCALE: the gradient the caller seeds backward with, folded in).
    Targets: CSR off (B+1,) int64 (a padded batch's slots past off[B] are never read), idx
    (nnz,) columns, val (nnz,) or none; wt (B,) or none; zt (nnz,) fp32 scratch. Row offsets
    are int64 (B·N may pass 2^31)."""
    row = tl.program_id(0).to(tl.int64)
    z_row = z_ptr + row * z_stride
    d_row = d_ptr + row * d_stride
    start = tl.load(off_ptr + row)
    end = tl.load(off_ptr + row + 1)
    count = end - start
    w = 1.0
    if HAS_WEIGHTS:
        w = tl.load(wt_ptr + row).to(tl.float32)
    gs = 1.0
    if HAS_SCALE:
        gs = tl.load(gs_ptr).to(tl.float32)
    SPREAD: tl.constexpr = ACT == SOFTMAX and ERR == CE  # Multinomial: indicator targets count 1
    if ERR == MULT:  # no DeltaBoost (CrossEntropy's and L2's)
        boost_one = 1.0
        boost_zero = 1.0

    # phase 1: the targets' pre-activations, before phase 2 overwrites them; SoftMax's Σc
    c_acc = tl.zeros((BLOCK_T,), tl.float32)
    for k0 in range(start, end, BLOCK_T):
        k = k0 + tl.arange(0, BLOCK_T)
        ok = k < end
        col = tl.load(idx_ptr + k, mask=ok, other=0).to(tl.int64)
        tl.store(zt_ptr + k, tl.load(z_row + col, mask=ok, other=0.0).to(tl.float32), mask=ok)
        if ACT == SOFTMAX:
            t = _targets(val_ptr, k, ok, count, HAS_VALUES, SPREAD)
            c_acc += t * tl.where(t > 0, boost_one, boost_zero)
    c_sum = tl.sum(c_acc, axis=0)
    tl.debug_barrier()

    # phase 2: every unit as a zero target
    loss0 = 0.0
    if ACT == SOFTMAX:
        m_vec = tl.full((BLOCK_N,), -3.0e38, tl.float32)
        s_vec = tl.zeros((BLOCK_N,), tl.float32)
        for n0 in range(0, N, BLOCK_N):
            cols = n0 + tl.arange(0, BLOCK_N)
            z = tl.load(z_row + cols, mask=cols < N, other=float("-inf")).to(tl.float32)
            m_new = tl.maximum(m_vec, z)
            s_vec = s_vec * tl.exp(m_vec - m_new) + tl.exp(z - m_new)
            m_vec = m_new
        m = tl.max(m_vec, axis=0)
        s = tl.sum(s_vec * tl.exp(m_vec - m), axis=0)
        log_s = tl.log(s)
        if WRITE_DELTA:
            scale = w * c_sum / s
            for n0 in range(0, N, BLOCK_N):
                cols = n0 + tl.arange(0, BLOCK_N)
                ok = cols < N
                z = tl.load(z_row + cols, mask=ok, other=0.0).to(tl.float32)
                tl.store(d_row + cols, (tl.exp(z - m) * scale * gs).to(d_ptr.dtype.element_ty), mask=ok)
    else:
        acc = tl.zeros((BLOCK_N,), tl.float32)
        for n0 in range(0, N, BLOCK_N):
            cols = n0 + tl.arange(0, BLOCK_N)
            ok = cols < N
            if IGNORE_ZERO:
                if WRITE_DELTA:
                    tl.store(d_row + cols, tl.zeros((BLOCK_N,), tl.float32).to(d_ptr.dtype.element_ty), mask=ok)
            else:
                z = tl.load(z_row + cols, mask=ok, other=0.0).to(tl.float32)
                l0, d0 = _element(z, tl.zeros_like(z), ACT, ERR,
                                  one_target, zero_target, one_scale, zero_scale, boost_one, boost_zero)
                acc += tl.where(ok, l0, 0.0)
                if WRITE_DELTA:
                    tl.store(d_row + cols, (w * d0 * gs).to(d_ptr.dtype.element_ty), mask=ok)
        loss0 = tl.sum(acc, axis=0)
    tl.debug_barrier()

    # phase 3: correct the nonzero targets
    corr = tl.zeros((BLOCK_T,), tl.float32)
    for k0 in range(start, end, BLOCK_T):
        k = k0 + tl.arange(0, BLOCK_T)
        ok = k < end
        col = tl.load(idx_ptr + k, mask=ok, other=0).to(tl.int64)
        zt = tl.load(zt_ptr + k, mask=ok, other=0.0)
        t = _targets(val_ptr, k, ok, count, HAS_VALUES, SPREAD)
        if ACT == SOFTMAX:
            c = t * tl.where(t > 0, boost_one, boost_zero)
            log_a = zt - m - log_s
            corr += tl.where(ok, -c * log_a, 0.0)
            dt = tl.exp(log_a) * c_sum - c
        else:
            lt, dt = _element(zt, t, ACT, ERR, one_target, zero_target, one_scale, zero_scale, boost_one, boost_zero)
            if IGNORE_ZERO:
                corr += tl.where(ok, lt, 0.0)
            else:
                l0, d0 = _element(zt, tl.zeros_like(zt), ACT, ERR,
                                  one_target, zero_target, one_scale, zero_scale, boost_one, boost_zero)
                corr += tl.where(ok, lt - l0, 0.0)
        if WRITE_DELTA:
            tl.store(d_row + col, (w * dt * gs).to(d_ptr.dtype.element_ty), mask=ok)
    tl.store(loss_ptr + row, w * (loss0 + tl.sum(corr, axis=0)))


BLOCK_N = 4096  # columns a step: 16 KiB of fp32 z in flight a program (H200: 15% faster than 2048)
BLOCK_T = 64  # targets a step


def supports(spec: LossSpec, z: torch.Tensor) -> bool:
    """Whether the fused kernel computes this loss (else ``ops.functional`` uses the reference)."""
    return (spec.error_function in SUPPORTED.get(spec.activation.kind, ())
            and z.dim() == 2 and z.dtype in (torch.float32, torch.bfloat16, torch.float16))


def output_loss_forward(z: torch.Tensor, target: SparseBatch, spec: LossSpec, *, write_delta: bool = True,
                        inplace: bool = False, grad_scale: torch.Tensor | None = None
                        ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Launch the kernel: (loss (B,) fp32, delta (B, N) in z's dtype or None). With inplace the
    delta is z itself (z must then have unit column stride, else a copy is made). grad_scale:
    a 0-d float tensor on z's device; the delta is multiplied by it (read by the kernel)."""
    if not supports(spec, z):
        raise ValueError(f"the fused output loss does not support {spec.activation.kind.json} with "
                         f"{spec.error_function.json} on {z.dim()}-d {z.dtype} outputs")
    batch, width = z.shape
    if target.batch_size != batch or target.n_features != width:
        raise ValueError(f"targets of {target.batch_size} × {target.n_features} for outputs of {batch} × {width}")
    if z.stride(1) != 1:
        z = z.contiguous()
    loss = torch.empty(batch, dtype=torch.float32, device=z.device)
    delta = (z if inplace else torch.empty_like(z, memory_format=torch.contiguous_format)) if write_delta else None
    if batch == 0:
        return loss, delta
    scratch = torch.empty(max(target.nnz, 1), dtype=torch.float32, device=z.device)  # (nnz,) targets' z
    dummy = target.offsets
    output_loss_kernel[(batch,)](
        z, z if delta is None else delta, loss, scratch, target.offsets, target.indices,
        dummy if target.values is None else target.values, dummy if target.weights is None else target.weights,
        loss if grad_scale is None else grad_scale, width, z.stride(0), 0 if delta is None else delta.stride(0),
        float(spec.one_target), float(spec.zero_target), float(spec.one_scale), float(spec.zero_scale),
        float(spec.boost_one), float(spec.boost_zero),
        ACT=_ACT[spec.activation.kind], ERR=_ERR[spec.error_function], HAS_VALUES=target.values is not None,
        HAS_WEIGHTS=target.weights is not None, IGNORE_ZERO=bool(target.ignore_zero), WRITE_DELTA=write_delta,
        HAS_SCALE=grad_scale is not None, BLOCK_N=min(BLOCK_N, max(16, triton.next_power_of_2(width))), BLOCK_T=BLOCK_T, num_warps=8)
    return loss, delta


def _is_seed(grad: torch.Tensor, seed: torch.Tensor) -> bool:
    """Whether grad is the 0-d seed broadcast unchanged (a view of its memory with zero strides,
    as the backward of sums and stacks passes it on): its values are then the seed's."""
    return (grad.dtype == seed.dtype and grad.device == seed.device and grad.data_ptr() == seed.data_ptr()
            and all(st == 0 or n == 1 for st, n in zip(grad.stride(), grad.shape)))


class _OutputLoss(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z, target: SparseBatch, spec: LossSpec, inplace: bool, grad_scale):
        write = ctx.needs_input_grad[0]
        inplace = inplace and write and z.stride(1) == 1
        loss, delta = output_loss_forward(z.detach(), target, spec, write_delta=write, inplace=inplace,
                                          grad_scale=grad_scale)
        if inplace:
            torch.autograd.graph.increment_version(z)  # z now holds the delta: flag any saved use of it
        ctx.delta, ctx.inplace, ctx.grad_scale = delta, inplace, grad_scale
        return loss if grad_scale is not None else loss.to(z.dtype)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_loss):
        delta = ctx.delta
        if delta is None:
            raise RuntimeError("output_loss: backward ran twice through a delta that was scaled in place; "
                               "call output_loss(..., inplace=False) to backpropagate more than once")
        if ctx.inplace:
            ctx.delta = None
        folded = ctx.grad_scale
        if folded is not None and _is_seed(grad_loss, folded):
            return delta, None, None, None, None  # the kernel wrote folded · delta: the final gradient
        scale = grad_loss if folded is None else grad_loss / folded
        scale = scale.to(delta.dtype)[:, None]
        if ctx.inplace:  # the delta lives in z's memory, which nothing else reads: scale it there
            return delta.mul_(scale), None, None, None, None
        return delta * scale, None, None, None, None


def output_loss(z: torch.Tensor, target: SparseBatch, spec: LossSpec, *, inplace: bool = False,
                grad_scale: torch.Tensor | None = None) -> torch.Tensor:
    """Per-example loss (B,) of an output layer with pre-activations z against sparse targets,
    differentiable in z: backward returns grad_loss[:, None] · delta.

    z: (B, N) fp32/bf16/fp16 (computed in fp32), bias already added. target: SparseBatch of B
    examples over N features, distinct features per example (padded or not). inplace: the delta
    overwrites z (z then holds ∂loss/∂z · weights; after backward, the gradient), and one
    backward is allowed. grad_scale: the 0-d float32 tensor s the caller seeds backward with
    (``ops.functional.output_loss``): the kernel writes s · delta and backward passes it on as
    is when the incoming gradient is s itself; the loss is then float32. Moves one read of z
    and one write of the delta (SoftMax: two reads), 3 × nnz scattered elements and B losses;
    ≈ 15 FLOPs and 2 transcendentals an element.
    """
    if grad_scale is not None and (grad_scale.numel() != 1 or grad_scale.device != z.device):
        raise ValueError(f"grad_scale must be one value on {z.device}; got {tuple(grad_scale.shape)} on "
                         f"{grad_scale.device}")
    return _OutputLoss.apply(z, target, spec, inplace, grad_scale)
