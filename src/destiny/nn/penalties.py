"""DSSTNE's regularisation terms of a training pass: DeltaNorm (each example's delta clipped to
a norm, ``ClipRowGrad``), the SparsenessPenalty of sparse hidden layers
(``sparseness_penalty``) and WeightNorm after each update (``apply_weight_norms``). The Network
applies them (``nn.network``); convolutional layers use the clip too (``nn.conv``)."""

from __future__ import annotations

import torch

from destiny.config import LayerKind, NetworkConfig
from destiny.parallel import OUTPUT, all_reduce

PENALTY_CLAMP = (1e-6, 0.999999)  # DSSTNE's MIN_ACTIVATION / MAX_ACTIVATION


class ClipRowGrad(torch.autograd.Function):
    """Identity forward; backward rescales each example's gradient to norm ≤ max_norm / batch
    (DSSTNE's DeltaNorm on the delta, which is batch × the gradient of the mean loss)."""

    @staticmethod
    def forward(ctx, z, max_norm, world=None):
        ctx.max_norm, ctx.world = max_norm, world
        return z.view_as(z)

    @staticmethod
    def backward(ctx, grad):
        limit = ctx.max_norm / grad.shape[0]
        if ctx.world is not None and ctx.world.parallel:  # the whole row's norm: squares all-reduced
            norms = all_reduce(grad.flatten(1).pow(2).sum(1), ctx.world).sqrt().clamp(min=1e-30)
        else:
            norms = grad.flatten(1).norm(dim=1).clamp(min=1e-30)
        scale = torch.clamp(limit / norms, max=1.0).view(-1, *([1] * (grad.dim() - 1)))
        return grad * scale, None, None


def sparseness_penalty(config: NetworkConfig, values) -> torch.Tensor | None:
    """β·KL(p‖ρ̂) per sparse hidden unit, ρ̂ its mean activation over the batch (``values``: the
    layers' activations by name); times the batch so that its gradient per example is DSSTNE's
    delta term. None when no hidden layer is Sparse with β > 0."""
    total = None
    for layer in config.layers:
        if layer.kind != LayerKind.HIDDEN or not layer.sparse:
            continue
        pen = config.sparseness_penalty_of(layer)
        if pen.beta <= 0:
            continue
        a = values[layer.name]
        rho = a.mean(0).clamp(*PENALTY_CLAMP)
        p = min(max(pen.p, PENALTY_CLAMP[0]), PENALTY_CLAMP[1])
        kl = p * torch.log(p / rho) + (1 - p) * torch.log((1 - p) / (1 - rho))
        term = pen.beta * a.shape[0] * kl.sum()
        total = term if total is None else total + term
    return total


@torch.no_grad()
def apply_weight_norms(network) -> None:
    """DSSTNE's WeightNorm: rescale each output unit's incoming weight vector to norm ≤ limit
    (per output channel for a convolution, ``nn.conv``; model parallel, a matrix split by rows
    sums its columns' squares over the ranks)."""
    from destiny.nn import conv

    for spec in network.specs:
        limit = network.config.layer(spec.output_layer).weight_norm
        if limit > 0 and not spec.shared_from:
            w = network.weights[f"w{spec.index}"]
            if spec.convolutional:
                conv.apply_weight_norm(w, limit)
                continue
            if network.world.parallel and network.plan[spec.index].mode != OUTPUT:  # rows split: whole columns
                norms = all_reduce(w.pow(2).sum(0), network.world).sqrt().clamp(min=1e-30)
            else:
                norms = w.norm(dim=0).clamp(min=1e-30)
            w.mul_(torch.clamp(limit / norms, max=1.0))
