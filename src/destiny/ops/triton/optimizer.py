"""DSSTNE's seven optimizer updates fused: read w, the gradient and the state once, write w and
the state once (``destiny.train.optimizers.DsstneOptimizer._update`` is the spec).

With g = −gradient and, on regularised parameters, g' = g − λw − λ₁·sgn(w) and (decoupled
weight decay, AdamW's) w ← (1 − α·wd)·w before the update below adds to w (g' reads the w
before the decay):

    sgd       w += α·g'                          momentum  v = μv + α·g'; w += v
    nesterov  v' = μv + α·g'; w += v' + μ(v' − v); v = v'
    adagrad   v += g'²; w += α·g'/√max(1e-9, v)
    rmsprop   v = μv + (1−μ)g'²; w += α·g'/√max(1e-9, v)
    adadelta  s = μs + (1−μ)g'²; d = √(max(1e-9, v)/max(1e-9, s))·g'; v = μv + (1−μ)d²; w += d
    adam      m = μm + (1−μ)g'; s = μ₁s + (1−μ₁)g'²; w += α·(m/(1−μᵗ)) / (√(s/(1−μ₁ᵗ)) + 1e-8)

Two kernels share the formula: ``dense_kernel`` over the flat elements of any parameter (grad
None: g = 0), and ``rows_kernel`` over rows of a (rows, H) weight for a row-sparse gradient
(``ops.sparse.RowSparseGrad``): either only the gradient's rows (programs past its count, a
device value, do nothing), or every row, each taking its gradient row from a slot map
(−1: g = 0) — one pass that equals "g = 0 everywhere, then the rows". The state tensors are
passed in the order of ``destiny.train.optimizers._STATE``.

The step's changing scalars — α (scheduled and decayed: α·w·f / (1 + Decay·steps), the
warmup w and the schedule's factor f of ``destiny.train.schedule``) and Adam's bias corrections
1 − μᵗ, 1 − μ₁ᵗ — live in device memory: ``step_scalars`` computes them from a device step
counter (and advances it), and the update kernels read them. Nothing the host passes changes
from step to step, so a CUDA graph of the training step replays correctly.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from destiny.backend import TRITON_INTERPRET
from destiny.ops.sparse import RowSparseGrad

KINDS = ("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adadelta", "adam")
STATES = {"sgd": 0, "momentum": 1, "nesterov": 1, "adagrad": 1, "rmsprop": 1, "adadelta": 2, "adam": 2}
TILE = 8192 if TRITON_INTERPRET else 1024  # elements a program (the interpreter pays per program)


@triton.jit
def _step(w, g, s1, s2, lr, lam, lam1, wd, mu, mu1, one_minus_mu, one_minus_mu1, bias1, bias2,
          KIND: tl.constexpr, L2: tl.constexpr, L1: tl.constexpr, WD: tl.constexpr):
    """One update of fp32 tiles: w, DSSTNE's g (the negative gradient), states s1, s2."""
    if L2:
        g = g - lam * w
    if L1:
        g = g - lam1 * tl.where(w > 0, 1.0, tl.where(w < 0, -1.0, 0.0))
    if WD:  # decoupled weight decay, after g' read w
        w = w * (1.0 - lr * wd)
    if KIND == 0:  # SGD
        w = w + lr * g
    elif KIND == 1:  # Momentum
        s1 = s1 * mu + lr * g
        w = w + s1
    elif KIND == 2:  # Nesterov
        v = s1 * mu + lr * g
        w = w + (v + mu * (v - s1))
        s1 = v
    elif KIND == 3:  # AdaGrad
        s1 = s1 + g * g
        w = w + tl.div_rn(lr * g, tl.sqrt_rn(tl.maximum(s1, 1e-9)))
    elif KIND == 4:  # RMSProp
        s1 = s1 * mu + one_minus_mu * g * g
        w = w + tl.div_rn(lr * g, tl.sqrt_rn(tl.maximum(s1, 1e-9)))
    elif KIND == 5:  # AdaDelta: s1 = mean squares, s2 = mean updates; no learning rate
        s1 = s1 * mu + one_minus_mu * g * g
        d = tl.sqrt_rn(tl.div_rn(tl.maximum(s2, 1e-9), tl.maximum(s1, 1e-9))) * g
        s2 = s2 * mu + one_minus_mu * d * d
        w = w + d
    else:  # Adam: s1 = first moment, s2 = second moment
        s1 = s1 * mu + one_minus_mu * g
        s2 = s2 * mu1 + one_minus_mu1 * g * g
        w = w + tl.div_rn(lr * tl.div_rn(s1, bias1), tl.sqrt_rn(tl.div_rn(s2, bias2)) + 1e-8)
    return w, s1, s2


