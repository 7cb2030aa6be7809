"""Outputs committed whole, through the command line: the files of one command (generate's
dataset and index files) are replaced as a set, so a Ctrl-C or an error before the last is
written leaves every one as it was, and one that comes during the renames acts after them; an
existing output that no rename can replace (immutable, or another user's in a sticky directory)
is found before any work, named with the reason instead of blamed on its directory."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess

import pytest

from destiny.cli.main import main
from destiny.data import generate as generate_module
from destiny.data.generate import generate_netcdf
from destiny.data.netcdf_write import write_netcdf
from destiny.data import SparseDataset
from destiny.errors import ResourceError
from destiny.io import atomic
from destiny.train.trainer import Trainer
from tests.hardening.helpers import train_args, write_problem
from tests.hardening.test_outputs import fails

TEXT = "u1\ti1:i2\nu2\ti3\n"


def generate(d, *extra) -> list[str]:
    return ["generate", "-i", f"{d}/in.txt", "-o", f"{d}/out.nc", "-d", "input", "-f", f"{d}/features",
            "-s", f"{d}/samples", *extra]


def interrupt_at_call(monkeypatch, number: int) -> None:
    """generate's ``number``th index file write raises KeyboardInterrupt (a Ctrl-C) instead."""
    real, calls = generate_module.write_index, []

    def write_index(*args, **kwargs):
        calls.append(args[0])
        if len(calls) == number:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(generate_module, "write_index", write_index)


def no_training(monkeypatch):
    def fit(*args, **kwargs):
        raise AssertionError("training started")

    monkeypatch.setattr(Trainer, "fit", fit)




# -- the files of one command: all or none ---------------------------------------------------

def test_an_interrupted_generate_writes_none_of_its_files(tmp_path, capsys, monkeypatch):
    (tmp_path / "in.txt").write_text(TEXT)
    interrupt_at_call(monkeypatch, 2)  # the dataset and the features index are written, not the samples index
    assert main(generate(tmp_path, "-c")) == 130
    assert "destiny generate: interrupted" in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path)) == ["in.txt"]  # no new file, no temporary, no lock
    monkeypatch.undo()
    assert main(generate(tmp_path, "-c")) == 0
    assert sorted(os.listdir(tmp_path)) == ["features", "in.txt", "out.nc", "samples"]


def test_an_interrupted_generate_leaves_the_previous_files(tmp_path, capsys, monkeypatch):
    (tmp_path / "in.txt").write_text(TEXT)
    assert main(generate(tmp_path, "-c")) == 0
    before = {name: (tmp_path / name).read_bytes() for name in ("out.nc", "features", "samples")}
    (tmp_path / "in.txt").write_text(TEXT + "u3\ti4:i1\n")  # a new sample and a new feature: all three change
    interrupt_at_call(monkeypatch, 2)
    assert main(generate(tmp_path, "-m")) == 130
    assert {name: (tmp_path / name).read_bytes() for name in before} == before
    assert sorted(os.listdir(tmp_path)) == ["features", "in.txt", "out.nc", "samples"]


def test_a_ctrl_c_during_the_renames_acts_after_the_last(tmp_path, capsys, monkeypatch):
    (tmp_path / "in.txt").write_text(TEXT)
    real = os.replace

    def replace(src, dst):  # the first rename of the set receives a SIGINT
        if not os.path.exists(tmp_path / "out.nc"):
            os.kill(os.getpid(), signal.SIGINT)
        real(src, dst)

    monkeypatch.setattr(atomic.os, "replace", replace)
    assert main(generate(tmp_path, "-c")) == 130
    assert sorted(os.listdir(tmp_path)) == ["features", "in.txt", "out.nc", "samples"]
    assert (tmp_path / "samples").read_text() == "u1\t0\nu2\t1\n"


def test_an_unreplaceable_file_of_the_set_stops_it_before_any_rename(tmp_path, monkeypatch):
    (tmp_path / "in.txt").write_text(TEXT)
    (tmp_path / "samples").write_text("u1\t0\n")
    immutable = str(tmp_path / "samples")
    monkeypatch.setattr(atomic, "_inode_flags", lambda path: 0x10 if path == immutable else 0)
    with pytest.raises(ResourceError, match=f"cannot write {immutable}: it exists and cannot be replaced: it is "
                                            r"immutable \(chattr \+i\)"):
        generate_netcdf(tmp_path / "in.txt", tmp_path / "out.nc", "input", tmp_path / "features", immutable,
                        features="create")
    assert sorted(os.listdir(tmp_path)) == ["in.txt", "samples"]  # the dataset and the features index not renamed


# -- outputs that cannot be replaced, found before training ----------------------------------

def test_an_immutable_network_is_named_before_training(tmp_path, capsys, monkeypatch):
    write_problem(tmp_path)
    (tmp_path / "net.nc").write_bytes(b"old")
    network = str(tmp_path / "net.nc")
    monkeypatch.setattr(atomic, "_inode_flags", lambda path: 0x10 if path == network else 0)
    no_training(monkeypatch)
    fails(train_args(tmp_path, "net.nc", "--force"), capsys,
          f"-n {network} exists and cannot be replaced: it is immutable (chattr +i), so no rename can replace the "
          f"file; clear the attribute (chattr -i {network}, as root) or name another file")


def test_another_users_network_in_a_sticky_directory_is_named_before_training(tmp_path, capsys, monkeypatch):
    write_problem(tmp_path)
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared").chmod(0o1777)
    (tmp_path / "shared" / "net.nc").write_bytes(b"old")
    owner = os.stat(tmp_path / "shared" / "net.nc").st_uid
    monkeypatch.setattr(os, "geteuid", lambda: owner + 4242)  # this process runs as another user
    no_training(monkeypatch)
    fails(train_args(tmp_path, "shared/net.nc", "--force"), capsys,
          f"-n {tmp_path}/shared/net.nc exists and cannot be replaced: it belongs to another user (uid {owner}) and "
          f"{tmp_path}/shared is a sticky directory (mode 1777, as /tmp), where only a file's owner may replace it")
    assert (tmp_path / "shared" / "net.nc").read_bytes() == b"old"


def _chattr(flag: str, path) -> bool:
    if shutil.which("chattr") is None:
        return False
    return subprocess.run(["chattr", flag, str(path)], capture_output=True).returncode == 0


def test_real_immutable_files_and_directories(tmp_path, capsys, monkeypatch):
    write_problem(tmp_path)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "net.nc").write_bytes(b"old")
    if not _chattr("+i", tmp_path / "out" / "net.nc"):
        pytest.skip("chattr +i is not available here (needs root and a filesystem with attributes)")
    try:
        no_training(monkeypatch)
        fails(train_args(tmp_path, "out/net.nc", "--force"), capsys, "exists and cannot be replaced: it is immutable")
        with pytest.raises(ResourceError, match=r"it exists and cannot be replaced: it is immutable \(chattr \+i\)"):
            write_netcdf(tmp_path / "out" / "net.nc", SparseDataset("x", (4,), [0, 2], [1, 3]))
        assert _chattr("-i", tmp_path / "out" / "net.nc") and _chattr("+i", tmp_path / "out")
        fails(train_args(tmp_path, "out/new.nc"), capsys, f"cannot write {tmp_path}/out/new.nc: its directory "
              f"{tmp_path}/out is immutable (chattr +i), so no file can be created in it")
    finally:
        _chattr("-i", tmp_path / "out")
        _chattr("-i", tmp_path / "out" / "net.nc")
    assert sorted(os.listdir(tmp_path / "out")) == ["net.nc"]
