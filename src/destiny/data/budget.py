"""Memory budgets: sizes as people write them ('2GB', '512MiB'), the host memory available,
a device's free memory and the check of an estimate against it (``require_memory``: before
allocating), the budget data may hold (given, $DESTINY_MEMORY_BUDGET, or half of what is
available), a thread-safe ledger of the bytes held against it, and what a dataset costs read
whole."""

from __future__ import annotations

import contextlib
import os
import re
import threading

import numpy as np

from destiny.data.dataset import index_dtype
from destiny.data.layout import Attribute
from destiny.errors import UsageError

BUDGET_ENV = "DESTINY_MEMORY_BUDGET"
BUDGET_SHARE = 0.5  # of the host memory available, when no budget is given

_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([kmgt]?)(i?)b?\s*$", re.IGNORECASE)
_POWERS = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4}


def parse_bytes(text: str | int, what: str = "--memory-budget") -> int:
    """'2GB' → 2·10⁹, '512MiB' → 512·2²⁰, '1.5g' → 1.5·10⁹, '100000' → bytes."""
    if isinstance(text, (int, np.integer)):
        value = int(text)
    else:
        match = _SIZE.match(str(text))
        if match is None:
            raise UsageError(f"{what} {text!r}: give a size such as 2GB, 512MiB, 1.5G or a number of bytes")
        number, unit, binary = match.groups()
        value = int(float(number) * (1024 if binary else 1000) ** _POWERS[unit.lower()])
    if value <= 0:
        raise UsageError(f"{what} {text!r}: the size must be positive")
    return value


def format_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.3g} {unit}"
        n /= 1000
    return f"{n} B"


def available_memory() -> int | None:
    """Host memory available to new allocations (Linux MemAvailable, else free pages), bytes."""
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    with contextlib.suppress(AttributeError, ValueError, OSError):
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return None


def free_memory(device=None) -> int | None:
    """Bytes free for new allocations on ``device``: a CUDA device's free memory
    (``torch.cuda.mem_get_info``), else the host's available memory; None where it cannot be told."""
    import torch

    device = torch.device(device if device is not None else "cpu")
    if device.type != "cuda":
        return available_memory()
    try:
        return int(torch.cuda.mem_get_info(device)[0])
    except (RuntimeError, AssertionError, ValueError):  # no driver, or the device is not usable
        return None


def gib(nbytes: float) -> str:
    """Bytes as GiB for a message: '3.2', '476,837.2', '0.01'."""
    value = nbytes / 2**30
    return f"{value:,.1f}" if value >= 0.95 else f"{value:.2g}"


def require_memory(nbytes: int, what: str, device=None, fix: str = "") -> None:
    """ResourceError '``what`` needs about X GiB, Y GiB free on DEVICE; ``fix``' when ``nbytes``
    exceed the free memory of ``device`` (default the host), checked before allocating them."""
    import torch

    from destiny.errors import ResourceError

    free = free_memory(device)
    if free is None or nbytes <= free:
        return
    device = torch.device(device if device is not None else "cpu")
    where = f"on {device}" if device.type == "cuda" else "in this machine's memory"
    raise ResourceError(f"{what} needs about {gib(nbytes)} GiB, {gib(free)} GiB free {where}"
                        + (f"; {fix}" if fix else ""))


def memory_budget(budget: str | int | None = None) -> int:
    """The bytes data may hold: ``budget`` if given, else $DESTINY_MEMORY_BUDGET, else half of
    the host memory available now."""
    if budget is not None:
        return parse_bytes(budget)
    if os.environ.get(BUDGET_ENV):
        return parse_bytes(os.environ[BUDGET_ENV], f"${BUDGET_ENV}")
    free = available_memory()
    return int(free * BUDGET_SHARE) if free else 4 * 10**9


class Ledger:
    """Bytes held, now and at the peak; thread-safe. ``limit``: the budget (reported, and
    checked by ``take`` when ``strict``)."""

    def __init__(self, limit: int | None = None):
        self.limit = limit
        self.current = 0
        self.peak = 0
        self._lock = threading.Lock()

    def take(self, nbytes: int) -> None:
        with self._lock:
            self.current += int(nbytes)
            self.peak = max(self.peak, self.current)

    def give(self, nbytes: int) -> None:
        with self._lock:
            self.current -= int(nbytes)

    @contextlib.contextmanager
    def holding(self, nbytes: int):
        self.take(nbytes)
        try:
            yield
        finally:
            self.give(nbytes)


def in_memory_bytes(info) -> int:
    """What ``read_netcdf`` would hold for a dataset described by a ``DatasetInfo``."""
    n = info.n_examples
    weights = 4 * n if info.attributes & Attribute.WEIGHTED else 0
    if not info.sparse:
        return n * info.n_features * info.data_type.dtype.itemsize + weights
    values = 0 if info.attributes & Attribute.BOOLEAN else info.data_type.dtype.itemsize
    return (info.nnz or 0) * (index_dtype(info.n_features).itemsize + values) + 8 * (n + 1) + weights