@triton.jit
def _int_pow(base, e):
    """base ** e for a float64 base and an int64 e ≥ 0, by squaring (a fixed function of both)."""
    result = base * 0.0 + 1.0
    for i in range(63):
        result = tl.where(((e >> i) & 1) != 0, result * base, result)
        base = base * base
    return result


@triton.jit
def _sin(x):
    """sin x for float64 x in [0, π/2]: its Taylor series to x¹⁹ (error < 1e-15), the same on
    every backend (no transcendental of the device's math library)."""
    x2 = x * x
    r = 1.0 - x2 / 342.0
    r = 1.0 - x2 / 272.0 * r
    r = 1.0 - x2 / 210.0 * r
    r = 1.0 - x2 / 156.0 * r
    r = 1.0 - x2 / 110.0 * r
    r = 1.0 - x2 / 72.0 * r
    r = 1.0 - x2 / 42.0 * r
    r = 1.0 - x2 / 20.0 * r
    r = 1.0 - x2 / 6.0 * r
    return x * r


@triton.jit
def _schedule(steps, const_ptr, SCHEDULE: tl.constexpr, WARMUP: tl.constexpr):
    """The warmup and schedule factor w·f of ``train.schedule.Schedule.factor`` after ``steps``
    updates (int64), in float64, from const[5:10] = (W, U, r, E, γ)."""
    s = steps.to(tl.float64)
    warm = tl.load(const_ptr + 5)
    after = tl.maximum(s - warm, 0.0)
    f = s * 0.0 + 1.0
    if SCHEDULE == 1 or SCHEDULE == 2:  # Linear, Cosine
        p = tl.minimum(after / tl.maximum(tl.load(const_ptr + 6) - warm, 1.0), 1.0)
        r = tl.load(const_ptr + 7)
        if SCHEDULE == 1:
            f = 1.0 - (1.0 - r) * p
        else:  # ½(1 + cos πp) = sin²(π(1 − p)/2)
            half = _sin((1.0 - p) * 1.5707963267948966)
            f = r + (1.0 - r) * (half * half)
    elif SCHEDULE == 3:  # Step: γ^⌊after / E⌋ (a quotient ≥ 0 truncates to its floor)
        f = _int_pow(tl.load(const_ptr + 9), (after / tl.load(const_ptr + 8)).to(tl.int64))
    if WARMUP:
        f = tl.where(s < warm, f * (s + 1.0) / warm, f)
    return f


