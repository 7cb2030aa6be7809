"""The processes of a model-parallel run: who am I, how many are we, which device is mine.

One process a GPU (DSSTNE's one MPI rank a GPU), started by any of:

- ``torchrun --nproc-per-node N -m destiny train …`` (one node; ``--nnodes``/``--rdzv-endpoint``
  for several): RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT;
- ``mpirun -np N destiny train …`` with Open MPI: OMPI_COMM_WORLD_RANK/SIZE/LOCAL_RANK;
- MPICH / Intel MPI (Hydra): PMI_RANK, PMI_SIZE, MPI_LOCALRANKID.

Under mpirun nobody sets the rendezvous address: MASTER_ADDR/MASTER_PORT default to
127.0.0.1:29500, which is right on one node; on several nodes export MASTER_ADDR (the first
rank's host) to every rank (``mpirun -x MASTER_ADDR=host0 …``). The backend is NCCL on CUDA,
gloo on CPU (how the tests run N processes without a GPU).
"""

from __future__ import annotations

import os
import weakref
from dataclasses import dataclass, field
from typing import Any

import torch

from destiny.parallel.shards import all_bounds, shard_bounds

DEFAULT_MASTER = ("127.0.0.1", "29500")


@dataclass(frozen=True)
class World:
    """The processes that share a model: this one is ``rank`` of ``size``; ``group`` is their
    torch.distributed process group (None for one process); ``device`` this process's device."""

    rank: int = 0
    size: int = 1
    group: Any = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    local_rank: int = 0

    @classmethod
    def single(cls, device: torch.device | str = "cpu") -> "World":
        """One process: every collective is the identity."""
        return cls(0, 1, None, torch.device(device), 0)

    @property
    def parallel(self) -> bool:
        return self.size > 1

    @property
    def is_root(self) -> bool:
        return self.rank == 0

    def bounds(self, n: int) -> tuple[int, int]:
        """This rank's units [lo, hi) of an n-unit layer (``shard_bounds``)."""
        return shard_bounds(n, self.size, self.rank)

    def all_bounds(self, n: int) -> list[tuple[int, int]]:
        return all_bounds(n, self.size)

    def __repr__(self) -> str:
        return f"World(rank={self.rank}, size={self.size}, device={self.device})"


@dataclass(frozen=True)
class LaunchEnv:
    """What a launcher told this process: rank, size, local rank and which launcher."""

    rank: int
    size: int
    local_rank: int
    launcher: str


def _int(name: str) -> int | None:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return None
    try:
        return int(value)
    except ValueError:
        from destiny.errors import UsageError

        raise UsageError(f"the environment variable {name}={value!r} is not an integer; "
                         "it is set by the launcher (torchrun, mpirun)") from None


def launch_env() -> LaunchEnv | None:
    """The launcher's variables (torchrun first, then Open MPI, then MPICH/PMI), or None."""
    for launcher, rank_var, size_var, local_vars in (
            ("torchrun", "RANK", "WORLD_SIZE", ("LOCAL_RANK",)),
            ("Open MPI", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", ("OMPI_COMM_WORLD_LOCAL_RANK",)),
            ("MPICH/PMI", "PMI_RANK", "PMI_SIZE", ("MPI_LOCALRANKID", "PMI_LOCAL_RANK", "SLURM_LOCALID"))):
        size = _int(size_var)
        if size is None:
            continue
        rank = _int(rank_var) or 0
        local = next((v for v in map(_int, local_vars) if v is not None), None)
        if local is None:  # one GPU a process, ranks packed node by node
            gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
            local = rank % gpus if gpus else 0
        return LaunchEnv(rank, size, local, launcher)
    return None


def environment_world_size() -> int:
    """How many processes the launcher started (1 without a launcher)."""
    env = launch_env()
    return env.size if env is not None else 1


def _device_for(device: torch.device | str | None, local_rank: int, parallel: bool) -> torch.device:
    from destiny.backend import HAS_CUDA, resolve_device

    if device is None or (isinstance(device, str) and device == "auto"):
        device = "cuda" if HAS_CUDA else "cpu"
    dev = resolve_device(device)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", local_rank if parallel else torch.cuda.current_device())
    return dev


def init_from_environment(device: torch.device | str | None = "auto", *, backend: str | None = None,
                          timeout_s: float | None = None) -> World:
    """The World of this process from the launcher's environment variables: ``World.single``
    when no launcher says there are several processes; otherwise the default process group
    (initialised here unless it already is): NCCL for a CUDA device (cuda:LOCAL_RANK), gloo on
    CPU. device: auto, cpu, cuda or cuda:N."""
    import torch.distributed as dist

    env = launch_env()
    if env is None or env.size <= 1:
        return World.single(_device_for(device, 0, False))
    from destiny.errors import UsageError

    if not 0 <= env.rank < env.size:
        raise UsageError(f"{env.launcher} gave rank {env.rank} of {env.size} processes")
    dev = _device_for(device, env.local_rank, True)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        os.environ.setdefault("MASTER_ADDR", DEFAULT_MASTER[0])
        os.environ.setdefault("MASTER_PORT", DEFAULT_MASTER[1])
        kwargs = {}
        if timeout_s is not None:
            import datetime

            kwargs["timeout"] = datetime.timedelta(seconds=timeout_s)
        dist.init_process_group(backend or ("nccl" if dev.type == "cuda" else "gloo"), init_method="env://",
                                rank=env.rank, world_size=env.size, **kwargs)
    elif dist.get_world_size() != env.size or dist.get_rank() != env.rank:
        raise UsageError(f"torch.distributed is initialised as rank {dist.get_rank()} of {dist.get_world_size()}, "
                         f"but {env.launcher} says rank {env.rank} of {env.size}")
    return World(env.rank, env.size, dist.group.WORLD, dev, env.local_rank)


_GRAPH_HOLDERS: "weakref.WeakSet" = weakref.WeakSet()


def holds_collective_graphs(holder) -> None:
    """Register an object whose CUDA graphs captured NCCL collectives; ``shutdown`` calls its
    ``release_graphs()`` before the group goes. NCCL's communicator destruction waits until
    every graph that captured one of its collectives is destroyed (pytorch/pytorch#115388), so
    a live graph would hang the end of the run."""
    _GRAPH_HOLDERS.add(holder)


def shutdown(world: World) -> None:
    """Leave the process group (the end of a command); nothing for one process."""
    import torch.distributed as dist

    if world.parallel and dist.is_initialized():
        from destiny.parallel.collectives import barrier

        for holder in list(_GRAPH_HOLDERS):
            holder.release_graphs()
        barrier(world)  # nobody tears the group down while another still talks through it
        dist.destroy_process_group()
        import gc

        gc.collect()  # gloo's finished work objects go while the interpreter is whole (not at its teardown)


__all__ = ["LaunchEnv", "World", "environment_world_size", "holds_collective_graphs", "init_from_environment",
           "launch_env", "shutdown"]
