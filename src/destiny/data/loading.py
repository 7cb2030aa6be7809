"""Whether a set of DSSTNE NetCDF files is read into memory or streamed from disk
(``choose_loading``): by the flags, the memory budget and the GPU's free memory."""

from __future__ import annotations

import os
from dataclasses import dataclass

from destiny.data.budget import BUDGET_SHARE, format_bytes, free_memory, in_memory_bytes, memory_budget


@dataclass(frozen=True)
class Loading:
    """Whether a set of files is read into memory or streamed, and why (``choose_loading``)."""

    stream: bool
    size: int  # bytes the sparse datasets would take in memory
    budget: int  # host bytes the data may hold
    reason: str

    def describe(self) -> str:
        how = "Streaming from disk" if self.stream else "Reading into memory"
        return f"{how}: {self.reason}"


def choose_loading(paths, *, stream: bool | None = None, budget: str | int | None = None,
                   device=None) -> Loading:
    """Stream when asked (``stream=True``), or when None and the files' datasets would take more
    than the memory budget (``memory_budget``), or, on a CUDA device, more than half of its
    free memory (the in-memory path holds the data on the device)."""
    from destiny.data.netcdf import inspect_netcdf

    seen, size = set(), 0
    for path in paths:
        key = os.path.abspath(os.fspath(path))
        if key not in seen:
            seen.add(key)
            size += sum(in_memory_bytes(info) for info in inspect_netcdf(path))
    cap = memory_budget(budget)
    if stream is not None:
        return Loading(bool(stream), size, cap, f"{format_bytes(size)} of data, "
                                                f"{'--stream' if stream else '--no-stream'} given")
    if size > cap:
        return Loading(True, size, cap, f"the data take {format_bytes(size)}, more than the memory budget of "
                                        f"{format_bytes(cap)}")
    gpu = _free_device_memory(device)
    if gpu is not None and size > gpu * BUDGET_SHARE:
        return Loading(True, size, cap, f"the data take {format_bytes(size)}, more than half of the "
                                        f"{format_bytes(gpu)} free on the GPU")
    return Loading(False, size, cap, f"the data take {format_bytes(size)}, within the memory budget of "
                                     f"{format_bytes(cap)}")


def _free_device_memory(device) -> int | None:
    """Free bytes of a CUDA device (None for the CPU, no device or no CUDA)."""
    if device is None:
        return None
    import torch

    device = torch.device(device)
    if device.type != "cuda" or not torch.cuda.is_available():
        return None
    return free_memory(device)
