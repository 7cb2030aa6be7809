"""A streaming sparse dataset bound to a network layer: batches read from disk ahead of the
step that needs them, the same batches the in-memory path gathers.

``StreamingRows`` stands where ``ops.sparse.SparseRows`` stands for data in memory. An epoch's
example order is given to ``plan`` (``Binding.plan``, called by the step runner with the
epoch's order): a background thread cuts it into windows of consecutive batches that fit the
dataset's memory budget and reads each window (``StreamingSparseDataset.read_rows``: sorted,
merged slices of the file) while the steps of the window before it run; at most two windows
are held at once. ``stage`` (before each step) copies the batch's rows out of its window into
a device window — through a pinned buffer with a non-blocking copy on CUDA — whose tensors keep
their addresses, so a captured CUDA graph replays on each new batch; ``take`` then gathers the
padded or exact batch from that window with the very code the in-memory path runs
(``SparseRows.take``), so batches, and so training, are bitwise the same.

Examples asked for outside the plan (validation, ``Trainer.step`` on chosen examples) are read
on the spot, without prefetch.
"""

from __future__ import annotations

import functools
import queue
import threading
import weakref
from types import SimpleNamespace

import numpy as np
import torch

from destiny.data.budget import format_bytes
from destiny.errors import UsageError
from destiny.ops.sparse import SparseBatch, SparseRows

WINDOWS = 2  # windows held at once: the one being consumed and the one being read
PINNED_RING = 4  # pinned staging sets on CUDA: the host runs at most this many batches ahead of the copies
_POLL = 0.1  # seconds between checks of the stop flag while waiting


