"""Faults during training and writing: NaN/Inf named by batch, epoch and layer with the last
good checkpoint kept; a divergence that stays finite warned of, once, with the fix; DSSTNE's
divergence brake; out of GPU memory with the batch size that
would fit; a full disk or a denied directory with nothing partial left."""

from __future__ import annotations

import errno
import math
import re

import pytest
import torch

from destiny.cli.main import main
from destiny.data import SparseDataset, write_netcdf
from destiny.errors import NumericalError, NumericalWarning, ResourceError
from destiny.io import atomic
from destiny.io.network_file import read_network
from destiny.train import memory
from destiny.train.faults import DivergenceBrake
from destiny.train.optimizers import DsstneOptimizer
from destiny.train.trainer import Trainer
from tests.hardening.helpers import train_args, write_problem
from tests.helpers import clustered_dataset
from tests.train.test_trainer import autoencoder

DATA = clustered_dataset(160, 40, seed=5)
SETS = {"in": DATA, "out": DATA}  # 10 minibatches of 16


def poison(parameter: str, epoch: int, batch: int):
    """A batch callback that writes NaN into a parameter after minibatch ``batch`` of ``epoch``."""

    def callback(trainer, e, b):
        if (e, b) == (epoch, batch):
            with torch.no_grad():
                dict(trainer.network.named_parameters())[parameter].view(-1)[3] = float("nan")

    return callback


@pytest.mark.parametrize("nan_check", [1, 0, 4], ids=["every-batch", "epoch-end", "every-4"])
def test_nan_is_named_by_batch_epoch_and_layer(nan_check):
    trainer = Trainer(autoencoder(40), "adam", batch_size=16, progress=False, nan_check=nan_check)
    trainer.batch_callbacks.append(poison("weights.w1", epoch=2, batch=3))  # w1: h → out
    with pytest.raises(NumericalError) as info:
        trainer.fit(SETS, 3)
    message = str(info.value)
    where = "batch 4 of 10 in epoch 2" if nan_check == 1 else f"one of batches 1–{nan_check or 10} of 10 in epoch 2"
    assert f"training diverged: NaN/Inf appeared in the parameters at {where}" in message
    assert "while the loss stayed finite" in message
    assert "NaN/Inf values are in the parameters of layer 'h' (weights.w0: " in message  # spread backward
    assert "layer 'out' (weights.w1: " in message
    assert trainer.epoch == 1  # epoch 2 did not complete


def test_checkpoints_are_never_written_from_nan_weights():
    trainer = Trainer(autoencoder(40), "sgd", batch_size=16, progress=False)
    trainer.fit(SETS, 1)
    with torch.no_grad():
        trainer.network.biases["b0"][0] = float("inf")
    with pytest.raises(NumericalError, match=r"layer 'h' \(biases.b0: 1 value\) after 10 updates; not writing a checkpoint"):
        trainer.check_finite()


def test_cli_divergence_keeps_the_last_good_checkpoint(tmp_path, capsys, monkeypatch):
    write_problem(tmp_path)  # 200 examples: 25 minibatches of 8
    step = DsstneOptimizer.step

    def poisoned_step(self, alpha=None):  # update 30 (epoch 2, minibatch 5) blows up the output layer
        step(self, alpha)
        if self.steps == 30:
            self.params["weights.w1"].data[0, 0] = float("inf")

    monkeypatch.setattr(DsstneOptimizer, "step", poisoned_step)
    status = main(train_args(tmp_path, "net.nc", "-e", "3", "--checkpoint-every", "1", "--checkpoint-batches", "4"))
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1
    assert "NaN/Inf appeared in the parameters at batch 5 of 25 in epoch 2" in err
    assert "layer 'Output' (weights.w1: 1 value)" in err
    last = tmp_path / "net.epoch2.batch4.nc"
    assert f"the last good checkpoint is {last}: continue from it with --resume" in err
    assert "net.nc was not written" in err and not (tmp_path / "net.nc").exists()
    kept = read_network(last)  # whole, verified, finite
    assert all(math.isfinite(float(w.weights.sum())) for w in kept.weights)
    assert (tmp_path / "net.epoch1.nc").exists()


