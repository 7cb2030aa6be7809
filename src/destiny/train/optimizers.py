"""DSSTNE's seven optimizers with its exact update formulas (reference/dsstne.md §2.1).

In DSSTNE's terms, with g the negative mean gradient of the loss and g' = g − λw − λ₁·sgn(w)
(weights; biases and batch-norm parameters get g' = g, no regularisation):

    SGD       w += α·g'
    Momentum  v = μv + α·g';                 w += v
    Nesterov  v' = μv + α·g';                w += v' + μ(v' − v); v = v'
    AdaGrad   v += g'²;                      w += α·g' / √max(1e-9, v)
    RMSProp   v = μv + (1−μ)g'²;             w += α·g' / √max(1e-9, v)
    AdaDelta  s = μs + (1−μ)g'²; d = √(max(1e-9, v) / max(1e-9, s))·g'; v = μv + (1−μ)d²; w += d
    Adam      m = μm + (1−μ)g'; s = μ₁s + (1−μ₁)g'²; t = step + 1;
              w += α·(m / (1−μᵗ)) / (√(s / (1−μ₁ᵗ)) + 1e-8)

Decoupled weight decay (AdamW's, ``WeightDecay``): on the weights, w ← (1 − α·wd)·w before the
update adds to w (g' above reads the w before the decay), whatever the optimizer.

α follows the schedule (``destiny.train.schedule``: warmup, then Constant, Linear, Cosine or
Step) and decays as α / (1 + Decay·steps). A row-sparse gradient (the sparse input layer's,
``param.row_grad``, a ``destiny.ops.sparse.RowSparseGrad``; a sparse COO ``.grad`` is accepted
too) is applied exactly as the dense formula with g = 0 on the other rows: those rows get only
the regularisation, weight decay and state decay, computed without materialising a dense
gradient, and skipped entirely where that is the identity (SGD and AdaGrad without λ, λ₁,
wd). A parameter with both a dense ``.grad`` and a ``row_grad`` (a weight shared, transposed,
with the sparse input layer) is updated from their sum (the rows added to a copy of the dense
gradient).

On CUDA (or under ``destiny.ops.functional.kernels(True)``) the update of an fp32/bf16/fp16
parameter runs as one fused Triton kernel (``destiny.ops.triton.optimizer``) with the same
formula; the torch code below is its spec. That path reads the learning rate and Adam's step
from device memory (a device step counter advanced by the step itself; the schedule is
computed from it there) and never waits for the host, so ``step`` can be captured in a CUDA
graph (``capturable``).
"""

from __future__ import annotations

import math

import dataclasses
import enum
from dataclasses import dataclass, fields

import torch

from destiny.errors import UsageError
from destiny.ops.functional import use_kernels
from destiny.ops.sparse import RowSparseGrad
from destiny.train.schedule import Schedule


class Optimizer(enum.Enum):
    SGD = "sgd"
    MOMENTUM = "momentum"
    NESTEROV = "nesterov"
    ADAGRAD = "adagrad"
    RMSPROP = "rmsprop"
    ADADELTA = "adadelta"
    ADAM = "adam"

    @classmethod
    def parse(cls, text: str) -> "Optimizer":
        try:
            return cls(text.strip().lower())
        except ValueError:
            raise UsageError(f"unknown optimizer {text!r}; use one of "
                             + ", ".join(o.value for o in cls)) from None


_STATE = {
    Optimizer.SGD: (),
    Optimizer.MOMENTUM: ("velocity",),
    Optimizer.NESTEROV: ("velocity",),
    Optimizer.ADAGRAD: ("sum_squares",),
    Optimizer.RMSPROP: ("mean_squares",),
    Optimizer.ADADELTA: ("mean_squares", "mean_updates"),
    Optimizer.ADAM: ("first_moment", "second_moment"),
}

def state_slots(optimizer) -> int:
    """Matrices of state the optimizer keeps per parameter matrix (an ``Optimizer`` or its name;
    2, the most, for a name it does not know)."""
    try:
        kind = optimizer if isinstance(optimizer, Optimizer) else Optimizer(str(optimizer).strip().lower())
    except ValueError:
        return 2
    return len(_STATE[kind])


