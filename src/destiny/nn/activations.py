"""Activation functions of DSSTNE's layers, all of them working (DSSTNE left SoftPlus and
SoftSign as the identity). Parameters come from the layer, else the network (config)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from destiny.config import Activation, LayerConfig, NetworkConfig

SELU_ALPHA = 1.6732632423543772  # the self-normalising alpha (Klambauer et al. 2017)


@dataclass(frozen=True)
class ActivationSpec:
    """An activation with its parameters: ``slope`` (LRelu), ``alpha`` (ELU, SELU), ``lam`` (SELU)."""

    kind: Activation
    slope: float = 1.0
    alpha: float = 1.0
    lam: float = 1.050701

    @classmethod
    def of(cls, config: NetworkConfig, layer: LayerConfig) -> "ActivationSpec":
        alpha = config.elu_alpha_of(layer)
        if layer.activation == Activation.SELU and layer.elu_alpha is None and config.elu_alpha == 1.0:
            # DSSTNE used ELUAlpha's default 1.0 for SELU, which is not SELU; Destiny uses SELU's
            # own alpha unless a file or config sets one (reference/dsstne.md §13).
            alpha = SELU_ALPHA
        return cls(layer.activation, config.relu_slope_of(layer), alpha, config.selu_lambda_of(layer))


def activate(z: torch.Tensor, spec: ActivationSpec) -> torch.Tensor:
    """Apply the activation to pre-activations z of shape (batch, units...)."""
    kind = spec.kind
    if kind == Activation.SIGMOID:
        return torch.sigmoid(z)
    if kind == Activation.TANH:
        return torch.tanh(z)
    if kind == Activation.RELU:
        return torch.relu(z)
    if kind == Activation.LEAKY_RELU:
        return torch.where(z > 0, z, z * spec.slope)
    if kind == Activation.ELU:
        return torch.where(z > 0, z, spec.alpha * torch.expm1(torch.clamp(z, max=0)))
    if kind == Activation.SELU:
        return spec.lam * torch.where(z > 0, z, spec.alpha * torch.expm1(torch.clamp(z, max=0)))
    if kind == Activation.SOFTPLUS:
        return F.softplus(z)
    if kind == Activation.SOFTSIGN:
        return z / (1 + z.abs())
    if kind == Activation.SOFTMAX:
        return torch.softmax(z.flatten(1), dim=1).view_as(z)
    # Linear, and ReluMax / LinearMax, which DSSTNE never implemented (the identity)
    return z
