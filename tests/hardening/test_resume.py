"""Resumable training: a run killed with SIGKILL mid-epoch and resumed with --resume ends with
the uninterrupted run's fingerprint; a mid-epoch checkpoint resumes exactly in Python too; a
checkpoint with a flipped byte is refused by name, and --resume skips it for an older one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from destiny.cli.main import main
from destiny.errors import NetworkFileError
from destiny.io.network_file import read_network
from destiny.train.checkpoint import network_from_file, network_to_file, restore_trainer, save_network, trainer_state
from destiny.train.resume import checkpoints, position
from destiny.train.trainer import Trainer
from tests.hardening.helpers import train_args, write_problem
from tests.helpers import clustered_dataset
from tests.train.test_trainer import autoencoder

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def fingerprint(path) -> str:
    return read_network(path).info["fingerprint"]


def test_sigkill_mid_epoch_then_resume_gives_the_uninterrupted_fingerprint(tmp_path, capsys):
    write_problem(tmp_path, users=1500)
    assert main(train_args(tmp_path, "whole.nc", "-e", "3")) == 0
    whole_out = capsys.readouterr().out

    args = train_args(tmp_path, "killed.nc", "-e", "3", "--checkpoint-batches", "20")
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "src") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, "-m", "destiny", *args], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    target = tmp_path / "killed.epoch2.batch40.nc"  # well into the second epoch (188 minibatches each)
    deadline = time.monotonic() + 240
    while not target.exists():
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline, "no mid-epoch checkpoint within 240 s"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    assert not (tmp_path / "killed.nc").exists()  # it died before the end
    newest = checkpoints(str(tmp_path / "killed"))[0]
    assert position(newest)[1] > 0, newest  # the newest checkpoint is mid-epoch

    assert main(train_args(tmp_path, "killed.nc", "-e", "3", "--checkpoint-batches", "20", "--resume")) == 0
    out = capsys.readouterr().out
    assert f"Resuming from {newest}" in out and "minibatch" in out
    assert fingerprint(tmp_path / "killed.nc") == fingerprint(tmp_path / "whole.nc")
    # the resumed epoch reports the uninterrupted epoch's error (the loss before the kill is carried)
    epoch3 = [line.split(",")[0] for line in whole_out.splitlines() if line.startswith("Epoch 3")]
    assert epoch3 and epoch3[0] in out
    assert not list(tmp_path.glob(".*tmp*"))  # a temporary file of the killed writer is removed


def test_a_mid_epoch_checkpoint_resumes_exactly(tmp_path):
    data = clustered_dataset(150, 40, seed=3)
    sets = {"in": data, "out": data}
    whole = Trainer(autoencoder(40, dropout=0.3, denoise=0.2), "momentum", batch_size=16, progress=False)
    whole.fit(sets, 3)

    first = Trainer(autoencoder(40, dropout=0.3, denoise=0.2), "momentum", batch_size=16, progress=False)

    def stop_in_epoch_2(trainer, epoch, batches):
        if epoch == 2 and batches == 4:
            save_network(trainer.network, tmp_path / "mid.nc", *trainer_state(trainer))
            raise KeyboardInterrupt  # the run dies here

    first.batch_callbacks.append(stop_in_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        first.fit(sets, 3)

    nf = read_network(tmp_path / "mid.nc")
    assert (nf.info["epoch"], nf.info["batch"]) == (1, 4)
    resumed = Trainer(network_from_file(nf), "momentum", batch_size=16, progress=False)
    restore_trainer(resumed, nf)
    results = resumed.fit(sets, 2)
    assert resumed.epoch == 3
    assert network_to_file(resumed.network).info["fingerprint"] == network_to_file(whole.network).info["fingerprint"]
    assert results[0].training_error == whole.history[1].training_error


def _flip_a_weight_byte(path) -> None:
    """Flip one bit inside the stored weights (found by their bytes in the file)."""
    weights = read_network(path).weights[0].weights.astype("<f4").tobytes()
    raw = bytearray(path.read_bytes())
    at = raw.find(weights[:64])
    assert at >= 0
    raw[at + 17] ^= 0x04
    path.write_bytes(bytes(raw))


def test_a_checkpoint_with_a_flipped_byte_is_refused(tmp_path, capsys):
    write_problem(tmp_path)
    assert main(train_args(tmp_path, "net.nc", "-e", "1", "--checkpoint-every", "1")) == 0
    path = tmp_path / "net.epoch1.nc"
    _flip_a_weight_byte(path)
    with pytest.raises(NetworkFileError, match=r"net\.epoch1\.nc is corrupt: its content does not match the checksum"):
        read_network(path)
    capsys.readouterr()
    assert main(["fingerprint", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "net.epoch1.nc is corrupt" in err and "--resume skips corrupt ones" in err


def test_resume_skips_a_corrupt_checkpoint_for_the_one_before(tmp_path, capsys):
    write_problem(tmp_path)
    assert main(train_args(tmp_path, "net.nc", "-e", "2", "--checkpoint-every", "1")) == 0
    expected = fingerprint(tmp_path / "net.nc")
    os.unlink(tmp_path / "net.nc")  # as if the run had died after writing its last checkpoint
    _flip_a_weight_byte(tmp_path / "net.epoch2.nc")
    capsys.readouterr()
    assert main(train_args(tmp_path, "net.nc", "-e", "2", "--checkpoint-every", "1", "--resume")) == 0
    captured = capsys.readouterr()
    assert "warning: skipping checkpoint" in captured.err and "net.epoch2.nc is corrupt" in captured.err
    assert "Resuming from" in captured.out and "net.epoch1.nc (after epoch 1, " in captured.out
    assert fingerprint(tmp_path / "net.nc") == expected


def test_resume_refuses_a_command_line_that_is_another_run(tmp_path, capsys):
    write_problem(tmp_path)
    assert main(train_args(tmp_path, "net.nc", "-e", "1", "--checkpoint-every", "1")) == 0
    os.unlink(tmp_path / "net.nc")
    args = train_args(tmp_path, "net.nc", "-e", "2", "--resume")
    args[args.index("-b") + 1] = "16"
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "net.epoch1.nc was written by a run with batch_size = 8, but this command gives 16" in err
    assert "--batch-size 8" in err and not (tmp_path / "net.nc").exists()


def test_resume_without_a_checkpoint_starts_at_epoch_1(tmp_path, capsys):
    write_problem(tmp_path)
    assert main(train_args(tmp_path, "a.nc", "-e", "1")) == 0
    assert main(train_args(tmp_path, "b.nc", "-e", "1", "--resume")) == 0
    assert "No checkpoint of" in capsys.readouterr().out
    assert np.array_equal(read_network(tmp_path / "a.nc").weights[0].weights, read_network(tmp_path / "b.nc").weights[0].weights)
