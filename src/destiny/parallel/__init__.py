"""Model parallelism over N processes (one GPU each), from the same JSON (DSSTNE's §7):

- ``shards``: ``shard_bounds(n, world, rank)``, DSSTNE's uneven split ⌊n·r/P⌋ … ⌊n·(r+1)/P⌋;
- ``groups``: ``World`` (rank, size, process group, device), ``init_from_environment()`` for
  torchrun, Open MPI and MPICH launches, ``World.single()`` for one process;
- ``plan``: which matrices are split by output columns (input all-gathered) and which by
  input rows (output reduce-scattered);
- ``collectives``: the conjugate autograd pairs (all-gather ⇔ reduce-scatter, all-reduce ⇔
  all-reduce), deterministic (sums in rank order), the identity at world size 1.

``destiny.nn.Network(world=…)`` holds one rank's shards and runs them; ``Trainer`` and
``destiny.predict`` follow. Layers never call torch.distributed themselves: only this package does.
"""

from destiny.parallel.collectives import (all_gather_stack, all_reduce, all_reduce_max, barrier, broadcast_object,
                                          gather_to_root, gather_units, gathered_linear, reduce_scatter_units,
                                          sum_float)
from destiny.parallel.groups import (LaunchEnv, World, environment_world_size, holds_collective_graphs,
                                     init_from_environment, launch_env, shutdown)
from destiny.parallel.plan import INPUT, OUTPUT, MatrixShard, layer_bounds, plan_matrices, split_rule
from destiny.parallel.shards import all_bounds, shard_bounds, shard_sizes

__all__ = ["INPUT", "OUTPUT", "LaunchEnv", "MatrixShard", "World", "all_bounds", "all_gather_stack", "all_reduce",
           "all_reduce_max", "barrier", "broadcast_object", "environment_world_size", "gather_to_root",
           "gather_units", "gathered_linear", "holds_collective_graphs", "init_from_environment", "launch_env",
           "layer_bounds", "plan_matrices", "reduce_scatter_units", "shard_bounds", "shard_sizes", "shutdown",
           "split_rule", "sum_float"]
