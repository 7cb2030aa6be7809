"""The training loop: epochs of shuffled minibatches, DSSTNE's optimizers, per-epoch training
and validation error, progress, checkpoints and callbacks.

Per minibatch (reference/dsstne.md §2.3): forward with dropout/denoising, loss summed over the
batch, gradient of its mean, one optimizer step, WeightNorm. Shuffling, dropout and denoising
draw from streams keyed by (seed, epoch, step, layer), so the run is reproducible and a run
resumed at an epoch boundary continues exactly as the uninterrupted one.

On CUDA the step has static shapes and no host sync, and is captured once in a CUDA graph and
replayed (``destiny.train.step``); the host only copies each step's example ids and seeds.

Validation-driven training: a ``RankingValidator`` (``destiny.train.validation``) scores ranking
metrics on held-out items every few epochs, outside the step runner (no RNG stream is drawn, no
captured buffer touched); an ``EarlyStopping`` (``destiny.train.stopping``) follows one of
them (or the validation loss), stops after a patience and puts the best epoch's weights back
when ``fit`` ends, by patience or by reaching its epochs.

Model parallel (a Network built with a ``world`` of N processes): every process runs this same
loop on the same data in the same order, on its shards; the optimizer updates its shards (its
state is split with them); losses and the regularisation error are summed over the processes
(in rank order) for reporting, and only rank 0 shows progress.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Callable, Mapping

import numpy as np
import torch

from destiny.backend import say_once
from destiny.nn.network import Network
from destiny.ops.functional import use_kernels
from destiny.ops.random import stream_seed
from destiny.parallel import World, all_reduce, sum_float
from destiny.progress import Progress
from destiny.errors import NumericalError
from destiny.io.storable import check_seed
from destiny.train import guards  # hyperparameters in range, data with examples, a resumed run's own data
from destiny.train.binding import Binding
from destiny.train.faults import (DivergenceBrake, Growth, batch_error, describe_parameters, diagnose,
                                  largest_parameter, non_finite_parameters, world_max)
from destiny.train.optimizers import DsstneOptimizer, Hyperparameters, Optimizer
from destiny.train.precision import Precision, autocast, matmul_precision
from destiny.train.step import StepRunner


@dataclass
class EpochResult:
    """What one epoch did. Errors are average loss per example (DSSTNE's "average error").
    metrics: the ranking metrics of a validated epoch by name ("ndcg@100": 0.41; empty
    otherwise); best_epoch: the best validated epoch so far when early stopping follows one."""

    epoch: int
    training_error: float
    regularization_error: float
    validation_error: float | None
    learning_rate: float
    seconds: float
    examples_per_second: float
    extra: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    best_epoch: int | None = None

    def as_dict(self) -> dict:
        return asdict(self)


Callback = Callable[[EpochResult, "Trainer"], None]


class Trainer:
    """Trains a ``Network`` on datasets matched to its layers by DataSet name.

    optimizer: one of DSSTNE's seven (``Optimizer`` or its name). hyper: α, λ, λ₁, μ, μ₁ (the
    network's Decay is used when hyper.decay is not set). seed: shuffling and noise streams
    (default: the network's seed). shuffle: None follows the config's ShuffleIndices.
    precision: fp32, tf32 or bf16 matrix products (``destiny.train.precision``).
    static_shapes: padded sparse batches, device seeds and scalars, no host sync in the step
    (None: where the fused kernels run, i.e. CUDA). cuda_graphs: capture the step in a CUDA
    graph and replay it (None: on CUDA; see ``destiny.train.step`` for when it falls back;
    model parallel: only when True). world: the network's (``Network(world=…)``); the device is
    then the world's. nan_check: read the running loss every that many batches and stop with a
    NumericalError naming the batch, epoch and layer where NaN/Inf appeared (None: every batch
    on the CPU, every 100 on CUDA; 0: at the end of each epoch; a finite divergence warns:
    ``faults.Growth``). brake: DSSTNE's divergence
    brake (``destiny.train.faults.DivergenceBrake``, or True for DSSTNE's settings).
    ``batch_callbacks``: functions of (trainer, epoch, batches done) called after every batch
    (mid-epoch checkpoints); ``resume_batch``: batches of the next epoch already done (set by
    ``checkpoint.restore_trainer``).

    validator: a ``RankingValidator`` scored after every ``validator.every`` epochs and after
    the last epoch of ``fit`` (its numbers go to ``EpochResult.metrics``). monitor: what early
    stopping follows — one of the validator's metrics (default its first, e.g. "ndcg@100") or
    "validation_error" (the loss on ``fit``'s validation data); patience: validations without
    improvement before ``fit`` stops (None: never early); restore_best: put the best validated
    epoch's weights back when ``fit`` ends (``destiny.train.stopping``: costs a copy of the
    network). ``stopping`` holds that state (None without validator, monitor or patience).
    progress: show the progress of each epoch (``destiny.progress``): a live bar on a terminal,
    else a line every 10 s (examples done, examples/s, running loss) — in logs and notebooks too.
    console: the rich Console (or a function returning one) the bar draws on and the lines go
    to (default: stderr).
    """

    def __init__(self, network: Network, optimizer: Optimizer | str = Optimizer.SGD,
                 hyper: Hyperparameters | None = None, *, batch_size: int = 1024, seed: int | None = None,
                 shuffle: bool | None = None, device: torch.device | str | None = None,
                 callbacks: list[Callback] | None = None, progress: bool = True,
                 precision: Precision | str = Precision.FP32, static_shapes: bool | None = None,
                 cuda_graphs: bool | None = None, world: World | None = None, nan_check: int | None = None,
                 brake: "DivergenceBrake | bool | None" = None, validator=None, monitor: str | None = None,
                 patience: int | None = None, restore_best: bool = True, console=None):
        from destiny.backend import resolve_device
        from destiny.train.determinism import make_deterministic

        if batch_size < 1:
            from destiny.errors import UsageError

            raise UsageError(f"the batch size must be a positive integer; got {batch_size}")
        self.world = network.world if world is None else world
        if self.world.size != network.world.size or self.world.rank != network.world.rank:
            from destiny.errors import UsageError

            raise UsageError(f"the Trainer's world ({self.world}) is not the network's ({network.world}); "
                             "build the Network with the same world")
        if self.world.parallel:
            self.device = self.world.device
            if device is not None and resolve_device(device).type != self.device.type:
                from destiny.errors import UsageError

                raise UsageError(f"device {device} asked for, but this process of the model-parallel run "
                                 f"works on {self.device}")
        else:
            self.device = resolve_device(device) if device is not None else network.device
        make_deterministic(self.device)
        self.network = network.to(self.device)
        hyper = hyper or Hyperparameters()
        if hyper.decay == 0 and network.config.decay > 0:
            hyper = Hyperparameters(**{**asdict(hyper), "decay": network.config.decay})
        hyper = hyper.with_network(network.config)  # the JSON's WeightDecay (a Destiny extension)
        guards.check_hyperparameters(hyper)
        check_seed(network.seed if seed is None else seed)
        params = dict(network.named_parameters())
        weights = {name for name in params if name.startswith("weights.")}
        self.optimizer = DsstneOptimizer(params, optimizer, hyper, regularized=weights,
                                         schedule=network.config.learning_rate_schedule)
        self.batch_size = batch_size
        self.seed = network.seed if seed is None else seed
        self.shuffle = network.config.shuffle_indices if shuffle is None else shuffle
        self.callbacks = list(callbacks or [])
        self.progress = progress and self.world.is_root
        self.precision = Precision.parse(precision)
        self.epoch = 0  # epochs completed
        self.history: list[EpochResult] = []
        self.static_shapes = use_kernels(self.device) if static_shapes is None else bool(static_shapes)
        if cuda_graphs and self.device.type != "cuda":
            say_once("cuda-graphs-device", f"CUDA graphs asked for on {self.device}: steps run eagerly")
        self.cuda_graphs = self.device.type == "cuda" and (cuda_graphs is None or bool(cuda_graphs))
        self._runner: tuple[Binding, StepRunner] | None = None
        self._examples_stepped = 0
        self.nan_check = (1 if self.device.type == "cpu" else 100) if nan_check is None else int(nan_check)
        self.brake = DivergenceBrake() if brake is True else (brake or None)
        self.growth = Growth()  # finite divergence: the start it is measured against
        if self.brake is not None:  # the brake reads each batch's loss on the host before its update
            self.cuda_graphs = False
        self.batch_callbacks: list[Callable[["Trainer", int, int], None]] = []
        self.resume_batch = 0  # batches of epoch self.epoch + 1 already done (a mid-epoch checkpoint)
        self.resume_loss = 0.0  # their summed loss
        self.batches_done = 0  # batches of the epoch in progress (0 between epochs)
        self.schedule_epochs: int | None = None  # the run's epochs for the LR schedule (None: done + fit's)
        self.console = console
        self.validator = validator
        self.stopping = _stopping(validator, monitor, patience, restore_best)
        self.start_metrics: dict | None = None  # the validation of a closed-form start (epoch 0)
        self.start_errors: dict | None = None  # its standard errors
        self.data_fingerprint: str | None = None  # of the data fit trains on (guards.data_fingerprint)
        self.resumed_data: tuple[str, str | None] | None = None  # (checkpoint, its data's fingerprint) once restored

    # -- public -------------------------------------------------------------------------------

    def fit(self, datasets: Mapping[str, object], epochs: int,
            validation: Mapping[str, object] | None = None) -> list[EpochResult]:
        """Train for ``epochs`` more epochs; returns the results of those epochs."""
        # Recipes' hook (nn/recipes.py): a fresh network's FrequencyBias biases and bias-0 warning,
        # ZeroDiagonal diagonals at zero; nothing for a network loaded from a file or checkpoint.
        guards.check_training_data(self, datasets)  # examples, and a resumed run's own data
        closed_form = self.network.start_training(datasets)  # True: a closed-form start, validated as epoch 0
        binding = Binding(self.network, datasets, device=self.device)
        # the learning-rate schedule (train/schedule.py) spans the whole run: a resumed run plans the same length
        per_epoch = -(-binding.n_examples // self.batch_size)
        self.optimizer.plan(max(self.schedule_epochs or 0, self.epoch + epochs) * per_epoch, per_epoch)
        check = Binding(self.network, validation, device=self.device, what="validation data") if validation else None
        if self.stopping is not None and self.stopping.lower_is_better and check is None:
            from destiny.errors import UsageError

            raise UsageError("early stopping on the validation loss needs validation data: "
                             "Trainer.fit(datasets, epochs, validation={...})")
        if self.stopping is not None:  # a later fit goes on from the restored weights, with a fresh patience
            self.stopping.should_stop, self.stopping.bad = False, 0
        results = []
        try:
            if closed_form:
                self._validate_start(check)
            for i in range(epochs):
                result = self._epoch(binding, check)
                self._validate(result, last=i == epochs - 1)
                results.append(result)
                self.history.append(result)
                for callback in self.callbacks:
                    callback(result, self)
                if self.stopping is not None and self.stopping.should_stop:
                    break
        except torch.cuda.OutOfMemoryError as exc:
            from destiny.train.memory import out_of_memory

            raise out_of_memory(self, exc) from exc
        if self.stopping is not None:
            self.stopping.restore(self.network)
        return results

    @property
    def best_epoch(self) -> int | None:
        """The best validated epoch (early stopping), None before any validation or without one."""
        return None if self.stopping is None else self.stopping.best_epoch

    def _validate_start(self, check: Binding | None) -> None:
        """Validate a network that starts from a closed form (``WeightInit.ClosedForm``) before
        its first epoch: its metrics go to ``start_metrics`` and early stopping counts it as
        epoch 0, so the run ends on it when no epoch beats it (``best_epoch`` 0)."""
        if self.validator is None or self.epoch != 0:
            return
        self.start_metrics = self.validator.validate(self.network, precision=self.precision)
        self.start_errors = dict(getattr(self.validator, "standard_errors", {}))
        if self.stopping is not None:
            start = EpochResult(0, math.nan, 0.0, self.evaluate(check) if check is not None else None, 0.0, 0.0, 0.0,
                                metrics=dict(self.start_metrics))
            self.stopping.update(0, self.stopping.value(start), self.network)

    def _validate(self, result: EpochResult, last: bool) -> None:
        """Ranking metrics after the epoch when due (and after ``fit``'s last epoch), then the
        early-stopping bookkeeping; outside the step runner and its RNG streams."""
        if self.validator is not None and (self.validator.due(result.epoch) or last):
            result.metrics = self.validator.validate(self.network, precision=self.precision)
            result.extra["validation_seconds"] = self.validator.seconds
            result.extra["standard_errors"] = dict(getattr(self.validator, "standard_errors", {}))
        if self.stopping is not None:
            self.stopping.update(result.epoch, self.stopping.value(result), self.network)
            result.best_epoch = self.stopping.best_epoch

    @torch.no_grad()
    def evaluate(self, datasets: Mapping[str, object] | Binding) -> float:
        """Average loss per example without dropout or denoising."""
        binding = datasets if isinstance(datasets, Binding) else Binding(self.network, datasets, device=self.device)
        total = torch.zeros((), dtype=torch.float64, device=self.device)
        for start in range(0, binding.n_examples, self.batch_size):
            examples = torch.arange(start, min(start + self.batch_size, binding.n_examples), device=self.device)
            inputs, targets = binding.batch(examples)
            with matmul_precision(self.precision), autocast(self.precision, self.device):
                loss, _ = self.network.loss(inputs, targets, None)
            total += loss.double()
        return sum_float(float(total), self.world) / max(binding.n_examples, 1)

    # -- one epoch ----------------------------------------------------------------------------

    def order(self, n: int, epoch: int) -> torch.Tensor:
        """The example order of an epoch (a seeded permutation when shuffling)."""
        if not self.shuffle:
            return torch.arange(n)
        g = torch.Generator(device="cpu")
        g.manual_seed(stream_seed(self.seed, "shuffle", epoch))
        return torch.randperm(n, generator=g)

    def _epoch(self, binding: Binding, check: Binding | None) -> EpochResult:
        epoch = self.epoch + 1
        n = binding.n_examples
        order = self.order(n, epoch).numpy()
        runner = self.runner(binding)
        runner.reserve(order, self.batch_size)
        lr = self.optimizer.learning_rate()
        total = runner.loss_sum
        total.fill_(self.resume_loss)  # 0 unless resumed mid-epoch
        first, self.resume_batch, self.resume_loss = self.resume_batch, 0, 0.0
        watch = _NanWatch(self, binding, order, epoch, total, first)
        if self.brake is not None and not first:
            self.brake.restart()
        started = time.perf_counter()
        progress = Progress(n, f"Epoch {epoch}", enabled=self.progress, console=self.console)
        with progress.start_at(first * self.batch_size) as bar:
            for step, start in enumerate(range(first * self.batch_size, n, self.batch_size), first):
                examples = order[start:start + self.batch_size]
                if self.brake is None:
                    runner.run(examples, epoch, step)
                else:
                    self._braked_step(runner, binding, examples, epoch, step)
                watch.after(step)
                seen = start + examples.size
                # model parallel: a rank holds only its part of the loss (summed at the epoch's end)
                bar.advance(examples.size, **({} if self.world.parallel else
                                              {"loss": lambda: f"{float(total) / seen:.5g}"}))  # host sync
                self.batches_done = step + 1
                for callback in self.batch_callbacks:
                    callback(self, epoch, step + 1)
        watch.end()
        self.batches_done = 0
        seconds = time.perf_counter() - started
        self.epoch = epoch
        validation = self.evaluate(check) if check is not None else None
        extra = {"brake_triggers": self.brake.triggers} if self.brake is not None else {}
        return EpochResult(epoch, sum_float(float(total), self.world) / n, self.regularization_error(), validation,
                           lr, seconds, (n - first * self.batch_size) / max(seconds, 1e-9), extra)

    def _braked_step(self, runner: StepRunner, binding: Binding, examples: np.ndarray, epoch: int, step: int) -> None:
        """One step under the divergence brake: its loss is computed first; a diverging batch
        skips its update (its loss still counts), the batches after it run at a reduced rate."""
        error = batch_error(self, binding, examples, epoch, step)
        apply, factor = self.brake.decide(error)
        if not apply:
            if self.world.is_root:  # model parallel: the processes' sums add up to the loss
                runner.loss_sum.add_(error * len(examples))
            return
        hyper = self.optimizer.hyper
        if factor != 1.0:  # the decayed rate of this step, cut; the device scalars follow the host's
            self.optimizer.hyper = replace(hyper, alpha=hyper.alpha * factor)
            self.optimizer.steps = self.optimizer.steps
        try:
            runner.run(examples, epoch, step)
        finally:
            if factor != 1.0:
                self.optimizer.hyper = hyper
                self.optimizer.steps = self.optimizer.steps

    def check_finite(self) -> None:
        """NumericalError if a parameter holds NaN or Inf (before writing a checkpoint: a
        checkpoint is only ever written from a finite network)."""
        found = non_finite_parameters(self.network)
        if sum_float(float(len(found)), self.world):  # model parallel: every process agrees
            where = (f"NaN/Inf values are in the parameters of {describe_parameters(found)}" if found
                     else "another process's parameters hold NaN/Inf values")
            raise NumericalError(f"{where} after {self.optimizer.steps} updates; not writing a checkpoint of them")

    def runner(self, binding: Binding) -> StepRunner:
        """The step runner (static buffers, CUDA graph) of a binding; the last one is kept."""
        if self._runner is None or self._runner[0] is not binding:
            self._runner = (binding, StepRunner(self, binding))
        return self._runner[1]

    def step(self, binding: Binding, examples: torch.Tensor, epoch: int, step: int) -> torch.Tensor:
        """One minibatch: forward, loss, backward, update; returns the batch's summed loss
        (a device value; model parallel: summed over the processes). examples: example numbers
        (a device tensor is copied to the host first: a sync)."""
        runner = self.runner(binding)
        runner.run(torch.as_tensor(examples).cpu().numpy(), epoch, step)
        return all_reduce(runner.last_loss.clone(), self.world)

    def step_examples(self, binding: Binding, examples, *, epoch: int = 1, step: int | None = None) -> None:
        """One minibatch on host example numbers (numpy, list or CPU tensor) through the
        fastest path — a CUDA graph replay where possible — without reading anything back;
        the loss accumulates on the device (``runner(binding).loss_sum``). step None: one more
        than the last call's. For benchmarks and custom loops; ``graph_status`` says what ran."""
        if step is None:
            step = self._examples_stepped
        self._examples_stepped = step + 1
        self.runner(binding).run(np.asarray(examples, dtype=np.int64), epoch, step)

    def graph_status(self) -> dict:
        """How the last binding's steps ran: replays, eager steps, captures, and why graphs
        are off (None if they are on)."""
        if self._runner is None:
            return {"replays": 0, "eager": 0, "captures": 0, "why_not": None}
        runner = self._runner[1]
        return {**runner.stats, "why_not": runner.why_not}

    @torch.no_grad()
    def regularization_error(self) -> float:
        """Σ over weights of ½λw² + λ₁|w| (DSSTNE's "average regularization error"; model
        parallel: summed over the processes)."""
        h = self.optimizer.hyper
        if not h.lam and not h.lam1:
            return 0.0
        total = 0.0
        for name, p in self.network.named_parameters():
            if name.startswith("weights."):
                total += 0.5 * h.lam * float((p.double() ** 2).sum()) + h.lam1 * float(p.double().abs().sum())
        return sum_float(total, self.world)


class _NanWatch:
    """Reads the epoch's running loss sum every ``trainer.nan_check`` batches and at the end;
    a device counter of the batches after which the sum was still finite names the first bad
    batch without a sync a batch (``destiny.train.faults``); at the end, the loss and the largest
    parameter are compared with the start (``trainer.growth``, read here once a Trainer)."""

    def __init__(self, trainer: Trainer, binding: Binding, order: np.ndarray, epoch: int, total: torch.Tensor,
                 first: int):
        self.trainer, self.binding, self.order, self.epoch, self.total = trainer, binding, order, epoch, total
        self.every = trainer.nan_check
        self.finite = torch.full((), first, dtype=torch.int64, device=total.device) if self.every != 1 else None
        self.first = self.checked = first  # checked: batches known good
        self.n_batches = -(-len(order) // trainer.batch_size)
        self.value = self.largest = 0.0  # the loss sum and the largest parameter at the last check
        if trainer.growth.weight is None:
            trainer.growth.weight = world_max(largest_parameter(trainer.network), trainer.world)  # host sync, once

    def after(self, step: int) -> None:
        if self.finite is not None:
            self.finite.add_(torch.isfinite(self.total))
        if self.trainer.growth.loss is None:  # the first batch trained: host sync, once
            seen = min((step + 1) * self.trainer.batch_size, len(self.order))
            self.trainer.growth.loss = sum_float(float(self.total), self.trainer.world) / seen
        if self.every > 0 and (step + 1 - self.first) % self.every == 0:
            self.check(step)

    def end(self) -> None:
        self.check(None)
        self.trainer.growth.check(self.epoch, self.trainer.optimizer.hyper.alpha, self.value / max(len(self.order), 1),
                                  world_max(self.largest, self.trainer.world), warn=self.trainer.world.is_root)

    def check(self, step: int | None) -> None:
        """The loss sum and the parameters (a min and max of each) after batch ``step``
        (None: the epoch's last); host syncs, agreed on by every process."""
        last = self.n_batches - 1 if step is None else step
        self.value = sum_float(float(self.total), self.trainer.world)
        if not math.isfinite(self.value):
            bad = last if self.finite is None else int(self.finite)
            raise diagnose(self.trainer, self.binding, self.order, self.epoch, (bad, bad), self.value)
        self.largest = largest_parameter(self.trainer.network)
        if not sum_float(float(not math.isfinite(self.largest)), self.trainer.world):
            self.checked = last + 1
            return
        raise diagnose(self.trainer, self.binding, self.order, self.epoch, (min(self.checked, last), last), None)


def _stopping(validator, monitor, patience, restore_best):
    """The EarlyStopping of a Trainer's arguments, or None when nothing is monitored."""
    if validator is None and monitor is None and patience is None:
        return None
    from destiny.errors import UsageError
    from destiny.train.stopping import EarlyStopping
    from destiny.train.validation import LOSS_MONITOR, metric_name

    if monitor is None:
        monitor = validator.metrics[0] if validator is not None else LOSS_MONITOR
    stopping = EarlyStopping(monitor, patience, restore_best)
    if stopping.monitor != LOSS_MONITOR and (validator is None or stopping.monitor not in validator.metrics):
        offered = ", ".join(validator.metrics) if validator is not None else "none: no validator given"
        raise UsageError(f"early stopping monitors {metric_name(monitor)!r}, which the validator does not compute "
                         f"(its metrics: {offered}); add it to RankingValidator(metrics=...) or monitor "
                         f"{LOSS_MONITOR!r}")
    return stopping


def is_finite(value: float) -> bool:
    return math.isfinite(value)
