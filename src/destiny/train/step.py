"""One training step, run eagerly or captured once in a CUDA graph and replayed.

The step: gather the batch from the examples → forward (dropout, denoising) → loss → backward
→ optimizer → WeightNorm → accumulate the loss, all on the device. On the kernel path
(CUDA, or ``ops.functional.kernels(True)``) every shape in it is static and nothing waits for
the host:

- the examples' ids and the step's noise seeds sit in one device buffer, filled per step by a
  single host → device copy from a ring of pinned buffers (``_Staging``);
- sparse batches are padded to a capacity per sparse layer (``SparseRows.take``): the
  largest batch of the epoch's order, rounded up to ``CAPACITY_QUANTUM``; it only ever grows
  (a larger one means a new capture);
- dropout and denoising read their seeds from that buffer (``nn.network.DeviceNoise``); its
  last slot holds the optimizer's updates done, for the KL term's annealing (``nn.variational``);
- the fused loss folds the 1/batch scale of the gradient in (``ops.functional.output_loss``,
  ``grad_scale``) and backward starts from that same scale tensor;
- the optimizer reads its learning rate and step from device memory; the sparse input layer's
  gradient is a static ``RowSparseGrad``.

With CUDA graphs, the first full batch of a capacity runs eagerly on a side stream (the
warm-up: it is a real step of the schedule), then the step is captured and every later full
batch of that capacity is a copy and a replay. Replays and eager steps compute the same
numbers: the same kernels on the same shapes. Eager (with a one-time warning where
unexpected): the epoch's last partial batch, BatchNormalization networks (``F.batch_norm``
takes its running-average momentum as a Python float), the torch reference path (CPU, or no
Triton), an optimizer with parameters off the fused kernels, or a failed capture.

Model parallel (N processes): the step is captured with its NCCL collectives, in thread-local
capture mode (NCCL's own threads make CUDA calls meanwhile). The processes then agree: a
capture that failed on one process drops every process's graph, since a graph replaying
collectives its peers no longer run would wait forever. Graphs that captured collectives are
destroyed before the process group (``destiny.parallel.holds_collective_graphs``). Measured on
2 × H200, seed network, batch 1024: 4.19 ms a step captured against 7.90 ms eager.
"""

from __future__ import annotations

import gc

import numpy as np
import torch

from destiny.backend import say_once
from destiny.nn.noise import DeviceNoise, Noise
from destiny.ops.random import stream_seed
from destiny.parallel import all_reduce_max, holds_collective_graphs
from destiny.train.binding import Binding
from destiny.train.precision import autocast, matmul_precision

CAPACITY_QUANTUM = 4096  # nonzero slots: capacities are multiples of it