@triton.jit
def scalars_kernel(scal_ptr, step_ptr, const_ptr, ADAM: tl.constexpr, OVERRIDE: tl.constexpr,
                   SCHEDULE: tl.constexpr, WARMUP: tl.constexpr):
    """From steps = step[0] (int64) and const = (α, Decay, μ, μ₁, α override, W, U, r, E, γ) in
    float64: scal = (lr, 1 − μᵗ, 1 − μ₁ᵗ) in float32 with t = steps + 1, lr = α·w·f / (1 +
    Decay·steps) (Decay 0: α·w·f; SCHEDULE: the kind's code, 0 Constant, 1 Linear, 2 Cosine,
    3 Step; WARMUP: W > 0; OVERRIDE: const[4]); then step[0] = steps + 1."""
    steps = tl.load(step_ptr)
    alpha = tl.load(const_ptr)
    decay = tl.load(const_ptr + 1)
    if OVERRIDE:
        lr = tl.load(const_ptr + 4)
    else:
        lr = tl.where(decay > 0, alpha / (1.0 + decay * steps.to(tl.float64)), alpha)
        if SCHEDULE != 0 or WARMUP:
            lr = lr * _schedule(steps, const_ptr, SCHEDULE, WARMUP)
    bias1 = alpha * 0.0 + 1.0
    bias2 = alpha * 0.0 + 1.0
    if ADAM:
        bias1 = 1.0 - _int_pow(tl.load(const_ptr + 2), steps + 1)
        bias2 = 1.0 - _int_pow(tl.load(const_ptr + 3), steps + 1)
    tl.store(scal_ptr, lr.to(tl.float32))
    tl.store(scal_ptr + 1, bias1.to(tl.float32))
    tl.store(scal_ptr + 2, bias2.to(tl.float32))
    tl.store(step_ptr, steps + 1)


@triton.jit
def dense_kernel(w_ptr, g_ptr, s1_ptr, s2_ptr, scal_ptr, n, lam, lam1, wd, mu, mu1, one_minus_mu, one_minus_mu1,
                 KIND: tl.constexpr, N_STATE: tl.constexpr, HAS_GRAD: tl.constexpr,
                 L2: tl.constexpr, L1: tl.constexpr, WD: tl.constexpr, BLOCK: tl.constexpr):
    """Elements [pid·BLOCK, (pid+1)·BLOCK) of flat w, grad and states; int64 offsets. scal:
    (lr, bias1, bias2) float32 in device memory."""
    lr = tl.load(scal_ptr)
    bias1 = tl.load(scal_ptr + 1)
    bias2 = tl.load(scal_ptr + 2)
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    ok = offs < n
    w = tl.load(w_ptr + offs, mask=ok, other=0.0).to(tl.float32)
    g = tl.zeros((BLOCK,), tl.float32)
    if HAS_GRAD:
        g = -tl.load(g_ptr + offs, mask=ok, other=0.0).to(tl.float32)
    s1 = tl.zeros((BLOCK,), tl.float32)
    s2 = tl.zeros((BLOCK,), tl.float32)
    if N_STATE >= 1:
        s1 = tl.load(s1_ptr + offs, mask=ok, other=0.0).to(tl.float32)
    if N_STATE >= 2:
        s2 = tl.load(s2_ptr + offs, mask=ok, other=0.0).to(tl.float32)
    w, s1, s2 = _step(w, g, s1, s2, lr, lam, lam1, wd, mu, mu1, one_minus_mu, one_minus_mu1, bias1, bias2,
                      KIND, L2, L1, WD)
    tl.store(w_ptr + offs, w.to(w_ptr.dtype.element_ty), mask=ok)
    if N_STATE >= 1:
        tl.store(s1_ptr + offs, s1.to(s1_ptr.dtype.element_ty), mask=ok)
    if N_STATE >= 2:
        tl.store(s2_ptr + offs, s2.to(s2_ptr.dtype.element_ty), mask=ok)


