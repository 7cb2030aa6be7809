"""Numerical faults in training: finding NaN/Inf where they appear, and DSSTNE's divergence brake.

Detection is cheap: the running loss sum of the epoch is read on the host every ``nan_check``
batches (each batch on the CPU, where a read costs nothing; every 100 batches on CUDA, where it
is a sync), and a device counter of the batches whose running sum was still finite tells which
batch went bad first (a non-finite sum stays non-finite). Once found, ``diagnose`` localizes it
by layer: the first layer whose parameters hold non-finite values, else the first layer whose
activations for that batch do (a forward pass of that batch without noise), else the loss.

Divergence that stays finite (``Growth``): a learning rate too high can take the loss to 1e34
and the weights to 1e20 without a NaN, and the run would end as if it had trained. At each
epoch's end, from what the NaN check reads there anyway (the loss sum, each parameter's min and
max), the epoch's training error is compared with the first minibatch's and the largest
parameter with the largest before training (each read once a Trainer); past ``LOSS_GROWTH`` or
``WEIGHT_GROWTH`` times, a NumericalWarning names what grew and the fix, once.

The divergence brake (reference/dsstne.md §2.3, built into DSSTNE and always on there; here an
option that says when it acts): an exponential average of the batch error (per example) is kept
over the epoch, ``EMA = 0.9 EMA + 0.1 error``; after a warm-up of 100 batches, a batch whose
error exceeds ``factor`` × EMA skips its update, and the next 24 batches use a tenth of the
learning rate. Deciding before the update needs the batch's loss first: a forward pass without
gradients (same noise, so the same loss as the step's), about a third of a step more, and the
steps run without CUDA graphs.
"""

from __future__ import annotations

import dataclasses
import math
import warnings

import numpy as np
import torch

from destiny.errors import NumericalError, NumericalWarning

LOSS_GROWTH = 100.0  # an epoch's training error this many times the first minibatch's (and above 1): diverging
WEIGHT_GROWTH = 1e6  # a parameter this many times the largest before training: diverging


@dataclasses.dataclass
class Growth:
    """The start a Trainer's epochs are measured against (module docstring): set once, by
    ``_NanWatch``; ``warned`` once the warning is given."""

    loss: float | None = None  # the training error an example of the first minibatch trained
    weight: float | None = None  # the largest |parameter| before training
    warned: bool = False

    def check(self, epoch: int, alpha: float, error: float, largest: float, warn: bool = True) -> None:
        """At an epoch's end: a NumericalWarning (once; ``warn`` False: only noted, on a process
        that is not rank 0) when the training error an example or the largest parameter grew
        past the bounds."""
        found = self.grown(error, largest)
        if found and not self.warned:
            self.warned = True
            if warn:
                warnings.warn(growth_warning(epoch, alpha, found), NumericalWarning, stacklevel=5)

    def grown(self, error: float, largest: float) -> list[str]:
        """What grew past the bounds since the start, as phrases (empty: nothing did)."""
        found = []
        if self.loss is not None and error > LOSS_GROWTH * max(self.loss, 1.0):
            found.append(f"the training error grew to {error:.3g} an example from {self.loss:.3g} in the first "
                         "minibatch")
        if self.weight and largest > WEIGHT_GROWTH * self.weight:
            found.append(f"a parameter grew to {largest:.3g} from at most {self.weight:.3g} before training")
        return found


def growth_warning(epoch: int, alpha: float, found: list[str]) -> str:
    """The NumericalWarning's text: what grew (``Growth.grown``) and the fix."""
    return (f"training is diverging at epoch {epoch}: {'; '.join(found)}; the network will predict poorly. Lower "
            f"the learning rate (--alpha, now {alpha:g}) or turn on the divergence brake (--divergence-brake)")


@dataclasses.dataclass
class DivergenceBrake:
    """DSSTNE's divergence brake (see the module docstring); its state restarts every epoch."""

    factor: float = 2.0  # a batch error above factor × EMA triggers
    warmup: int = 100  # batches of an epoch before it may trigger
    batches: int = 24  # batches that run with the reduced learning rate after a trigger
    cut: float = 0.1  # the learning rate's factor during those batches
    ema: float = 0.0
    seen: int = 0  # batches of this epoch so far
    cooling: int = 0  # batches left with the reduced learning rate
    triggers: int = 0  # triggers this epoch (reported in EpochResult.extra)

    def __post_init__(self):
        if not (self.factor > 1 and self.warmup >= 0 and self.batches >= 0 and 0 < self.cut <= 1):
            from destiny.errors import UsageError

            raise UsageError(f"the divergence brake needs factor > 1, warmup ≥ 0, batches ≥ 0 and 0 < cut ≤ 1; got "
                             f"factor {self.factor}, warmup {self.warmup}, batches {self.batches}, cut {self.cut}")

    def restart(self) -> None:
        self.ema, self.seen, self.cooling, self.triggers = 0.0, 0, 0, 0

    def decide(self, error: float) -> tuple[bool, float]:
        """(apply the update?, learning-rate factor) for a batch of per-example ``error``."""
        self.seen += 1
        trigger = self.seen > max(self.warmup, 1) and error > self.factor * self.ema  # the EMA has a batch in it
        self.ema = 0.9 * self.ema + 0.1 * error if not trigger else self.ema
        if trigger:
            self.cooling = self.batches
            self.triggers += 1
            return False, self.cut
        if self.cooling:
            self.cooling -= 1
            return True, self.cut
        return True, 1.0

    def state(self) -> dict:
        return {"brake.ema": self.ema, "brake.seen": self.seen, "brake.cooling": self.cooling,
                "brake.triggers": self.triggers}

    def load(self, info: dict) -> None:
        self.ema = float(info.get("brake.ema", 0.0))
        self.seen = int(info.get("brake.seen", 0))
        self.cooling = int(info.get("brake.cooling", 0))
        self.triggers = int(info.get("brake.triggers", 0))


