"""Out of GPU memory: how much a training run needs, and the batch size that would fit.

The estimate is coarse on purpose (it has to be right within a factor of two, not exact): the
parameters, their gradients and the optimizer's state are fixed; every example of a batch
costs about four values of every hidden unit (pre-activation, activation, dropout output,
gradient) and three of every output unit (output, delta, loss terms), at the network's
parameter dtype. The suggestion is the largest power of two that fits in 90% of the
device's memory with that model, and at most half the batch that failed.
"""

from __future__ import annotations

import torch

from destiny.errors import ResourceError
from destiny.config.enums import LayerKind

HIDDEN_VALUES = 4  # values kept per hidden unit and example during a training step
OUTPUT_VALUES = 3  # per output unit and example
HEADROOM = 0.9  # the share of the device's memory a run may plan on


def fixed_bytes(trainer) -> int:
    """Bytes of parameters, gradients and optimizer state (this process's shards)."""
    params = sum(p.numel() * p.element_size() for p in trainer.network.parameters())
    state = sum(t.numel() * t.element_size() for st in trainer.optimizer.state.values() for t in st.values())
    return 2 * params + state


def bytes_per_example(network) -> int:
    """Activation bytes one example of a batch needs during a training step."""
    size = torch.empty((), dtype=network.dtype).element_size()
    total = 0
    for layer in network.config.layers:
        if layer.kind == LayerKind.INPUT:
            continue
        per_unit = OUTPUT_VALUES if layer.kind == LayerKind.OUTPUT else HIDDEN_VALUES
        total += per_unit * network.units[layer.name] * size
    return max(total, 1)


def device_memory(device: torch.device) -> tuple[int, int]:
    """(free, total) bytes of a CUDA device, after returning cached blocks to the driver."""
    torch.cuda.empty_cache()
    return torch.cuda.mem_get_info(device)


def suggested_batch_size(trainer, total: int) -> int:
    """The largest power of two that fits in ``total`` bytes by the estimate, at most half
    the trainer's batch size, at least 1."""
    room = HEADROOM * total - fixed_bytes(trainer)
    fits = int(room // bytes_per_example(trainer.network)) if room > 0 else 0
    limit = max(1, min(fits, trainer.batch_size // 2))
    return 1 << (limit.bit_length() - 1)


def out_of_memory(trainer, exc: BaseException) -> ResourceError:
    """The ResourceError for a CUDA out-of-memory error raised while ``trainer`` trained."""
    device = trainer.device
    try:
        _, total = device_memory(device)
    except Exception:  # the device is unusable: say what is known
        return ResourceError(f"out of GPU memory on {device} at batch size {trainer.batch_size} ({exc}); "
                             f"try --batch-size {max(1, trainer.batch_size // 2)}")
    fixed = fixed_bytes(trainer)
    per_example = bytes_per_example(trainer.network)
    suggestion = suggested_batch_size(trainer, total)
    if fixed > HEADROOM * total:
        advice = ("the parameters alone do not fit: train model parallel on several GPUs (torchrun "
                  "--nproc-per-node N destiny train …) or make the network smaller")
    else:
        advice = (f"--batch-size {suggestion} should fit (or --precision bf16, or model parallel on several "
                  "GPUs)")
    return ResourceError(
        f"out of GPU memory on {device} ({total / 2**30:.1f} GiB) at batch size {trainer.batch_size}: the "
        f"parameters, gradients and optimizer state take about {fixed / 2**30:.2f} GiB and each example about "
        f"{per_example / 2**20:.2f} MiB of activations; {advice}")
