"""Collectives of a model-parallel layer as conjugate autograd pairs (Megatron-LM's
``tensor_parallel/mappings.py``), along the unit axis (the last) of (batch, units) tensors
whose units are split by ``shard_bounds`` — uneven shards included:

    gather_units          forward: all-gather        backward: reduce-scatter
    reduce_scatter_units  forward: reduce-scatter    backward: all-gather
    all_reduce            forward: all-reduce        backward: all-reduce

Why these pairs: every rank's autograd graph differentiates its own part of the loss (the loss
of its output units, its hidden units' penalties), and the loss is the sum of those parts. An
all-gathered activation feeds every rank's part, so its gradient is the sum over ranks of
their gradients, of which each rank needs its own units: a reduce-scatter. A reduce-scattered
sum of partial products hands rank q the units q of every rank's partial, so the gradient of
a partial is every rank's gradient, gathered. A replicated all-reduced value (SoftMax's row
sums) feeds every part: its gradient is the all-reduced gradient.

Deterministic by construction, whatever the backend: a reduce-scatter is an all-to-all (pure
data movement, the bytes of a ring reduce-scatter) followed by a local sum **in rank order**
(p₀ + p₁) + p₂ …, and an all-reduce is an all-gather followed by the same ordered sum, so a
run repeats bit for bit and every rank holds the same bits. (gloo has had reduce_scatter since
torch 2.x, but neither its nor NCCL's summation order is specified.) Shards are padded to
the largest one for the exchange and trimmed after.

At world size 1 every function returns its input unchanged (the identity, same tensor), so
one code path serves 1 and N processes. The process group is passed explicitly (a ``World``);
layers never call torch.distributed themselves.
"""

from __future__ import annotations

import numpy as np
import torch

from destiny.parallel.groups import World


def _dist():
    import torch.distributed as dist

    return dist


def _gather_stacked(x: torch.Tensor, world: World) -> torch.Tensor:
    """(P, *x.shape): every rank's x, in rank order (an all-gather into one tensor; gloo wants
    the output concatenated along the first axis, so it is allocated flat and viewed)."""
    x = x.contiguous()
    flat = x.reshape(1) if x.dim() == 0 else x
    out = flat.new_empty(world.size * flat.shape[0], *flat.shape[1:])
    dist = _dist()
    gather = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor  # renamed in torch 2.12
    gather(out, flat, group=world.group)
    return out.view(world.size, *x.shape)


# -- the exchanges (no autograd) --------------------------------------------------------------


def _all_gather_units(x: torch.Tensor, world: World, n: int) -> torch.Tensor:
    """(…, u_r) shards → (…, n) on every rank."""
    bounds = world.all_bounds(n)
    sizes = [hi - lo for lo, hi in bounds]
    widest = max(sizes)
    mine = sizes[world.rank]
    if x.shape[-1] != mine:
        raise ValueError(f"rank {world.rank} holds {x.shape[-1]} units of a {n}-unit layer, not {mine}")
    if mine == widest:
        send = x.contiguous()
    else:
        send = x.new_zeros(*x.shape[:-1], widest)
        send[..., :mine] = x
    out = _gather_stacked(send, world)  # (P, …, widest)
    if min(sizes) == widest:  # even shards: one permute-copy
        return out.movedim(0, -2).reshape(*x.shape[:-1], n)
    return torch.cat([out[q, ..., :size] for q, size in enumerate(sizes)], dim=-1)


def _reduce_scatter_units(x: torch.Tensor, world: World, n: int) -> torch.Tensor:
    """(…, n) partial sums → (…, u_r): this rank's units of the sum over ranks, summed in rank
    order (all-to-all, then a local ordered sum)."""
    return _start_reduce_scatter_units(x, world, n)()


