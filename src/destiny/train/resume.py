"""Checkpoints of a training run on disk: their names, the newest valid one, and whether a
command line may continue from it (``destiny train --resume``).

Names, beside NETWORK.nc (stem NETWORK):

    NETWORK.epoch<E>.nc             after epoch E                      (--checkpoint-every)
    NETWORK.epoch<E>.batch<B>.nc    after B minibatches of epoch E     (--checkpoint-batches)

A run resumed from either ends bitwise identical to the uninterrupted run: shuffling, dropout
and denoising are drawn from (seed, epoch, batch), and a checkpoint holds the weights, the
optimizer's state and step count, and (mid-epoch) the batches done and their summed loss.
Every checkpoint carries a checksum (``io.network_file``); a damaged one is skipped with a
CheckpointWarning and the next newest is used.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import warnings
from typing import Callable

from destiny.errors import CheckpointWarning, NetworkFileError, NumericalError, UsageError
from destiny.io.lock import remove_stale_temporaries as remove_temporaries
from destiny.io.network_file import NetworkFile, read_network

_NAME = re.compile(r"\.epoch(\d+)(?:\.batch(\d+))?\.nc\Z")
KEEP_BATCH_CHECKPOINTS = 2  # mid-epoch checkpoints kept: the newest and one to fall back on


def stem_of(network_path: str) -> str:
    """NETWORK for NETWORK.nc (the prefix of its checkpoints' names)."""
    return network_path[:-3] if network_path.endswith(".nc") else network_path


def checkpoint_path(stem: str, epoch: int, batch: int = 0) -> str:
    """The checkpoint after ``epoch`` epochs, or after ``batch`` minibatches of epoch ``epoch``."""
    return f"{stem}.epoch{epoch}.batch{batch}.nc" if batch else f"{stem}.epoch{epoch}.nc"


def position(path: str) -> tuple[int, int] | None:
    """(epochs done, minibatches of the next epoch done) that a checkpoint's name says."""
    match = _NAME.search(path)
    if match is None:
        return None
    epoch, batch = int(match.group(1)), int(match.group(2) or 0)
    return (epoch - 1, batch) if batch else (epoch, 0)


def checkpoints(stem: str) -> list[str]:
    """The checkpoints of NETWORK (stem), newest first."""
    found = [(position(p), p) for p in glob.glob(glob.escape(stem) + ".epoch*.nc")
             if os.path.basename(p).startswith(os.path.basename(stem) + ".epoch")]
    return [p for pos, p in sorted((x for x in found if x[0] is not None), reverse=True)]


def newest_checkpoint(stem: str) -> tuple[str, NetworkFile] | None:
    """(path, contents) of the newest checkpoint that reads whole and holds training state;
    damaged ones are skipped with a CheckpointWarning. None if there is none."""
    for path in checkpoints(stem):
        try:
            nf = read_network(path)
        except (NetworkFileError, OSError) as exc:
            warnings.warn(f"skipping checkpoint {path}: {exc}", CheckpointWarning, stacklevel=2)
            continue
        if "steps" not in nf.info or "epoch" not in nf.info:
            warnings.warn(f"skipping {path}: a network file without training state, not a checkpoint",
                          CheckpointWarning, stacklevel=2)
            continue
        return path, nf
    return None


def remove_stale_temporaries(stem: str) -> list[str]:
    """Delete the temporary files a killed run left while writing NETWORK or its checkpoints
    (``io.atomic`` names them ``.<name>.<random>.tmp``), not those of a live writer (one that
    holds the file's lock, ``io.lock``); returns their paths."""
    directory, base = os.path.split(os.path.abspath(stem))

    def ours(target: str) -> bool:
        match = _NAME.search(target)
        return target in (base, base + ".nc") or (match is not None and target[:match.start()] == base)

    return remove_temporaries(directory, ours)


def check_resumable(nf: NetworkFile, path: str, expected: dict) -> None:
    """UsageError if the checkpoint was written by a run with other settings than ``expected``
    (info keys: batch_size, seed, optimizer, shuffle, hyper.*): resuming would not continue
    that run."""
    for key, value in expected.items():
        stored = nf.info.get(key)
        if stored is None:
            continue
        same = abs(float(stored) - float(value)) <= 1e-12 * max(1.0, abs(float(value))) \
            if isinstance(value, float) else str(stored) == str(value)
        if not same:
            flag = {"batch_size": "--batch-size", "seed": "--seed", "optimizer": "--optimizer",
                    "shuffle": "--shuffle/--no-shuffle"}.get(key, "--" + key.removeprefix("hyper.").replace("lam", "lambda"))
            raise UsageError(f"{path} was written by a run with {key} = {stored}, but this command gives {value}; "
                             f"resume with the run's own options ({flag} {stored}) or start a new run without "
                             "--resume")


def prune_batch_checkpoints(stem: str, keep: int = KEEP_BATCH_CHECKPOINTS) -> None:
    """Delete all but the ``keep`` newest mid-epoch checkpoints (epoch checkpoints stay)."""
    batch_files = [p for p in checkpoints(stem) if ".batch" in os.path.basename(p)]
    for path in batch_files[keep:]:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def check_fault_options(args) -> None:
    """UsageError for negative checkpoint/NaN-check intervals or a brake factor ≤ 1 (destiny train)."""
    for flag, value in (("--checkpoint-every", args.checkpoint_every), ("--checkpoint-batches", args.checkpoint_batches),
                        ("--nan-check", args.nan_check)):
        if value is not None and value < 0:
            zero = "at the end of each epoch only" if flag == "--nan-check" else "off"
            raise UsageError(f"{flag} must be a non-negative integer (0: {zero}); got {value}")
    if args.divergence_brake is not None and not args.divergence_brake > 1:
        raise UsageError(f"--divergence-brake FACTOR must be a number above 1 (DSSTNE's is 2); got {args.divergence_brake}")


def resume_trainer(trainer, config, args, path: str, nf: NetworkFile, say: Callable[[str], None] = print) -> None:
    """Put ``trainer`` (built on the checkpoint's network) where the checkpoint at ``path`` left
    its run, after checking that the command line (``args`` of destiny train) continues it."""
    from destiny.train.checkpoint import restore_trainer, trainer_state

    if trainer.world.is_root:
        for stale in remove_stale_temporaries(stem_of(args.network)):
            say(f"Removed {stale}, left by the interrupted run")
    if nf.config != config:
        raise UsageError(f"{path} holds another network than {args.config} describes; resume with the run's own "
                         "config, or start a new run without --resume")
    expected, _ = trainer_state(trainer, optimizer_state=False)
    check_resumable(nf, path, {k: v for k, v in expected.items()
                               if k in ("batch_size", "seed", "optimizer", "shuffle") or k.startswith("hyper.")})
    restore_trainer(trainer, nf, path)
    if trainer.epoch >= args.epochs and not trainer.resume_batch:
        raise UsageError(f"{path} is after epoch {trainer.epoch} and -e asks for {args.epochs} epochs in all: "
                         "nothing is left to train; raise -e to train on")
    batch = f", minibatch {trainer.resume_batch} of epoch {trainer.epoch + 1}" if trainer.resume_batch else ""
    say(f"Resuming from {path} (after epoch {trainer.epoch}{batch}, {trainer.optimizer.steps} updates)")


class CheckpointWriter:
    """Writes a run's checkpoints (only from finite weights, so the last one written is always
    good) and remembers the newest, for the message when training diverges."""

    def __init__(self, stem: str, world, say: Callable[[str], None] = print):
        self.stem, self.world, self.say = stem, world, say
        self.last: str | None = None

    def write(self, trainer, path: str) -> None:
        from destiny.train.checkpoint import save_network, trainer_state

        trainer.check_finite()
        info, extras = trainer_state(trainer)
        fingerprint = save_network(trainer.network, path, info, extras)
        self.last = path
        self.say(f"  checkpoint {path} (fingerprint {fingerprint})")

    def every_batches(self, every: int, n_batches: int):
        """A Trainer batch callback writing a mid-epoch checkpoint every ``every`` minibatches
        (not after an epoch's last one: that is the epoch's own checkpoint)."""

        def callback(trainer, epoch: int, batches: int) -> None:
            if batches % every == 0 and batches < n_batches:
                self.write(trainer, checkpoint_path(self.stem, epoch, batches))
                if self.world.is_root:
                    prune_batch_checkpoints(self.stem)

        return callback

    @contextlib.contextmanager
    def on_divergence(self, network_path: str, resumed_from: str | None = None):
        """Turn a NumericalError into one that names the last good checkpoint."""
        try:
            yield
        except NumericalError as exc:
            last = self.last or resumed_from
            where = (f"the last good checkpoint is {last}: continue from it with --resume (and a lower --alpha or "
                     "--divergence-brake)" if last else
                     "no checkpoint was written (--checkpoint-every N, --checkpoint-batches N)")
            raise NumericalError(f"{exc}; {where}; {network_path} was not written") from None