@triton.jit
def rows_kernel(w_ptr, val_ptr, rows_ptr, slot_ptr, s1_ptr, s2_ptr, scal_ptr, count_ptr, n_rows, H,
                lam, lam1, wd, mu, mu1, one_minus_mu, one_minus_mu1,
                KIND: tl.constexpr, N_STATE: tl.constexpr, ALL_ROWS: tl.constexpr,
                L2: tl.constexpr, L1: tl.constexpr, WD: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_H: tl.constexpr):
    """A (BLOCK_R, BLOCK_H) tile of a row-major (rows, H) weight and its states. ALL_ROWS: tile
    rows are weight rows r < n_rows, gradient row slot[r] (−1: none). Else: tile rows are the
    gradient's entries i < count[0] (of n_rows slots), weight row rows[i], gradient row i.
    Offsets are int64."""
    r = tl.program_id(0).to(tl.int64) * BLOCK_R + tl.arange(0, BLOCK_R)
    if ALL_ROWS:
        r_ok = r < n_rows
    else:
        r_ok = (r < n_rows) & (r < tl.load(count_ptr))
    lr = tl.load(scal_ptr)
    bias1 = tl.load(scal_ptr + 1)
    bias2 = tl.load(scal_ptr + 2)
    cols = tl.program_id(1) * BLOCK_H + tl.arange(0, BLOCK_H)
    ok = r_ok[:, None] & (cols < H)[None, :]
    if ALL_ROWS:
        row = r
        src = tl.load(slot_ptr + r, mask=r_ok, other=-1).to(tl.int64)
        g_ok = ok & (src >= 0)[:, None]
    else:
        row = tl.load(rows_ptr + r, mask=r_ok, other=0).to(tl.int64)
        src = r
        g_ok = ok
    offs = row[:, None] * H + cols[None, :]
    g = -tl.load(val_ptr + src[:, None] * H + cols[None, :], mask=g_ok, other=0.0).to(tl.float32)
    w = tl.load(w_ptr + offs, mask=ok, other=0.0).to(tl.float32)
    s1 = tl.zeros((BLOCK_R, BLOCK_H), tl.float32)
    s2 = tl.zeros((BLOCK_R, BLOCK_H), tl.float32)
    if N_STATE >= 1:
        s1 = tl.load(s1_ptr + offs, mask=ok, other=0.0).to(tl.float32)
    if N_STATE >= 2:
        s2 = tl.load(s2_ptr + offs, mask=ok, other=0.0).to(tl.float32)
    w, s1, s2 = _step(w, g, s1, s2, lr, lam, lam1, wd, mu, mu1, one_minus_mu, one_minus_mu1, bias1, bias2,
                      KIND, L2, L1, WD)
    tl.store(w_ptr + offs, w.to(w_ptr.dtype.element_ty), mask=ok)
    if N_STATE >= 1:
        tl.store(s1_ptr + offs, s1.to(s1_ptr.dtype.element_ty), mask=ok)
    if N_STATE >= 2:
        tl.store(s2_ptr + offs, s2.to(s2_ptr.dtype.element_ty), mask=ok)


N_CONSTS = 10  # (α, Decay, μ, μ₁, α override, W, U, r, E, γ)


def step_scalars(scalars: torch.Tensor, steps: torch.Tensor, consts: torch.Tensor, *, adam: bool,
                 override: bool = False, schedule: int = 0, warmup: bool = False) -> None:
    """One launch: scalars (3,) float32 ← (lr, 1 − μᵗ, 1 − μ₁ᵗ) from the device step counter
    steps (0-d int64, then advanced by one) and consts (10,) float64 = (α, Decay, μ, μ₁, α
    override, then ``train.schedule.Schedule.constants()``: W, U, r, E, γ). schedule: the
    ScheduleKind's integer (0 Constant); warmup: W > 0. The update kernels of this step read
    scalars."""
    if consts.numel() != N_CONSTS:
        raise ValueError(f"step_scalars reads {N_CONSTS} constants, got {consts.numel()}")
    scalars_kernel[(1,)](scalars, steps, consts, ADAM=adam, OVERRIDE=override, SCHEDULE=int(schedule),
                         WARMUP=bool(warmup), num_warps=1)


def _scalars(kind: str, lam: float, lam1: float, wd: float, mu: float, mu1: float) -> dict:
    """The constant kernel scalars; (1 − μ) in double, as the torch formula does."""
    return dict(lam=float(lam), lam1=float(lam1), wd=float(wd), mu=float(mu), mu1=float(mu1),
                one_minus_mu=1.0 - mu, one_minus_mu1=1.0 - mu1)


def _check(kind: str, w: torch.Tensor, states: tuple[torch.Tensor, ...]) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown optimizer {kind!r}; one of {', '.join(KINDS)}")
    if len(states) != STATES[kind]:
        raise ValueError(f"{kind} keeps {STATES[kind]} state tensors, got {len(states)}")
    for tensor in (w, *states):
        if not tensor.is_contiguous() or tensor.shape != w.shape:
            raise ValueError("the fused optimizer needs contiguous state tensors shaped like the parameter")