def _start_reduce_scatter_units(x: torch.Tensor, world: World, n: int):
    """``_reduce_scatter_units`` in two halves: this starts the exchange (asynchronous: the
    GPU's own work goes on meanwhile) and returns the function that waits for it and sums."""
    if x.shape[-1] != n:
        raise ValueError(f"a reduce-scatter over a {n}-unit layer got {x.shape[-1]} units")
    bounds = world.all_bounds(n)
    sizes = [hi - lo for lo, hi in bounds]
    widest = max(sizes)
    lead = x.shape[:-1]
    if min(sizes) == widest:  # even shards: one permute-copy
        send = x.reshape(*lead, world.size, widest).movedim(-2, 0).contiguous()
    else:
        send = x.new_empty(world.size, *lead, widest)
        for q, (lo, hi) in enumerate(bounds):
            send[q, ..., :hi - lo] = x[..., lo:hi]
    recv = torch.empty_like(send)
    work = _dist().all_to_all_single(recv, send, group=world.group, async_op=True)
    mine = sizes[world.rank]

    def finish() -> torch.Tensor:
        work.wait()
        return _ordered_sum(recv, mine)

    return finish


def _ordered_sum(stack: torch.Tensor, width: int | None = None) -> torch.Tensor:
    """stack[0] + stack[1] + … in rank order (half precision accumulates in float32), trimmed
    to ``width`` units on the last axis."""
    parts = stack if width is None else stack[..., :width]
    dtype = stack.dtype
    acc_dtype = torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype
    acc = parts[0].to(acc_dtype, copy=True).contiguous()
    for q in range(1, stack.shape[0]):
        acc += parts[q]
    return acc if acc_dtype == dtype else acc.to(dtype)


def _all_reduce_ordered(x: torch.Tensor, world: World) -> torch.Tensor:
    return _ordered_sum(_gather_stacked(x, world))


# -- the autograd pairs -----------------------------------------------------------------------


class _GatherUnits(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, world, n):
        ctx.world, ctx.n = world, n
        return _all_gather_units(x, world, n)

    @staticmethod
    def backward(ctx, grad):
        return _reduce_scatter_units(grad.contiguous(), ctx.world, ctx.n), None, None


class _ReduceScatterUnits(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, world, n):
        ctx.world, ctx.n = world, n
        return _reduce_scatter_units(x, world, n)

    @staticmethod
    def backward(ctx, grad):
        return _all_gather_units(grad.contiguous(), ctx.world, ctx.n), None, None


class _AllReduce(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, world):
        ctx.world = world
        return _all_reduce_ordered(x, world)

    @staticmethod
    def backward(ctx, grad):
        return _all_reduce_ordered(grad.contiguous(), ctx.world), None


class _GatheredLinear(torch.autograd.Function):
    """all-gather(x) @ w + b, whose backward overlaps the input gradient's reduce-scatter with
    the weight gradient's product: the exchange starts as soon as dx exists, dw and db are
    computed while it runs, then the exchange is summed. Separately (gather_units, then the
    product), autograd would compute dx and dw in one node and only then start the exchange."""

    @staticmethod
    def forward(ctx, x, w, b, world, n):
        full = _all_gather_units(x, world, n)
        ctx.world, ctx.n = world, n
        ctx.save_for_backward(full, w)
        ctx.has_bias = b is not None
        return torch.mm(full, w) if b is None else torch.addmm(b, full, w)

    @staticmethod
    def backward(ctx, grad):
        full, w = ctx.saved_tensors
        grad = grad.contiguous()
        finish = None
        if ctx.needs_input_grad[0]:
            finish = _start_reduce_scatter_units(torch.mm(grad, w.t()), ctx.world, ctx.n)
        grad_w = torch.mm(full.t(), grad) if ctx.needs_input_grad[1] else None
        grad_b = grad.sum(0) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return (finish() if finish is not None else None), grad_w, grad_b, None, None


def gathered_linear(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, world: World,
                    n: int) -> torch.Tensor:
    """gather_units(x, world, n) @ w (+ b) with the backward's exchange overlapped (see
    ``_GatheredLinear``): for a matrix split by output columns whose gathered input feeds
    nothing else. Plain products (no autocast, no padding: the caller decides). At world size
    1: x @ w (+ b)."""
    if not world.parallel:
        return torch.mm(x, w) if b is None else torch.addmm(b, x, w)
    return _GatheredLinear.apply(x, w, b, world, n)


def gather_units(x: torch.Tensor, world: World, n: int) -> torch.Tensor:
    """All the units of a sharded activation on every rank.

    forward: all-gather (…, u_r) → (…, n), shards in rank order; backward: reduce-scatter —
    the gradient summed over ranks (in rank order), this rank's units. Identity at world size 1.
    Moves (P−1)·batch·max(u_q) elements into each rank."""
    if not world.parallel:
        return x
    return _GatherUnits.apply(x, world, n)