# DSSTNE's `train` defaults for the SGD family; the adaptive methods get their usual ones.
_DEFAULTS = {
    Optimizer.SGD: dict(alpha=0.025, mu=0.5),
    Optimizer.MOMENTUM: dict(alpha=0.025, mu=0.5),
    Optimizer.NESTEROV: dict(alpha=0.025, mu=0.5),
    Optimizer.ADAGRAD: dict(alpha=0.025, mu=0.5),
    Optimizer.RMSPROP: dict(alpha=0.001, mu=0.9),
    Optimizer.ADADELTA: dict(alpha=1.0, mu=0.95),
    Optimizer.ADAM: dict(alpha=0.001, mu=0.9, mu1=0.999),
}


@dataclass
class Hyperparameters:
    """alpha: learning rate. lam: L2 (DSSTNE's lambda). lam1: L1. mu, mu1: the optimizer's
    decay rates (momentum; RMSProp/AdaDelta averaging; Adam's β₁, β₂). decay: the network's
    Decay. weight_decay: decoupled weight decay (the network's WeightDecay). None takes the
    optimizer's default."""

    alpha: float | None = None
    lam: float = 0.0001
    lam1: float = 0.0
    mu: float | None = None
    mu1: float | None = None
    decay: float = 0.0
    weight_decay: float = 0.0

    def with_network(self, config) -> "Hyperparameters":
        """These, with the network's Decay and WeightDecay (``NetworkConfig``) where they are 0."""
        decay = self.decay or config.decay
        weight_decay = self.weight_decay or getattr(config, "weight_decay", 0.0)
        return dataclasses.replace(self, decay=decay, weight_decay=weight_decay)

    def resolved(self, kind: Optimizer) -> "Hyperparameters":
        defaults = {"alpha": 0.025, "mu": 0.5, "mu1": 0.0, **_DEFAULTS[kind]}
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        for key, value in defaults.items():
            if values[key] is None:
                values[key] = value
        return Hyperparameters(**values)