def round_capacity(nnz: int, quantum: int = CAPACITY_QUANTUM) -> int:
    """The static slot count for batches of up to nnz nonzeros: a multiple of quantum, ≥ quantum."""
    return max(quantum, -(-int(nnz) // quantum) * quantum)


class _Staging:
    """A ring of host buffers (pinned on CUDA) for the step's one host → device copy. A buffer
    is rewritten only after its previous copy has run (a CUDA event; the host waits only when
    it runs ``ring`` steps ahead of the GPU)."""

    def __init__(self, size: int, device: torch.device, ring: int = 16):
        cuda = device.type == "cuda"
        self.host = [torch.empty(size, dtype=torch.int64, pin_memory=cuda) for _ in range(ring)]
        self.events = [torch.cuda.Event() if cuda else None for _ in range(ring)]
        self.used = [False] * ring
        self.next = 0

    def upload(self, values: np.ndarray, dst: torch.Tensor) -> None:
        k = self.next
        self.next = (k + 1) % len(self.host)
        if self.used[k] and self.events[k] is not None:
            self.events[k].synchronize()
        buf = self.host[k][: values.size]
        buf.numpy()[:] = values
        dst.copy_(buf, non_blocking=True)
        if self.events[k] is not None:
            self.events[k].record()
        self.used[k] = True


class _Buffers:
    """The static device inputs of a step of one batch size: ids = (examples (B,), seeds (S,),
    updates done (1,)) int64 in one tensor, and the gradient seed 1/B."""

    def __init__(self, batch: int, streams: int, device: torch.device, dtype: torch.dtype):
        self.batch = batch
        self.ids = torch.zeros(batch + streams + 1, dtype=torch.int64, device=device)
        self.examples = self.ids[:batch]
        self.seeds = self.ids[batch:batch + streams]
        self.updates = self.ids[batch + streams]  # 0-d: the optimizer's steps before this one
        self.fold = torch.full((), 1.0 / batch, dtype=dtype, device=device)


class StepRunner:
    """Runs the training steps of one Trainer on one Binding (see the module docstring)."""

    def __init__(self, trainer, binding: Binding):
        self.trainer = trainer
        self.binding = binding
        self.device = trainer.device
        net = trainer.network
        self.static = trainer.static_shapes
        self.streams = net.noise_streams()
        self.slots = {stream: i for i, stream in enumerate(self.streams)}
        self.capacity = {name: 0 for name in binding.sparse()}
        self.loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        self.last_loss = torch.zeros((), dtype=torch.float32, device=self.device)
        self.fold_dtype = torch.float64 if net.dtype == torch.float64 else torch.float32
        self._buffers: dict[int, _Buffers] = {}
        self._staging = _Staging(trainer.batch_size + len(self.streams) + 1, self.device)
        self._graph = None
        self._graph_key = None
        self._side_stream = None
        self.stats = {"replays": 0, "eager": 0, "captures": 0}
        self.why_not = self._why_no_graphs()
        if self.why_not is not None and trainer.cuda_graphs:
            say_once(f"cuda-graphs:{self.why_not}", f"Destiny trains without CUDA graphs: {self.why_not}; "
                                                   "every step runs eagerly (correct, slower)")

    # -- planning -----------------------------------------------------------------------------

    def _why_no_graphs(self) -> str | None:
        t = self.trainer
        if not t.cuda_graphs:
            return "CUDA graphs are off (Trainer(cuda_graphs=False), or not a CUDA device)"
        if not self.static:
            return "the step does not run on the fused kernels with static shapes (no Triton on this device?)"
        if len(t.network.bn_scale):
            return ("the network has BatchNormalization layers, whose running averages take a Python-float "
                    "momentum that changes every step (F.batch_norm)")
        if not t.optimizer.capturable():
            return "some parameters are not updated by the fused optimizer kernels (float64, or not contiguous)"
        return None

    def reserve(self, order: np.ndarray, batch_size: int) -> None:
        """Grow the capacities to fit every batch of an epoch's order (host arithmetic), and
        start reading its batches where the data streams from disk."""
        self.binding.plan(order, batch_size)
        if self.static:
            for name, nnz in self.binding.max_batch_nnz(order, batch_size).items():
                self.capacity[name] = max(self.capacity[name], round_capacity(nnz))

    def _fit(self, examples: np.ndarray) -> None:
        for name, rows in self.binding.sparse().items():
            nnz = rows.batch_nnz(examples)
            if nnz > self.capacity[name]:
                self.capacity[name] = round_capacity(nnz)

    # -- one step -----------------------------------------------------------------------------

    def run(self, examples, epoch: int, step: int) -> None:
        """One training step on ``examples`` (host example numbers); its loss is added to
        ``loss_sum`` and left in ``last_loss`` (device values)."""
        examples = np.asarray(examples, dtype=np.int64)
        t = self.trainer
        if not self.static:
            self.binding.stage(examples)
            self._eager(torch.as_tensor(examples, device=self.device), None, epoch, step)
            return
        self._fit(examples)
        self.binding.stage(examples, self.capacity)
        batch = examples.size
        buf = self._buffers.get(batch)
        if buf is None:
            buf = self._buffers[batch] = _Buffers(batch, len(self.streams), self.device, self.fold_dtype)
        seeds = [stream_seed(t.seed, purpose, epoch, step, layer) for purpose, layer in self.streams]
        self._staging.upload(np.concatenate([examples, np.asarray(seeds + [t.optimizer.steps], dtype=np.int64)]),
                             buf.ids)
        key = (batch, tuple(sorted(self.capacity.items())))
        if self.why_not is not None or batch != t.batch_size:
            self._eager(buf.examples, buf, epoch, step)
        elif self._graph is not None and self._graph_key == key:
            self._graph.replay()
            t.optimizer._steps += 1  # the host's count of the replayed step's update
            self.stats["replays"] += 1
        else:  # a new capacity: this step warms up on a side stream, then the step is captured
            if self._side_stream is None:
                self._side_stream = torch.cuda.Stream(self.device)
            side = self._side_stream
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side):
                self._eager(buf.examples, buf, epoch, step)
            torch.cuda.current_stream(self.device).wait_stream(side)
            self._capture(buf, key, epoch, step)

    def _eager(self, examples: torch.Tensor, buf: _Buffers | None, epoch: int, step: int) -> None:
        self._body(examples, buf, epoch, step)
        self.stats["eager"] += 1

    def _body(self, examples: torch.Tensor, buf: _Buffers | None, epoch: int, step: int) -> None:
        """The step itself: what a CUDA graph captures."""
        t = self.trainer
        net = t.network
        if buf is None:  # exact batches, integer seeds (the reference path)
            inputs, targets = self.binding.batch(examples)
            noise = Noise(t.seed, epoch, step)
            fold = torch.full((), 1.0 / examples.numel(), dtype=self.fold_dtype, device=self.device)
            updates = t.optimizer.steps
        else:
            inputs, targets = self.binding.batch(examples, self.capacity)
            noise = DeviceNoise(t.seed, epoch, step, seeds=buf.seeds, slots=self.slots)
            fold = buf.fold
            updates = buf.updates
        with matmul_precision(t.precision):
            with autocast(t.precision, self.device, cache=False):
                total, _ = net.loss(inputs, targets, noise, grad_scale=fold, updates=updates)
            if buf is None:  # autograd applies the seed: the same gradients, and backward(tensor) would
                (total * fold).backward()  # import torch.fx's symbolic shapes (a second, once a process)
            else:
                total.backward(fold if total.dtype == fold.dtype else fold.to(total.dtype))
        t.optimizer.step()
        net.apply_weight_norms()
        t.optimizer.zero_grad()
        self.last_loss.copy_(total.detach())
        self.loss_sum.add_(self.last_loss)

    def _capture(self, buf: _Buffers, key, epoch: int, step: int) -> None:
        t = self.trainer
        self.release_graphs()
        steps = t.optimizer._steps
        graph = torch.cuda.CUDAGraph()
        collecting = gc.isenabled()
        captured = False
        try:
            # Model parallel: NCCL's own threads make CUDA calls (connections, buffers) while this
            # thread captures, which the default "global" capture mode forbids (nccl-tests
            # captures in thread-local mode for this reason).
            mode = "thread_local" if t.world.parallel else "global"
            with torch.cuda.graph(graph, capture_error_mode=mode):  # collects garbage first
                # A garbage collection during the capture can free another CUDA graph (an earlier
                # trainer's, held in a reference cycle), and destroying a graph while a stream
                # captures invalidates the capture (cudaErrorStreamCaptureInvalidated): none then.
                gc.disable()
                self._body(buf.examples, buf, epoch, step)
            captured = True
        except Exception as exc:  # an op that syncs or allocates from the host, for instance
            self.why_not = f"capturing the step failed ({type(exc).__name__}: {str(exc)[:200]})"
        finally:
            if collecting:
                gc.enable()
            t.optimizer._steps = steps  # recording ran no update
        t.optimizer.zero_grad()
        if t.world.parallel:  # all capture or none (nothing ran while capturing, on any process)
            failed = torch.tensor([0.0 if self.why_not is None else 1.0], device=self.device)
            if float(all_reduce_max(failed, t.world)) > 0 and self.why_not is None:
                self.why_not = "capturing the step failed on another process"
        if self.why_not is not None:
            if captured:
                graph.reset()
            say_once("cuda-graph-capture", f"Destiny trains without CUDA graphs: {self.why_not}; "
                                           "every step runs eagerly (correct, slower)")
            return
        self._graph, self._graph_key = graph, key
        self.stats["captures"] += 1
        if t.world.parallel:
            holds_collective_graphs(self)

    def release_graphs(self) -> None:
        """Destroy the captured step (a later step captures again); the process group's shutdown
        calls this first (``destiny.parallel.holds_collective_graphs``)."""
        if self._graph is not None:
            self._graph.reset()
        self._graph = self._graph_key = None