@torch.no_grad()
def batch_error(trainer, binding, examples: np.ndarray, epoch: int, step: int) -> float:
    """The per-example loss a training step on ``examples`` would compute (with its noise),
    without gradients or an update: the brake's look-ahead (a host sync)."""
    from destiny.nn.noise import Noise
    from destiny.train.precision import autocast, matmul_precision

    inputs, targets = binding.batch(torch.as_tensor(examples, device=trainer.device))
    with matmul_precision(trainer.precision), autocast(trainer.precision, trainer.device):
        loss, _ = trainer.network.loss(inputs, targets, Noise(trainer.seed, epoch, step),
                                       updates=trainer.optimizer.steps)
    from destiny.parallel import sum_float

    return sum_float(float(loss), trainer.world) / max(len(examples), 1)


@torch.no_grad()
def largest_parameter(network) -> float:
    """The largest magnitude of this process's parameters, NaN or Inf where one is not finite:
    a min and a max a parameter (no temporary of its size), one host sync."""
    extremes = [t for p in network.parameters() if p.numel() for t in torch.aminmax(p.detach().reshape(-1))]
    return float(torch.stack(extremes).abs().max()) if extremes else 0.0  # max propagates NaN


def world_max(value: float, world) -> float:
    """The largest of the processes' ``value`` (model parallel: a collective)."""
    if not world.parallel:
        return value
    from destiny.parallel import all_reduce_max

    return float(all_reduce_max(torch.tensor(value, dtype=torch.float64, device=world.device), world))


def parameters_finite(network) -> bool:
    """Whether every parameter is finite (one host sync)."""
    return math.isfinite(largest_parameter(network))


def non_finite_parameters(network) -> list[tuple[str, str, int]]:
    """(layer, parameter, count of NaN/Inf values) of every parameter that holds any, in
    layer order; empty if all are finite."""
    if parameters_finite(network):
        return []
    by_layer = {}
    for spec in network.specs:
        by_layer.setdefault(spec.output_layer, []).extend(
            [f"weights.w{spec.index}"] * (spec.shared_from is None) + [f"biases.b{spec.index}"])
    for name in network.bn_scale:
        by_layer.setdefault(name, []).extend([f"bn_scale.{name}", f"bn_shift.{name}"])
    params = dict(network.named_parameters())
    found = []
    for layer in network.order:
        for name in by_layer.get(layer.name, []):
            bad = int((~torch.isfinite(params[name].detach())).sum())  # .item(): host sync
            if bad:
                found.append((layer.name, name, bad))
    return found


def describe_parameters(found: list[tuple[str, str, int]]) -> str:
    """'layer 'h' (weights.w0: 381 values), layer 'out' (weights.w1: 1 value)'."""
    return ", ".join(f"layer '{layer}' ({name}: {count:,} value{'s' * (count != 1)})" for layer, name, count in found)


@torch.no_grad()
def first_non_finite_layer(trainer, binding, examples: np.ndarray) -> str | None:
    """The first layer (in order) whose values for ``examples`` are not all finite, in a
    forward pass without noise; None if all are."""
    from destiny.ops.sparse import SparseBatch

    inputs, _ = binding.batch(torch.as_tensor(examples, device=trainer.device))
    values = trainer.network.forward(inputs, None)
    for layer in trainer.network.order:
        value = values.get(layer.name)
        if isinstance(value, SparseBatch):
            value = value.values
        if isinstance(value, torch.Tensor) and value.is_floating_point() and not bool(torch.isfinite(value).all()):
            return layer.name
    return None


def diagnose(trainer, binding, order: np.ndarray, epoch: int, batches: tuple[int, int],
             loss: float | None) -> NumericalError:
    """The NumericalError for NaN/Inf found in batches ``batches`` (first, last; 0-based) of
    ``epoch``: in the loss (``loss``), or in the parameters while the loss stayed finite
    (``loss`` None; DSSTNE's losses skip outputs that are not finite)."""
    n_batches = -(-len(order) // trainer.batch_size)
    first, last = batches
    examples = order[last * trainer.batch_size:(last + 1) * trainer.batch_size]
    where = (f"batch {last + 1} of {n_batches} in epoch {epoch}" if first == last else
             f"one of batches {first + 1}–{last + 1} of {n_batches} in epoch {epoch} (--nan-check 1 names the batch)")
    headline = (f"the loss became {loss} at {where}" if loss is not None else
                f"NaN/Inf appeared in the parameters at {where}, while the loss stayed finite")
    found = non_finite_parameters(trainer.network)
    if found:
        cause = (f"NaN/Inf values are in the parameters of {describe_parameters(found)}: an update blew up "
                 "(at that batch or the one before) and spread backward through the layers")
    elif trainer.world.parallel:  # a forward pass here could wait for processes that found their shards bad
        cause = "this process's parameters are finite (model parallel: another process may name the layer)"
    else:
        layer = first_non_finite_layer(trainer, binding, examples)
        cause = (f"the values of layer '{layer}' are not finite for that batch's examples" if layer is not None
                 else "the loss itself is not finite (every layer's values are)")
    return NumericalError(
        f"training diverged: {headline}; {cause}. Lower the learning rate (--alpha), "
        f"turn on the divergence brake (--divergence-brake), or check the data of that batch's examples "
        f"({', '.join(map(str, examples[:5].tolist()))}{', …' if len(examples) > 5 else ''}); the checkpoints "
        "written before this are intact")