class DsstneOptimizer:
    """Updates named parameters in place from their .grad (dense or sparse COO) and their
    .row_grad (row-sparse, ``RowSparseGrad``).

    regularized: names of the parameters that get λ, λ₁ and the weight decay (the weight
    matrices). schedule: the learning-rate schedule (a ``train.schedule.Schedule`` or the
    config's ``LearningRateSchedule``; None: Constant); one that needs the run's length is
    given it by ``plan``. ``steps``: the updates done so far (host counter; the fused kernels
    keep a device copy).
    """

    def __init__(self, params: dict[str, torch.nn.Parameter], kind: Optimizer | str,
                 hyper: Hyperparameters | None = None, regularized: set[str] | None = None,
                 schedule=None):
        self.kind = Optimizer.parse(kind) if isinstance(kind, str) else kind
        self.hyper = (hyper or Hyperparameters()).resolved(self.kind)
        self.schedule = Schedule.of(schedule)
        self.params = dict(params)
        self.regularized = set(regularized if regularized is not None else self.params)
        self.state: dict[str, dict[str, torch.Tensor]] = {
            name: {s: torch.zeros_like(p) for s in _STATE[self.kind]} for name, p in self.params.items()}
        self._steps = 0
        self._device: dict | None = None  # the fused path's device counter and scalars
        self._scratch: dict[tuple, torch.Tensor] = {}  # the torch path's reused temporaries (not state)

    @property
    def steps(self) -> int:
        return self._steps

    @steps.setter
    def steps(self, value: int) -> None:
        self._steps = int(value)
        self._device = None  # rebuilt from the host counter at the next fused step

    # -- state for checkpoints ----------------------------------------------------------------

    def state_dict(self) -> dict[str, torch.Tensor]:
        out = {f"{name}.{key}": t for name, st in self.state.items() for key, t in st.items()}
        out["steps"] = torch.tensor(self.steps, dtype=torch.int64)
        return out

    def load_state_dict(self, tensors: dict[str, torch.Tensor]) -> None:
        for name, st in self.state.items():
            for key in st:
                st[key].copy_(tensors[f"{name}.{key}"])
        self.steps = int(tensors["steps"])

    # -- the step -----------------------------------------------------------------------------

    def plan(self, total_steps: int, steps_per_epoch: int | None = None) -> None:
        """Tell the schedule the run's length: ``total_steps`` updates in all (those done
        included), ``steps_per_epoch`` an epoch. The device's copy of the schedule's constants
        is updated in place (a captured step reads the new values)."""
        self.schedule = self.schedule.planned(total_steps, steps_per_epoch)
        dev = self._device
        if dev is not None:
            dev["consts"].copy_(torch.tensor(self._device_constants(), dtype=torch.float64))

    def learning_rate(self) -> float:
        """The rate of the next update: α·(warmup, schedule) / (1 + Decay·steps) (host, float64)."""
        h = self.hyper
        lr = h.alpha / (1.0 + h.decay * self.steps) if h.decay > 0 else h.alpha
        return lr if self.schedule.constant else lr * self.schedule.factor(self.steps)

    def capturable(self) -> bool:
        """Whether ``step`` runs entirely on the fused kernels (no host values that change
        from step to step), so that a CUDA graph of it replays correctly."""
        return all(self._fused(p.data, self.state[name]) for name, p in self.params.items())

    @torch.no_grad()
    def step(self, alpha: float | None = None) -> None:
        """Apply one update to every parameter with a gradient; ``alpha`` overrides the
        (decayed) learning rate for this step."""
        lr = self.learning_rate() if alpha is None else alpha
        t = self.steps + 1
        fused = {name: self._fused(p.data, self.state[name]) for name, p in self.params.items()}
        scalars = None
        if any(fused.values()):  # advance the device counter every step, gradients or not
            device = next(p.device for name, p in self.params.items() if fused[name])
            scalars = self._step_scalars(device, alpha)
        for name, p in self.params.items():
            grad, row_grad = self._gradients(p)
            if grad is None and row_grad is None:
                continue
            h = self.hyper
            reg = name in self.regularized and (h.lam != 0 or h.lam1 != 0 or h.weight_decay != 0)
            state = self.state[name]
            kernel_scalars = scalars if fused[name] else None
            if row_grad is not None and grad is not None:  # both: their sum, densely
                from destiny.ops.functional import row_grad_to_dense

                grad = row_grad_to_dense(row_grad, p.shape, fused[name], out=grad.clone())
                row_grad = None
            if row_grad is not None:
                self._sparse_step(p.data, state, row_grad, lr, t, reg, kernel_scalars)
            else:
                self._update(p.data, state, grad, lr, t, reg, kernel_scalars)
        self._steps += 1

    def zero_grad(self) -> None:
        for p in self.params.values():
            p.grad = None
            p.row_grad = None

    @staticmethod
    def _gradients(p) -> tuple[torch.Tensor | None, RowSparseGrad | None]:
        """(dense gradient or None, row-sparse gradient or None) of a parameter."""
        grad, row_grad = p.grad, getattr(p, "row_grad", None)
        if grad is not None and grad.is_sparse:  # a sparse COO gradient (torch.nn.Embedding's, tests)
            from destiny.ops.functional import add_row_grads

            coo = RowSparseGrad.from_coo(grad)
            grad, row_grad = None, coo if row_grad is None else add_row_grads(row_grad, coo, p.shape[0])
        return grad, row_grad

    def _step_scalars(self, device: torch.device, alpha: float | None) -> torch.Tensor:
        """This step's (lr, 1 − μᵗ, 1 − μ₁ᵗ) in device memory, from the device step counter
        (which the launch advances): one small kernel, no host sync."""
        from destiny.ops.triton.optimizer import step_scalars

        dev = self._device
        if dev is None or dev["steps"].device != device:
            dev = self._device = {
                "steps": torch.tensor(self.steps, dtype=torch.int64, device=device),
                "consts": torch.tensor(self._device_constants(), dtype=torch.float64, device=device),
                "scalars": torch.empty(3, dtype=torch.float32, device=device)}
        if alpha is not None:
            dev["consts"][4].fill_(float(alpha))
        sched = self.schedule
        step_scalars(dev["scalars"], dev["steps"], dev["consts"], adam=self.kind == Optimizer.ADAM,
                     override=alpha is not None, schedule=0 if sched.constant else int(sched.kind),
                     warmup=sched.warmup > 0)
        return dev["scalars"]

    def _device_constants(self) -> list[float]:
        """(α, Decay, μ, μ₁, α override, W, U, r, E, γ): what ``step_scalars`` reads."""
        h = self.hyper
        return [h.alpha, h.decay, h.mu, h.mu1, 0.0, *self.schedule.constants()]

    def _sparse_step(self, w, state, grad: RowSparseGrad, lr, t, reg, scalars) -> None:
        every_row = reg or self.kind not in (Optimizer.SGD, Optimizer.ADAGRAD)  # reg: λ, λ₁ or wd ≠ 0
        if scalars is not None:
            from destiny.ops.triton.optimizer import fused_sparse_update

            fused_sparse_update(self.kind.value, w, self._states(state), grad, all_rows=every_row,
                                scalars=scalars, **self._constants(reg))
            return
        rows, values = grad.valid()  # host sync (the torch formula's path)
        if every_row and 4 * len(rows) >= w.shape[0]:
            # a quarter of the rows or more: one dense update (zeros elsewhere: the same numbers as the
            # every-row update plus the rows' own) costs fewer passes than gathering and scattering them
            dense = self._buffer(w, "dense_grad").zero_()
            dense[rows] = values.to(w.dtype)
            self._update(w, state, dense, lr, t, reg, None)
            return
        w_rows = w[rows]
        state_rows = {k: v[rows] for k, v in state.items()}
        if every_row:
            self._update(w, state, None, lr, t, reg, None)  # every row, with g = 0
        self._update(w_rows, state_rows, values, lr, t, reg, None)
        w[rows] = w_rows
        for k, v in state.items():
            v[rows] = state_rows[k]

    # -- the fused Triton kernels (destiny.ops.triton.optimizer): CUDA, or ops.functional.kernels(True)

    def _fused(self, w, state) -> bool:
        return (use_kernels(w.device) and w.dtype != torch.float64 and w.is_contiguous()
                and all(v.is_contiguous() for v in state.values()))

    def _states(self, state) -> tuple[torch.Tensor, ...]:
        return tuple(state[key] for key in _STATE[self.kind])

    def _constants(self, reg) -> dict:
        h = self.hyper
        return dict(lam=h.lam if reg else 0.0, lam1=h.lam1 if reg else 0.0, wd=h.weight_decay if reg else 0.0,
                    mu=h.mu, mu1=h.mu1)

    def _update(self, w, state, grad, lr, t, reg, scalars) -> None:
        """One update in place; grad None means a zero gradient. scalars: the fused kernel's
        device scalars, or None for the torch formula with the host's lr and t."""
        if scalars is not None:
            from destiny.ops.triton.optimizer import fused_update

            fused_update(self.kind.value, w, self._states(state), grad, scalars=scalars, **self._constants(reg))
            return
        h = self.hyper
        zero = grad is None and not (reg and (h.lam or h.lam1))  # g = 0 everywhere (rows outside a sparse batch)
        if self.kind == Optimizer.ADAM and not reg:
            self._adam(w, state, None if grad is None else grad.to(w.dtype), lr, t)
            return
        if self.kind == Optimizer.ADAM and grad is not None:
            self._adam(w, state, self._penalised(w, grad, lr), lr, t)
            return
        if zero and self.kind == Optimizer.ADAM:
            g = None  # Adam below needs no zero tensor
        else:
            g = torch.zeros_like(w) if grad is None else -grad.to(w.dtype)  # DSSTNE's g = −gradient
        if reg:
            if h.lam:
                g = g - h.lam * w
            if h.lam1:
                g = g - h.lam1 * torch.sign(w)
            if h.weight_decay:  # decoupled: w shrinks before the update adds to it; g' read the old w
                w.mul_(1.0 - lr * h.weight_decay)
        kind = self.kind
        if kind == Optimizer.SGD:
            w.add_(g, alpha=lr)
        elif kind == Optimizer.MOMENTUM:
            v = state["velocity"]
            v.mul_(h.mu).add_(g, alpha=lr)
            w.add_(v)
        elif kind == Optimizer.NESTEROV:
            v = state["velocity"]
            v_new = v * h.mu + lr * g
            w.add_(v_new + h.mu * (v_new - v))
            v.copy_(v_new)
        elif kind == Optimizer.ADAGRAD:
            v = state["sum_squares"]
            v.add_(g * g)
            w.add_(lr * g / torch.sqrt(torch.clamp(v, min=1e-9)))
        elif kind == Optimizer.RMSPROP:
            v = state["mean_squares"]
            v.mul_(h.mu).add_((1 - h.mu) * g * g)
            w.add_(lr * g / torch.sqrt(torch.clamp(v, min=1e-9)))
        elif kind == Optimizer.ADADELTA:
            s, v = state["mean_squares"], state["mean_updates"]
            s.mul_(h.mu).add_((1 - h.mu) * g * g)
            d = torch.sqrt(torch.clamp(v, min=1e-9) / torch.clamp(s, min=1e-9)) * g
            v.mul_(h.mu).add_((1 - h.mu) * d * d)
            w.add_(d)
        else:  # Adam with λ or λ₁ (g = −gradient − λw − λ₁·sign w)
            self._adam(w, state, None if g is None else -g, lr, t)

    def _penalised(self, w, grad, lr) -> torch.Tensor:
        """gradient + λw + λ₁·sign w for Adam, then a decoupled weight decay shrinks w. Bitwise
        −(−gradient − λw − λ₁·sign w), the DSSTNE form below (rounding is symmetric and negation
        exact), in 2 passes where that form takes 4 and 3 temporaries. It is written in the
        buffer of √ŝ + ε, which ``_adam`` fills only once it has read the gradient."""
        h = self.hyper
        g = self._buffer(w, "denom")
        if h.lam:
            torch.mul(w, h.lam, out=g).add_(grad.to(w.dtype))
        else:
            g.copy_(grad)
        if h.lam1:
            g.add_(torch.sign(w).mul_(h.lam1))
        if h.weight_decay:  # decoupled: w shrinks before the update adds to it; the gradient read the old w
            w.mul_(1.0 - lr * h.weight_decay)
        return g

    def _adam(self, w, state, grad, lr, t) -> None:
        """Adam as torch's single-tensor step on the gradient ``grad`` (None: zero), in place:
        8 passes over w's size; √ŝ + ε in a reused buffer (a fresh one a step costs the CPU its
        pages again)."""
        h = self.hyper
        m, s = state["first_moment"], state["second_moment"]
        if grad is None:  # m·μ + 0 and s·μ₁ + 0 are m·μ and s·μ₁
            m.mul_(h.mu)
            s.mul_(h.mu1)
        else:  # DSSTNE's g = −gradient: m moves by −(1 − μ)·gradient; s by the same square
            m.mul_(h.mu).add_(grad, alpha=-(1 - h.mu))
            s.mul_(h.mu1).addcmul_(grad, grad, value=1 - h.mu1)
        denom = torch.sqrt(s, out=self._buffer(s, "denom")).div_(math.sqrt(1 - h.mu1 ** t)).add_(1e-8)  # √ŝ + ε
        w.addcdiv_(m, denom, value=lr / (1 - h.mu ** t))  # + lr · m̂ / (√ŝ + ε)

    def _buffer(self, like: torch.Tensor, role: str) -> torch.Tensor:
        """A temporary of ``like``'s shape, dtype and device for ``role``, kept between steps."""
        key = (role, tuple(like.shape), like.dtype, like.device)
        buf = self._scratch.get(key)
        if buf is None:
            buf = self._scratch[key] = torch.empty_like(like, memory_format=torch.contiguous_format)
        return buf
