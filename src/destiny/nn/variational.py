"""Variational layers (Mult-VAE: Liang et al. 2018, "Variational Autoencoders for Collaborative
Filtering"): a Gaussian latent code, its reparameterised sample and the KL term.

A Hidden FullyConnected layer with ``"Variational": true`` and N units has incoming matrices of
(input units, 2N) and biases of 2N (``config.shapes.weight_specs``; network files store them so).
Its pre-activation z (batch, 2N) is split into the mean μ = z[:, :N] and the log-variance
logvar = z[:, N:]. Its value is

    training   μ + ε·exp(½·logvar), ε ~ N(0, 1): element (b, j) is normal number b·N + j of the
               stream (seed, "variational", epoch, step, layer) (``ops.random.normal_at``; the
               Triton kernel ``ops.triton.normal`` on the kernel path, the seed read from device
               memory there), so a run is bitwise reproducible and a resumed run draws the same ε;
    evaluation μ (predict, encode, recommend: ``destiny encode`` writes the means).

Its Activation must be Linear (``config.validate``): the value is the sample itself; a
nonlinearity belongs on the next layer. Dropout (pDropout) applies to the sample.

In training the loss gets a part "KL": β_t·Σ_b ½·Σ_j (μ² + exp(logvar) − 1 − logvar), summed over
the batch and the variational layers like every part of ``Network.loss``, with β_t =
Beta·min(1, t / AnnealSteps) from the top-level "KL" key (``config.schema.KLDivergence``), t the
optimizer's updates done before this step: a Python int on the reference path, a 0-d int64
device tensor on the captured one (``train.step`` uploads it with the step's seeds), computed
the same way in float64 and rounded to the loss's dtype, so both paths give the same bits.

Costs, per example and layer: 2N values read, N normals drawn (one Philox call, a log, a cos
and a sqrt each), N written; ε (batch, N) is kept for backward. Model parallel (units split
over processes) is refused: μ and logvar of one unit would have to sit on one rank.
"""

from __future__ import annotations

import torch

from destiny.config import LayerConfig, NetworkConfig
from destiny.config.schema import KLDivergence
from destiny.errors import ConfigError
from destiny.ops.functional import use_kernels
from destiny.ops.random import normal_at

STREAM = "variational"  # the purpose of the ε stream: seeds are stream_seed(seed, STREAM, epoch, step, layer)
PART = "KL"  # the name of the loss part


def check_world(config: NetworkConfig, world, source: str = "<config>") -> None:
    """ConfigError when a variational layer would be split over several processes."""
    if not world.parallel:
        return
    for i, layer in enumerate(config.layers):
        if layer.variational:
            raise ConfigError(f"{source}: Layers[{i}].Variational (layer '{layer.name}'): variational layers "
                              f"run in one process; this run has {world.size} (model parallel splits every "
                              "layer's units, and μ and log-variance must stay together); train this network "
                              "in one process")


def standard_normal(shape: tuple[int, int], seed: int | torch.Tensor, device: torch.device) -> torch.Tensor:
    """(batch, N) float32 ε: element (b, j) is normal number b·N + j of the stream of ``seed``
    (an int, or a 0-d int64 tensor on ``device``: read on the device, no host sync on either
    path). The Triton kernel where the kernels run, ``ops.random.normal_at`` otherwise."""
    n = shape[0] * shape[1]
    if use_kernels(device):
        from destiny.ops.triton.normal import standard_normal as kernel

        return kernel(n, seed, device).view(shape)
    return normal_at(seed, torch.arange(n, device=device)).view(shape)


def split(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(μ, logvar), each (batch, N), of a variational layer's pre-activation z (batch, 2N), in
    float32 at least (float64 stays float64) whatever the matmul's precision."""
    z = z.to(torch.promote_types(z.dtype, torch.float32))
    n = z.shape[1] // 2
    return z[:, :n], z[:, n:]


def kl_per_example(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """(batch,) KL(N(μ, exp(logvar)) ‖ N(0, 1)) = ½·Σ_j (μ² + exp(logvar) − 1 − logvar)."""
    return 0.5 * (mu * mu + torch.exp(logvar) - 1.0 - logvar).sum(1)


def sample(layer: LayerConfig, z: torch.Tensor, noise, kl: dict[str, torch.Tensor]) -> torch.Tensor:
    """The layer's value from its pre-activation z (batch, 2N): μ without ``noise``
    (evaluation); with it (training) μ + ε·exp(½·logvar), and the layer's KL summed over the
    batch (a 0-d tensor) stored in ``kl`` under the layer's name."""
    mu, logvar = split(z)
    if noise is None:
        return mu
    eps = standard_normal(tuple(mu.shape), noise.seed_for(STREAM, layer.name), mu.device).to(mu.dtype)
    kl[layer.name] = kl_per_example(mu, logvar).sum()
    return mu + eps * torch.exp(0.5 * logvar)


def kl_weight(kl: KLDivergence, updates: int | torch.Tensor | None) -> float | torch.Tensor:
    """β_t = Beta·min(1, t / AnnealSteps) for t = ``updates`` (the updates done: an int, or a 0-d
    int64 tensor, giving a float64 tensor with the same value); Beta when AnnealSteps is 0 or
    t is None (the fully annealed weight)."""
    if kl.anneal_steps <= 0 or updates is None:
        return kl.beta
    if isinstance(updates, torch.Tensor):
        return torch.clamp(updates.to(torch.float64) / kl.anneal_steps, max=1.0) * kl.beta
    return min(1.0, updates / kl.anneal_steps) * kl.beta


def kl_part(config: NetworkConfig, kl: dict[str, torch.Tensor],
            updates: int | torch.Tensor | None) -> torch.Tensor | None:
    """β_t × the KL sums the training forward pass stored (``sample``), or None without
    variational layers. β is rounded to the sums' dtype first (same bits from an int or a
    device counter)."""
    if not kl:
        return None
    total = torch.stack(list(kl.values())).sum()
    beta = kl_weight(config.kl, updates)  # a Python float multiplies in the tensor's dtype too
    return (beta.to(total.dtype) if isinstance(beta, torch.Tensor) else beta) * total


__all__ = ["PART", "STREAM", "check_world", "kl_part", "kl_per_example", "kl_weight", "sample", "split",
           "standard_normal"]