def reduce_scatter_units(x: torch.Tensor, world: World, n: int) -> torch.Tensor:
    """This rank's units of the sum over ranks of partial results.

    forward: reduce-scatter (…, n) → (…, u_r), summed in rank order (all-to-all + local sum:
    deterministic); backward: all-gather. Identity at world size 1."""
    if not world.parallel:
        return x
    return _ReduceScatterUnits.apply(x, world, n)


def all_reduce(x: torch.Tensor, world: World) -> torch.Tensor:
    """The sum over ranks of x (same shape on every rank), the same bits on every rank.

    forward: all-reduce (all-gather + sum in rank order); backward: all-reduce. Identity at
    world size 1. For small tensors (per-example sums, per-unit norms)."""
    if not world.parallel:
        return x
    return _AllReduce.apply(x, world)


# -- host-side helpers (no autograd) ----------------------------------------------------------


def all_reduce_max(x: torch.Tensor, world: World) -> torch.Tensor:
    """Elementwise maximum over ranks (exact, so order-free); not differentiable."""
    if not world.parallel:
        return x
    out = x.detach().clone().contiguous()
    _dist().all_reduce(out, op=_dist().ReduceOp.MAX, group=world.group)
    return out


def all_gather_stack(x: torch.Tensor, world: World) -> torch.Tensor:
    """(P, *x.shape): every rank's x in rank order (same shape everywhere); not differentiable."""
    if not world.parallel:
        return x.unsqueeze(0)
    return _gather_stacked(x.detach(), world)


def sum_float(value: float, world: World) -> float:
    """A host float summed over ranks in rank order (float64); the same on every rank."""
    if not world.parallel:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=world.device)
    return float(_all_reduce_ordered(t, world)[0])


def broadcast_object(obj, world: World, src: int = 0):
    """rank ``src``'s picklable object, on every rank."""
    if not world.parallel:
        return obj
    box = [obj]
    _dist().broadcast_object_list(box, src=src, group=world.group,
                                  device=world.device if world.device.type == "cuda" else None)
    return box[0]


def barrier(world: World) -> None:
    if world.parallel:
        if world.device.type == "cuda":
            _dist().barrier(group=world.group, device_ids=[world.device.index])
        else:
            _dist().barrier(group=world.group)


def gather_to_root(piece: torch.Tensor, world: World, dim: int, n: int, dtype=np.float32) -> np.ndarray | None:
    """The full array on rank 0 (a host numpy array, float32 by default) from every rank's
    ``piece``, the shard ``shard_bounds(n, …)`` of axis ``dim``; None on the other ranks.
    One shard at a time crosses to rank 0's device and then to its host memory, so rank 0 needs
    the full array's host memory but only one shard's device memory."""
    piece = piece.detach()
    if not world.parallel:
        return _host(piece, dtype)
    dist = _dist()
    bounds = world.all_bounds(n)
    dim = dim % piece.dim()
    if world.rank != 0:
        if piece.numel():
            dist.send(piece.contiguous(), dst=0, group=world.group)
        return None
    shape = list(piece.shape)
    shape[dim] = n
    full = np.empty(shape, dtype=dtype)
    for q, (lo, hi) in enumerate(bounds):
        if q == 0:
            part = piece
        else:
            part_shape = list(piece.shape)
            part_shape[dim] = hi - lo
            part = piece.new_empty(part_shape)
            if part.numel():
                dist.recv(part, src=q, group=world.group)
        index = [slice(None)] * len(shape)
        index[dim] = slice(lo, hi)
        full[tuple(index)] = _host(part, dtype)
    return full


def _host(t: torch.Tensor, dtype) -> np.ndarray:
    t = t.detach().to("cpu")
    if t.dtype in (torch.bfloat16, torch.float16):
        t = t.float()
    return t.numpy().astype(dtype, copy=False)


__all__ = ["all_gather_stack", "all_reduce", "all_reduce_max", "barrier", "broadcast_object", "gather_to_root",
           "gather_units", "reduce_scatter_units", "sum_float"]
