"""``--stream`` and ``--memory-budget``: read datasets into memory, or stream them from disk
when they would not fit (``destiny.data.stream``), for ``destiny train`` and ``destiny predict``."""

from __future__ import annotations

import argparse


def add_memory_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--stream", action=argparse.BooleanOptionalAction, default=None,
                   help="read the sparse datasets from disk batch by batch, prefetched in the background, instead "
                        "of holding them in memory (same results, bit for bit); default: stream when the data "
                        "would take more than the memory budget, or more than half the free GPU memory")
    p.add_argument("--memory-budget", metavar="SIZE",
                   help="host memory the data may hold, such as 2GB or 512MiB (default: $DESTINY_MEMORY_BUDGET, "
                        "else half of the memory available)")


def load_datasets(groups: list[list[str]], args: argparse.Namespace, device, say) -> list[dict | None]:
    """The datasets of each group of files (an empty group gives None), in memory or streaming
    as ``--stream``/``--memory-budget`` decide for all groups together; ``say`` prints the choice
    when the data stream."""
    from destiny.cli.train import read_datasets
    from destiny.data.budget import memory_budget
    from destiny.data.loading import choose_loading
    from destiny.data.stream import open_files

    paths = [path for group in groups for path in group]
    budget = memory_budget(args.memory_budget)
    loading = choose_loading(paths, stream=args.stream, budget=budget, device=device)
    if not loading.stream:
        return [read_datasets(group) if group else None for group in groups]
    say(loading.describe())
    share = [sum(_size(path) for path in group) for group in groups]
    total = max(1, sum(share))
    return [open_files(group, max(1, budget * part // total)) if group else None for group, part in zip(groups, share)]


def _size(path: str) -> int:
    from destiny.data.netcdf import inspect_netcdf
    from destiny.data.budget import in_memory_bytes

    return sum(in_memory_bytes(info) for info in inspect_netcdf(path) if info.sparse)