def _state_args(states: tuple[torch.Tensor, ...], w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return (states[0] if states else w), (states[1] if len(states) > 1 else w)


def fused_update(kind: str, w: torch.Tensor, states: tuple[torch.Tensor, ...], grad: torch.Tensor | None, *,
                 scalars: torch.Tensor, lam: float = 0.0, lam1: float = 0.0, wd: float = 0.0, mu: float = 0.0,
                 mu1: float = 0.0) -> None:
    """One update of w and its states in place, from a dense gradient (None: zero).

    w: any shape, contiguous, fp32 (or bf16/fp16, updated in fp32); states: contiguous, like w;
    grad: like w (any float dtype) or None. scalars: (3,) float32 on w's device, (lr, 1 − μᵗ,
    1 − μ₁ᵗ) (``step_scalars``). lam, lam1, wd (decoupled weight decay): 0 on unregularised
    parameters. Moves
    (2 + 2·states + 1) · numel elements, ~10 FLOPs an element.
    """
    _check(kind, w, states)
    n = w.numel()
    if n == 0:
        return
    if grad is not None:
        grad = grad.contiguous()
    s1, s2 = _state_args(states, w)
    block = TILE
    dense_kernel[(triton.cdiv(n, block),)](
        w, w if grad is None else grad, s1, s2, scalars, n, **_scalars(kind, lam, lam1, wd, mu, mu1),
        KIND=KINDS.index(kind), N_STATE=len(states), HAS_GRAD=grad is not None, L2=lam != 0, L1=lam1 != 0,
        WD=wd != 0, BLOCK=block, num_warps=4)


def fused_sparse_update(kind: str, w: torch.Tensor, states: tuple[torch.Tensor, ...], grad: RowSparseGrad, *,
                        all_rows: bool, scalars: torch.Tensor, lam: float = 0.0, lam1: float = 0.0, wd: float = 0.0,
                        mu: float = 0.0, mu1: float = 0.0) -> None:
    """One update of a (R, H) weight from a row-sparse gradient, in place; no host sync.

    grad: U = grad.count (a device value) distinct rows of the first entries of grad.features
    (capacity C) and their gradient rows grad.rows (C, H). all_rows: also update every other row
    with g = 0 (needed unless the update is the identity there, i.e. SGD and AdaGrad without λ,
    λ₁ and weight decay wd); one pass over all R rows, through an (R,) int32/int64 slot map. Else only the U rows
    (a grid over the capacity; programs past U do nothing). Moves (2 + 2·states)·R·H + U·H
    elements (all_rows) or (3 + 2·states)·U·H (rows only).
    """
    from destiny.ops.triton.row_sparse import slot_map

    _check(kind, w, states)
    if w.dim() != 2:
        w2, states = w.view(w.shape[0], -1), tuple(s.view(w.shape[0], -1) for s in states)
    else:
        w2 = w
    n_rows, width = w2.shape
    values = grad.rows.contiguous().view(grad.capacity, -1)
    s1, s2 = _state_args(states, w2)
    if all_rows:
        slot = slot_map(grad, n_rows)
        count = n_rows
    else:
        slot = grad.features
        count = grad.capacity
    if count == 0 or width == 0:
        return
    block_h = max(16, min(256, triton.next_power_of_2(width)))
    block_r = max(1, TILE // block_h)
    grid = (triton.cdiv(count, block_r), triton.cdiv(width, block_h))
    rows_kernel[grid](w2, values, grad.features, slot, s1, s2, scalars, grad.count, count, width,
                      **_scalars(kind, lam, lam1, wd, mu, mu1),
                      KIND=KINDS.index(kind), N_STATE=len(states), ALL_ROWS=all_rows, L2=lam != 0, L1=lam1 != 0,
                      WD=wd != 0,
                      BLOCK_R=block_r, BLOCK_H=block_h, num_warps=4)