def test_a_diverging_run_that_stays_finite_warns_once_with_the_fix(tmp_path, capsys, monkeypatch):
    write_problem(tmp_path)
    step = DsstneOptimizer.step

    def exploding_step(self, alpha=None):  # update 30 (epoch 2) takes the output biases to ±1e4: a loss of ~1e5
        step(self, alpha)
        if self.steps == 30:
            self.params["biases.b1"].data.mul_(1e5)

    monkeypatch.setattr(DsstneOptimizer, "step", exploding_step)
    assert main(train_args(tmp_path, "net.nc", "-e", "3")) == 0  # finite: the network is written, with a warning
    err = capsys.readouterr().err
    assert err.count("destiny: warning: training is diverging") == 1, err  # once, not at every epoch after
    assert "training is diverging at epoch 2: the training error grew to " in err
    assert re.search(r"an example from \d+\.?\d* in the first minibatch; the network will predict poorly", err), err
    assert "Lower the learning rate (--alpha, now 0.01) or turn on the divergence brake (--divergence-brake)" in err
    assert (tmp_path / "net.nc").exists()


def test_a_parameter_grown_past_a_million_times_its_start_warns(recwarn):
    trainer = Trainer(autoencoder(40), "sgd", batch_size=16, progress=False)
    trainer.fit(SETS, 1)
    assert not [w for w in recwarn if issubclass(w.category, NumericalWarning)]  # a healthy epoch: no warning

    def kill_unit(tr, epoch, batch):  # a hidden unit's bias of -1e8: a dead unit, the loss unchanged
        if (epoch, batch) == (2, 1):
            with torch.no_grad():
                tr.network.biases["b0"][0] = -1e8

    trainer.batch_callbacks.append(kill_unit)
    with pytest.warns(NumericalWarning, match=r"training is diverging at epoch 2: a parameter grew to 1e\+08 from "
                                              r"at most 0\.\d+ before training; the network will predict poorly"):
        trainer.fit(SETS, 1)


def test_the_brake_follows_dsstne():
    brake = DivergenceBrake(warmup=30)  # EMA = 0.9 EMA + 0.1 error from 0: after 30 ones, 0.958
    decisions = [brake.decide(e) for e in [1.0] * 31 + [5.0, 1.0]]
    assert decisions[:31] == [(True, 1.0)] * 31
    assert decisions[31] == (False, 0.1)  # 5 > 2 × EMA: skip the update
    assert decisions[32] == (True, 0.1) and brake.cooling == 23 and brake.triggers == 1
    assert DivergenceBrake(warmup=0).decide(1.0) == (True, 1.0)  # the first batch has no average to exceed
    with pytest.raises(ValueError, match="factor > 1"):
        DivergenceBrake(factor=0.5)


def test_the_brake_skips_the_update_and_cuts_the_rate(monkeypatch):
    errors = iter([1.0, 0.1, 0.1, 50.0] + [0.1] * 100)  # EMA 0.1, 0.1, 0.1: the fourth triggers
    monkeypatch.setattr("destiny.train.trainer.batch_error", lambda *a: next(errors))
    trainer = Trainer(autoencoder(40), "sgd", batch_size=16, progress=False,
                      brake=DivergenceBrake(warmup=2, batches=3))
    alphas = []
    run = trainer.runner.__func__

    def spy_runner(self, binding):
        runner = run(self, binding)
        if not getattr(runner, "spied", False):
            inner = runner.run
            runner.run = lambda *a: (alphas.append(self.optimizer.learning_rate()), inner(*a))
            runner.spied = True
        return runner

    monkeypatch.setattr(Trainer, "runner", spy_runner)
    result = trainer.fit(SETS, 1)[0]
    assert trainer.optimizer.steps == 9  # 10 minibatches, one skipped
    assert alphas == pytest.approx([0.025] * 3 + [0.0025] * 3 + [0.025] * 3, rel=1e-12)
    assert result.extra == {"brake_triggers": 1} and trainer.optimizer.hyper.alpha == 0.025
    assert not trainer.cuda_graphs