class StreamingRows:
    """A streaming dataset on one device (see the module docstring). ``source``: a
    ``StreamingSparseDataset`` (or anything with its ``read_rows``, ``lengths``, ``ledger``)."""

    def __init__(self, source, device: torch.device | str = "cpu", value_dtype: torch.dtype = torch.float32):
        self.source = source
        self.device = torch.device(device)
        self.value_dtype = value_dtype
        self.n_features = int(source.n_features)
        self.n_examples = int(source.n_examples)
        self.ignore_zero = bool(getattr(source, "ignore_zero", False))
        self.host_lengths = getattr(source, "lengths", None)  # (examples,) int64, no copy; needed to plan
        self.window: SparseRows | None = None  # the device window: the staged batch's rows
        self._window_bytes = 0
        self._local = None  # (batch,) int64 0..batch-1 on the device
        self._staged: np.ndarray | None = None  # the examples whose rows the window holds
        self._pinned: list | None = None
        self._prefetch: _Prefetch | None = None
        self._finalizer = None

    # -- what the binding and the step runner ask ------------------------------------------
    def batch_nnz(self, examples) -> int:
        return int(self.host_lengths[np.asarray(examples, dtype=np.int64)].sum())

    def plan(self, order: np.ndarray, batch_size: int) -> None:
        """Start reading the batches of ``order`` (batch_size examples each) in the background."""
        self.close()
        order = np.asarray(order, dtype=np.int64)
        with self.source.ledger.holding(24 * order.size):  # the plan's per-example temporaries
            window = self._window_entries(order, batch_size)
            self._prefetch = _Prefetch(self.source, order, batch_size, window)
        # the thread holds no reference to self: stop it when the binding is dropped mid-epoch
        self._finalizer = weakref.finalize(self, self._prefetch.stop)

    def stage(self, examples: np.ndarray, capacity: int | None) -> None:
        """Put the rows of ``examples`` (host numbers) in the device window: the prefetched
        batch when it is the plan's next one, else read now. capacity: the padded batch's slot
        count (the window holds at least that many entries), None for exact batches."""
        examples = np.asarray(examples, dtype=np.int64)
        rows = self._prefetch.next(examples) if self._prefetch is not None else None
        if rows is None:
            rows = self.source.read_rows(examples)
        self._fill(rows, capacity)
        self._staged = examples.copy()
        if self._prefetch is not None:
            self._prefetch.consumed()

    def take(self, examples: torch.Tensor, capacity: int | None = None) -> SparseBatch:
        """The batch of ``examples`` (an int64 tensor), gathered from the device window like
        ``SparseRows.take`` gathers it from a whole dataset. A padded batch (capacity given)
        comes from the staged window; an exact one is read now unless it is the staged batch."""
        n = examples.numel()
        if capacity is None:
            staged = self._staged
            host = examples.detach().cpu().numpy()  # a host sync on CUDA (exact batches only)
            if staged is None or not np.array_equal(staged, host):  # read now, into its own rows:
                # the staged window keeps its tensors for the captured step
                rows = SparseRows(self.source.read_rows(host), self.device, self.value_dtype)
                return rows.take(torch.arange(n, device=self.device))
        elif self.window is None or self._staged is None or self._staged.size != n:
            raise UsageError("a padded batch of streaming data was asked for before its examples were staged; "
                             "call Binding.stage(examples, capacity) before Binding.batch")
        return self.window.take(self._local[:n], capacity)

    def close(self) -> None:
        """Stop the background reads and drop their windows."""
        if self._finalizer is not None:
            self._finalizer()  # stops the prefetch, once
            self._finalizer = self._prefetch = None

    @property
    def held_bytes(self) -> int:
        """Host bytes of the device window and staging buffers (0 for a window on a GPU)."""
        return self._window_bytes

    # -- the device window ---------------------------------------------------------------------
    def _fill(self, rows, capacity: int | None) -> None:
        b, nnz = rows.n_examples, rows.nnz
        need_entries = max(nnz, capacity or 0, 1)
        if self.window is None or len(self.window.offsets) < b + 1 or self.window.indices.numel() < need_entries:
            self._allocate(max(b, 1), need_entries, rows)
        w = self.window
        arrays = [(w.offsets[:b + 1], rows.offsets), (w.indices[:nnz], rows.indices)]
        if w.values is not None:
            arrays.append((w.values[:nnz], rows.values))
        if w.weights is not None:
            arrays.append((w.weights[:b], rows.weights))
        if self.device.type == "cuda":
            self._upload(arrays)
        else:
            for dst, src in arrays:
                dst.copy_(torch.from_numpy(np.ascontiguousarray(src)))

    def _allocate(self, batch: int, entries: int, rows) -> None:
        """A device window of ``batch`` examples and ``entries`` slots (its tensors keep their
        addresses until a larger batch needs a larger window, which also means a new graph)."""
        if self.window is not None:
            batch = max(batch, len(self.window.offsets) - 1)
            entries = max(entries, self.window.indices.numel())
        like = SimpleNamespace(
            n_features=self.n_features, ignore_zero=self.ignore_zero, offsets=np.zeros(batch + 1, np.int64),
            indices=np.zeros(entries, rows.indices.dtype),
            values=None if rows.values is None else np.zeros(entries, np.float32),
            weights=None if rows.weights is None else np.zeros(batch, np.float32))
        self.window = SparseRows(like, self.device, self.value_dtype)
        self._local = torch.arange(batch, dtype=torch.int64, device=self.device)
        w = self.window
        tensors = [w.offsets, w.indices, w.values, w.weights, self._local]
        nbytes = sum(t.numel() * t.element_size() for t in tensors if t is not None)
        self._pinned = None
        if self.device.type == "cuda":  # a ring of pinned staging buffers: host memory
            self._pinned = [_PinnedSet(w) for _ in range(PINNED_RING)]
            self._pinned_next = 0
            nbytes = PINNED_RING * (nbytes - self._local.numel() * 8)
        self.source.ledger.give(self._window_bytes)
        self._window_bytes = nbytes
        self.source.ledger.take(nbytes)

    def _upload(self, arrays) -> None:
        """Host arrays → device window through a pinned set: a host copy, then non-blocking
        copies queued behind the steps already enqueued (they run while the host prepares the
        next batch). A set is refilled only after its previous copies ran (an event)."""
        pinned = self._pinned[self._pinned_next]
        self._pinned_next = (self._pinned_next + 1) % len(self._pinned)
        pinned.wait()
        for (dst, src), buf in zip(arrays, pinned.buffers):
            host = buf[:dst.numel()]
            host.numpy()[:] = src
            dst.copy_(host, non_blocking=True)
        pinned.record()

    def _window_entries(self, order: np.ndarray, batch_size: int) -> int:
        """Entries a prefetch window may hold so that the dataset's holdings stay in budget."""
        src = self.source
        largest = _largest_batch(self.host_lengths, order, batch_size)
        device = _device_window_bytes(src, batch_size, largest, self.device)
        free = src.budget - src.fixed_bytes - src.scratch_bytes - max(device, self._window_bytes) - 8 * order.size
        free -= src.scratch_bytes + src.read_bytes(largest, batch_size)  # room for a batch read on the spot
        per_entry = src.entry_bytes + src.read_entry_bytes  # a window held + one being read
        per_example = 8 + (0 if src.weights is None else 4) + src.read_bytes(0, 1)
        mean = max(1.0, float(src.lengths.mean()) if src.n_examples else 1.0)
        entries = int(free / (per_entry + per_example / mean))
        if entries < largest:
            need = src.budget - free + int(largest * (per_entry + per_example / mean)) + 1
            raise UsageError(f"the memory budget of {format_bytes(src.budget)} for dataset '{src.name}' (its share of "
                             f"--memory-budget) cannot hold two batches of {batch_size} examples (up to {largest:,} "
                             f"entries each) beside its {format_bytes(src.fixed_bytes)} of per-example offsets; raise "
                             f"--memory-budget so that this share is at least {format_bytes(need)}, or use a smaller "
                             "batch")
        return entries


