"""DSSTNE's error functions as element-wise loss terms (reference/dsstne.md §1.4).

``element_loss(e, t)`` is the loss of output units with activations ``e.a`` (and logs
``e.log_a``, ``e.log_1ma`` computed stably from the pre-activations) against targets ``t``;
it is written once for any target, so the sparse-target path can evaluate it with t = 0
everywhere and then correct only the nonzero targets (DSSTNE's two-pass trick, see
``destiny.ops.reference.output_loss_ref``). Losses are sums (DSSTNE reports the sum over the
batch divided by the number of examples); the gradient of the sum is DSSTNE's output delta.

Multinomial (a Destiny extension, Liang et al. 2018's Mult-DAE/Mult-VAE likelihood) is
−Σ_i t_i·log softmax(z)_i over the whole output, t_i the target's value or 1 for an indicator
target — not divided by the example's number of targets, as SoftMax + CrossEntropy does
(``ops.reference.output_loss_ref``). It needs a SoftMax output; no DeltaBoost.

Differences from DSSTNE, on purpose: logs come from log-sigmoid / log-softmax of the
pre-activation instead of clamping log(a) at 1e-12; CrossEntropy-type losses need a Sigmoid
or SoftMax output and say so (DSSTNE silently computed no delta); L1/L2/Hinge/L2Hinge
gradients go through any activation's true derivative (including SoftMax's Jacobian).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from destiny.config import Activation, ErrorFunction, LayerConfig, NetworkConfig
from destiny.errors import ConfigError
from destiny.nn.activations import ActivationSpec, activate

CROSS_ENTROPY_FAMILY = (ErrorFunction.CROSS_ENTROPY, ErrorFunction.SCALED_MARGINAL_CROSS_ENTROPY,
                        ErrorFunction.DATA_SCALED_MARGINAL_CROSS_ENTROPY)
BOOSTED = (ErrorFunction.CROSS_ENTROPY, ErrorFunction.L2)


@dataclass(frozen=True)
class LossSpec:
    """The error function of one output layer with everything it needs."""

    error_function: ErrorFunction
    activation: ActivationSpec
    one_target: float = 0.9
    zero_target: float = 0.1
    one_scale: float = 1.0
    zero_scale: float = 1.0
    boost_one: float = 1.0
    boost_zero: float = 1.0

    @classmethod
    def of(cls, config: NetworkConfig, layer: LayerConfig, source: str = "<config>") -> "LossSpec":
        act = ActivationSpec.of(config, layer)
        fn = config.error_function
        if fn == ErrorFunction.MULTINOMIAL and act.kind != Activation.SOFTMAX:
            where = next((f"Layers[{i}].Activation" for i, other in enumerate(config.layers) if other is layer),
                         "Activation")
            raise ConfigError(
                f"{source}: {where} (layer '{layer.name}'): Multinomial is the log-likelihood of a SoftMax output "
                f"(−Σ t·log softmax(z)), but the Activation is {act.kind.json}; give the Output layer "
                "\"Activation\": \"SoftMax\", or use CrossEntropy with a Sigmoid output")
        if fn in CROSS_ENTROPY_FAMILY and act.kind not in (Activation.SIGMOID, Activation.SOFTMAX):
            raise ConfigError(
                f"{source}: layer '{layer.name}': {fn.json} needs a Sigmoid or SoftMax output "
                f"(its outputs are probabilities), but the Activation is {act.kind.json}; "
                "use Sigmoid/SoftMax, or an L2/L1/Hinge error function")
        s, b = config.smce, config.delta_boost
        return cls(fn, act, s.one_target, s.zero_target, s.one_scale, s.zero_scale, b.one, b.zero)


class Outputs:
    """Activations of an output layer with the logs the cross-entropy losses need."""

    def __init__(self, z: torch.Tensor, spec: LossSpec):
        self.z = z
        self.a = activate(z, spec.activation)
        self.kind = spec.activation.kind

    def gather(self, rows: torch.Tensor, cols: torch.Tensor) -> "Outputs":
        """The same quantities at (row, column) positions of a (batch, units) output."""
        picked = Outputs.__new__(Outputs)
        picked.kind, picked.z, picked.a = self.kind, self.z[rows, cols], self.a[rows, cols]
        if self.kind == Activation.SOFTMAX:
            picked._log_a = self.log_a[rows, cols]
        return picked

    @property
    def log_a(self) -> torch.Tensor:
        if not hasattr(self, "_log_a"):
            self._log_a = F.logsigmoid(self.z) if self.kind == Activation.SIGMOID else \
                torch.log_softmax(self.z, dim=1)
        return self._log_a

    @property
    def log_1ma(self) -> torch.Tensor:
        if self.kind == Activation.SIGMOID:
            return F.logsigmoid(-self.z)
        return torch.log1p(-self.a.clamp(max=1 - 1e-7))


def element_loss(e: Outputs, t: torch.Tensor | float, spec: LossSpec) -> torch.Tensor:
    """Loss of each output unit for target t (any shape broadcasting with e.a)."""
    fn, a = spec.error_function, e.a
    t = torch.as_tensor(t, dtype=a.dtype, device=a.device)
    if fn == ErrorFunction.L1:
        loss = (a - t).abs()
    elif fn == ErrorFunction.L2:
        loss = 0.5 * (a - t) ** 2
    elif fn == ErrorFunction.CROSS_ENTROPY:
        loss = -t * e.log_a if e.kind == Activation.SOFTMAX else -(t * e.log_a + (1 - t) * e.log_1ma)
    elif fn == ErrorFunction.MULTINOMIAL:  # SoftMax only (LossSpec.of): a zero target costs 0
        loss = -t * e.log_a
    elif fn in (ErrorFunction.SCALED_MARGINAL_CROSS_ENTROPY, ErrorFunction.DATA_SCALED_MARGINAL_CROSS_ENTROPY):
        one = torch.where(a < spec.one_target, -spec.one_scale * e.log_a, torch.zeros_like(a))
        if fn == ErrorFunction.DATA_SCALED_MARGINAL_CROSS_ENTROPY:
            one = one * t
        zero = torch.where(a > spec.zero_target, -spec.zero_scale * e.log_1ma, torch.zeros_like(a))
        loss = torch.where(t > 0, one, zero)
    elif fn == ErrorFunction.HINGE:
        loss = torch.clamp(1 - t * a, min=0)
    else:  # L2Hinge
        d = a - t.abs()
        d = torch.where(t > 0, torch.clamp(d, max=0), torch.clamp(d, min=0))
        loss = 0.5 * d * d
    if fn in BOOSTED and (spec.boost_one != 1 or spec.boost_zero != 1):
        loss = loss * torch.where(t > 0, spec.boost_one, spec.boost_zero).to(loss.dtype)
    return loss


def target_columns(target, spec: LossSpec, lo: int, hi: int, dtype: torch.dtype):
    """Columns [lo, hi) of an output layer's targets, for one rank of a layer split over ranks
    (sparse: renumbered from 0). Indicator targets of SoftMax + CrossEntropy first become
    1/#targets of the whole row, so that each rank's part of the distribution is the row's."""
    from destiny.ops.sparse import SparseBatch

    if not isinstance(target, SparseBatch):
        return target.flatten(1)[:, lo:hi]
    if target.values is None and spec.activation.kind == Activation.SOFTMAX and \
            spec.error_function == ErrorFunction.CROSS_ENTROPY:
        lengths = torch.cat([target.lengths, target.lengths.new_ones(1)]).clamp(min=1)
        ones = torch.ones(target.nnz, dtype=dtype, device=target.device)
        spread = SparseBatch(target.offsets, target.indices, ones / lengths[target.rows()].to(dtype),
                             target.n_features, target.weights, target.ignore_zero, target.padded)
        spread._rows = target.rows()
        target = spread
    return target.columns(lo, hi)
