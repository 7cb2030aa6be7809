"""Where the random numbers of a training step come from: dropout and denoising draw from
counter-based streams keyed by (seed, purpose, epoch, step, layer) (``destiny.ops.random``), so a
run is reproducible and a resumed run draws the same numbers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import torch

from destiny.ops.random import stream_seed


@dataclass(frozen=True)
class Noise:
    """Where the random numbers of one training step come from."""

    seed: int
    epoch: int
    step: int

    def seed_for(self, purpose: str, layer: str) -> int | torch.Tensor:
        return stream_seed(self.seed, purpose, self.epoch, self.step, layer)


@dataclass(frozen=True)
class DeviceNoise(Noise):
    """Noise whose seeds sit in device memory: ``seeds[slots[(purpose, layer)]]`` (0-d int64
    views), filled by the caller with ``Noise.seed_for``'s numbers before each step, so that a
    CUDA graph of the step draws each step's numbers (the kernels read the seed)."""

    seeds: torch.Tensor | None = None
    slots: Mapping[tuple[str, str], int] | None = None

    def seed_for(self, purpose: str, layer: str) -> torch.Tensor:
        slot = self.slots.get((purpose, layer)) if self.slots is not None else None
        if slot is None:
            raise KeyError(f"no device seed for the {purpose} stream of layer '{layer}'; "
                           "Network.noise_streams() must list every stream the forward pass draws")
        return self.seeds[slot]
