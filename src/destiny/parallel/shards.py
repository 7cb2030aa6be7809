"""Which units of a layer each process holds: DSSTNE's split, pure arithmetic.

Rank r of P holds units [⌊n·r/P⌋, ⌊n·(r+1)/P⌋) of an n-unit layer (reference/dsstne.md §7,
``NNLayer``'s ``_minX``/``_maxX``): the shards are contiguous, cover 0..n−1 exactly once, and
differ in size by at most one, so n need not be divisible by P (a shard may be empty when
n < P).
"""

from __future__ import annotations


def shard_bounds(n: int, world: int, rank: int) -> tuple[int, int]:
    """(lo, hi): the units [lo, hi) of an n-unit layer that ``rank`` of ``world`` holds."""
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"rank {rank} is not a rank of a world of {world} processes")
    if n < 0:
        raise ValueError(f"a layer cannot have {n} units")
    return n * rank // world, n * (rank + 1) // world


def all_bounds(n: int, world: int) -> list[tuple[int, int]]:
    """The bounds of every rank, in rank order."""
    return [shard_bounds(n, world, r) for r in range(world)]


def shard_sizes(n: int, world: int) -> list[int]:
    """The number of units of every rank, in rank order (they sum to n)."""
    return [hi - lo for lo, hi in all_bounds(n, world)]


__all__ = ["all_bounds", "shard_bounds", "shard_sizes"]
