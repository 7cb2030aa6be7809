"""Early stopping: follow one validation number, keep the best epoch's weights, stop after a
patience, restore the best weights when training ends.

    stopping = EarlyStopping("ndcg@100", patience=5)            # or Trainer(..., monitor=, patience=)
    stopping.update(epoch, value, network)    # after each validation; True when it improved
    stopping.should_stop                      # patience validations in a row without improvement
    stopping.restore(network)                 # the best epoch's parameters and buffers, in place

Ranking metrics are better higher, the validation loss ("validation_error") lower. An
improvement is strictly better than the best so far (a NaN never is). The best weights are a
copy of every parameter and buffer (``BestWeights``): on the network's GPU when twice their
size is free there (a device-to-device copy per improvement: about the time of one optimizer
step), else in host memory (a device-to-host copy per improvement); one more network's worth
of memory either way. Restoring copies them back into the same tensors (``Tensor.copy_``), so
a captured CUDA graph's addresses stay valid. The optimizer's state is not part of it: it stays
the last epoch's. Model parallel: each process keeps its own shards; the processes compute
the same metrics, so they take the same decisions.
"""

from __future__ import annotations

import math

import torch

from destiny.errors import UsageError


class BestWeights:
    """A copy of a network's parameters and buffers (``snapshot``), put back by ``restore``."""

    def __init__(self):
        self.tensors: dict[str, torch.Tensor] = {}
        self.where: str | None = None  # "device" or "host"

    @staticmethod
    def _state(network) -> dict[str, torch.Tensor]:
        seen, out = set(), {}
        for name, t in list(network.named_parameters()) + list(network.named_buffers()):
            if id(t) not in seen:
                seen.add(id(t))
                out[name] = t
        return out

    def snapshot(self, network) -> None:
        state = self._state(network)
        if not self.tensors:
            size = sum(t.numel() * t.element_size() for t in state.values())
            device = next(iter(state.values())).device if state else torch.device("cpu")
            on_device = device.type != "cuda" or torch.cuda.mem_get_info(device)[0] > 2 * size
            self.where = "device" if on_device else "host"
            self.tensors = {name: torch.empty_like(t, device=t.device if on_device else "cpu")
                            for name, t in state.items()}
        with torch.no_grad():
            for name, t in state.items():
                self.tensors[name].copy_(t.detach())

    def restore(self, network) -> None:
        with torch.no_grad():
            for name, t in self._state(network).items():
                t.copy_(self.tensors[name])


class EarlyStopping:
    """Follows ``monitor`` (a ranking metric name such as "ndcg@100", or "validation_error"):
    records the best value and epoch, counts validations without improvement, and keeps the
    best weights when ``restore_best``. patience None: never stops early (still keeps and
    restores the best); 0: stops at the first validation that does not improve."""

    def __init__(self, monitor: str = "ndcg@100", patience: int | None = None, restore_best: bool = True):
        from destiny.train.validation import LOSS_MONITOR, metric_name

        if patience is not None and (isinstance(patience, bool) or int(patience) != patience or patience < 0):
            raise UsageError(f"patience must be a whole number of validations ≥ 0 (or None: never stop early); "
                             f"got {patience!r}")
        self.monitor = metric_name(monitor)
        self.lower_is_better = self.monitor == LOSS_MONITOR
        self.patience = None if patience is None else int(patience)
        self.restore_best = bool(restore_best)
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.bad = 0  # validations since the best
        self.should_stop = False
        self.weights = BestWeights() if self.restore_best else None

    def value(self, result) -> float | None:
        """The monitored number of an EpochResult (None: not validated that epoch)."""
        if self.lower_is_better:
            return result.validation_error
        return (result.metrics or {}).get(self.monitor)

    def improved(self, value: float) -> bool:
        if value is None or not math.isfinite(value):
            return False
        if self.best is None:
            return True
        return value < self.best if self.lower_is_better else value > self.best

    def update(self, epoch: int, value: float | None, network) -> bool:
        """After a validation of ``epoch``: True when it is the best so far (its weights kept)."""
        if value is None:
            return False
        if self.improved(value):
            self.best, self.best_epoch, self.bad = float(value), int(epoch), 0
            if self.weights is not None:
                self.weights.snapshot(network)
            return True
        self.bad += 1
        if self.patience is not None and self.bad >= max(self.patience, 1):
            self.should_stop = True
        return False

    def restore(self, network) -> bool:
        """Put the best epoch's weights back (if kept and any); True when it did."""
        if self.weights is None or self.best_epoch is None:
            return False
        self.weights.restore(network)
        return True

    def state(self) -> dict:
        return {"monitor": self.monitor, "best": self.best, "best_epoch": self.best_epoch,
                "patience": self.patience, "stopped_early": self.should_stop}


__all__ = ["BestWeights", "EarlyStopping"]