class _PinnedSet:
    """Pinned host buffers shaped like a device window's tensors, and the event of their last copy."""

    def __init__(self, window: SparseRows):
        tensors = [window.offsets, window.indices] + [t for t in (window.values, window.weights) if t is not None]
        self.buffers = [torch.empty(t.numel(), dtype=t.dtype, pin_memory=True) for t in tensors]
        self.event = None

    def wait(self) -> None:
        if self.event is not None:
            self.event.synchronize()

    def record(self) -> None:
        self.event = torch.cuda.Event()
        self.event.record()


def _largest_batch(lengths: np.ndarray, order: np.ndarray, batch_size: int) -> int:
    if order.size == 0:
        return 0
    return int(np.add.reduceat(lengths[order], np.arange(0, order.size, batch_size)).max())


def _device_window_bytes(src, batch_size: int, entries: int, device: torch.device) -> int:
    """Host bytes of the device window (on the CPU) or of its pinned staging sets (on CUDA)."""
    from destiny.data.dataset import index_dtype

    per_entry = index_dtype(src.n_features).itemsize + (0 if src.is_indicator else 4)
    per_example = 8 + (0 if src.weights is None else 4)
    window = entries * per_entry + batch_size * per_example + 8
    return window + 8 * batch_size if device.type != "cuda" else PINNED_RING * window


class _Prefetch:
    """The background reader of one epoch's plan: windows of consecutive batches, read in
    order by one thread, handed over through a queue; ``WINDOWS`` bound what is held."""

    def __init__(self, source, order: np.ndarray, batch_size: int, window_entries: int):
        self.source, self.order, self.batch_size = source, order, batch_size
        self.cursor = 0  # position in order of the next batch expected
        self.current = None  # (first, stop, rows): the window being consumed
        self.slots = threading.Semaphore(WINDOWS)
        self.queue: queue.Queue = queue.Queue()
        self.stopped = threading.Event()
        self.windows = _windows(source.lengths, order, batch_size, window_entries)
        self.thread = threading.Thread(target=self._run, name=f"destiny-prefetch-{source.name}", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        ledger = self.source.ledger
        try:
            for first, stop in self.windows:
                while not self.slots.acquire(timeout=_POLL):
                    if self.stopped.is_set():
                        return
                if self.stopped.is_set():
                    return
                rows = self.source.read_rows(self.order[first:stop])
                ledger.take(rows.nbytes)
                self.queue.put((first, stop, rows))
        except BaseException as exc:  # handed to the consumer, which raises it
            self.queue.put(exc)

    def next(self, examples: np.ndarray):
        """The rows of the plan's next batch if ``examples`` is that batch, else None."""
        lo = self.cursor
        if lo >= self.order.size or not np.array_equal(self.order[lo:lo + examples.size], examples):
            return None
        if self.current is None or lo >= self.current[1]:
            self._release()
            item = self.queue.get()
            if isinstance(item, BaseException):
                self.stop()
                raise item
            self.current = item
        first, stop, rows = self.current
        if lo + examples.size > stop:  # a batch cut differently from the plan's
            return None
        self.cursor = lo + examples.size
        return rows[lo - first:lo - first + examples.size]

    def consumed(self) -> None:
        """The batch handed out last has been copied: give its window back if it was the last."""
        if self.current is not None and self.cursor >= self.current[1]:
            self._release()

    def _release(self) -> None:
        if self.current is not None:
            self.source.ledger.give(self.current[2].nbytes)
            self.current = None
            _trim_heap()
            self.slots.release()

    def stop(self) -> None:
        self.stopped.set()
        self._release()
        self._drain()
        if threading.current_thread() is not self.thread:  # (a collection may run the finalizer there)
            self.thread.join(timeout=10 * _POLL)
        self._drain()  # a window finished while we joined

    def _drain(self) -> None:
        """Give back every window (or error) waiting in the queue: its bytes and its slot."""
        while True:
            try:
                item = self.queue.get_nowait()
            except queue.Empty:
                return
            if not isinstance(item, BaseException):
                self.source.ledger.give(item[2].nbytes)
            self.slots.release()


def _trim_heap() -> None:
    """Hand freed heap pages back to the system (glibc's malloc_trim): without it a window's
    memory, once freed, stays in the process's resident set (glibc keeps freed blocks for
    reuse, per thread arena), so the resident set would grow past what is held."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


@functools.lru_cache(maxsize=1)
def _libc():
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
        return libc
    except (OSError, AttributeError):  # not glibc: nothing to trim
        return None


def _windows(lengths: np.ndarray, order: np.ndarray, batch_size: int, entries: int) -> list[tuple[int, int]]:
    """Cut ``order`` into windows of whole batches with at most ``entries`` entries each:
    (first, stop) positions in order."""
    n = order.size
    if n == 0:
        return []
    starts = np.arange(0, n, batch_size)
    sizes = np.add.reduceat(lengths[order], starts)
    reach = np.cumsum(sizes)
    out, b = [], 0
    while b < len(starts):
        base = reach[b - 1] if b else 0
        e = int(np.searchsorted(reach, base + entries, side="right"))
        e = max(e, b + 1)
        out.append((int(starts[b]), int(starts[e]) if e < len(starts) else n))
        b = e
    return out