def test_out_of_gpu_memory_names_a_batch_size_that_fits(tmp_path, capsys, monkeypatch):
    write_problem(tmp_path)

    def oom(self, binding, check):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(Trainer, "_epoch", oom)
    monkeypatch.setattr(memory, "device_memory", lambda device: (0, 64 << 20))  # a 64 MiB device
    args = train_args(tmp_path, "net.nc", "-e", "1")
    args[args.index("-b") + 1] = "65536"
    assert main(args) == 2
    err = capsys.readouterr().err
    # 64 items → 32 hidden → 64 outputs, fp32: (4·32 + 3·64)·4 = 1280 bytes an example;
    # 0.9 × 64 MiB less the parameters' few KiB fits 47,000-odd: the power of two below is 32768
    assert "out of GPU memory on cpu (0.1 GiB) at batch size 65536" in err
    assert "each example about 0.00 MiB" in err and "--batch-size 32768 should fit" in err
    assert not (tmp_path / "net.nc").exists()


def test_suggestion_is_at_most_half_the_failed_batch(monkeypatch):
    trainer = Trainer(autoencoder(40), "sgd", batch_size=64, progress=False)
    assert memory.suggested_batch_size(trainer, 80 << 30) == 32
    assert memory.suggested_batch_size(trainer, 1) == 1


def _full_disk(path):
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("write", ["dataset", "network", "history"])
def test_a_full_disk_leaves_nothing_and_says_so(tmp_path, monkeypatch, write):
    target = tmp_path / "out.nc"
    target.write_bytes(b"previous")
    monkeypatch.setattr(atomic, "_fsync_file", _full_disk)
    with pytest.raises(ResourceError, match=r"cannot write .*out\.nc: the disk is full \(ENOSPC in .*\); nothing was "
                                            r"written and no partial file is left; free space"):
        if write == "dataset":
            write_netcdf(target, SparseDataset("x", (4,), [0, 2], [1, 3]))
        elif write == "network":
            trainer = Trainer(autoencoder(40), "sgd", batch_size=16, progress=False)
            trainer.network.save(target)
        else:
            from destiny.train.history import write_history

            write_history(target, [])
    assert [p.name for p in tmp_path.iterdir()] == ["out.nc"] and target.read_bytes() == b"previous"


def test_cli_train_on_a_full_disk_exits_2_with_nothing_written(tmp_path, capsys, monkeypatch):
    write_problem(tmp_path)
    monkeypatch.setattr(atomic, "_fsync_file", _full_disk)
    assert main(train_args(tmp_path, "net.nc", "-e", "1")) == 2
    err = capsys.readouterr().err
    assert err.startswith("destiny train: error: cannot write ") and "net.nc: the disk is full (ENOSPC" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["input.nc", "net.json", "output.nc"]


def test_a_denied_directory_and_a_missing_one(tmp_path, monkeypatch, capsys):
    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(tmp_path / ".x.tmp"))

    monkeypatch.setattr(atomic.tempfile, "mkstemp", denied)
    with pytest.raises(ResourceError, match=r"cannot write .*net\.nc: permission denied \(EACCES in .*\); nothing was"):
        write_netcdf(tmp_path / "net.nc", SparseDataset("x", (4,), [0, 2], [1, 3]))
    monkeypatch.undo()
    write_problem(tmp_path)
    assert main(train_args(tmp_path, "no/such/dir/net.nc", "-e", "1")) == 2
    err = capsys.readouterr().err
    assert "no/such/dir: cannot write net.nc there: the directory does not exist" in err


def test_a_library_failing_on_a_full_disk_is_reported_as_one(tmp_path, monkeypatch):
    monkeypatch.setattr(atomic, "_nearly_full", lambda directory: True)
    with pytest.raises(ResourceError, match=r"writing failed \(RuntimeError: NetCDF: HDF error\) with the disk full"):
        with atomic.atomic_path(tmp_path / "x.nc") as tmp:
            open(tmp, "wb").write(b"half")
            raise RuntimeError("NetCDF: HDF error")
    assert list(tmp_path.iterdir()) == []
