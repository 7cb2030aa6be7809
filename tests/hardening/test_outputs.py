"""Outputs, through the command line: an output that is an input (by name, symbolic or hard
link) or another output is refused before any work; an output being written by another Destiny
process is refused naming its pid; a missing or read-only directory, a directory or FIFO given
as the file, and too little disk space are found before training; a full disk reported as
"permission denied" by netCDF-C stays a full disk; temporaries of dead writers are removed at
start; a dataset Destiny wrote that changed afterwards is refused naming the variable. Each
failure: exit status 2, one line, nothing written."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import netCDF4
import numpy as np
import pytest

from destiny.cli.main import main
from destiny.data import SparseDataset, read_netcdf, write_netcdf
from destiny.data.stream import StreamingSparseDataset
from destiny.errors import DataError, ResourceError, UsageError
from destiny.io import atomic, outputs
from destiny.io.lock import lock_path, remove_stale_temporaries
from destiny.train.trainer import Trainer
from tests.hardening.helpers import train_args, write_problem

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ENV = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "src") + os.pathsep + ROOT)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A directory with the training problem, a network trained one epoch, a text input and
    its features index."""
    d = tmp_path_factory.mktemp("trained")
    write_problem(d)
    assert main(train_args(d, "net.nc", "-e", "1")) == 0
    (d / "features").write_text("".join(f"i{j}\t{j}\n" for j in range(64)))
    (d / "in.txt").write_text("u1\ti1:i2\nu2\ti3\n")
    return d


@pytest.fixture
def work(trained, tmp_path):
    """A fresh copy of ``trained``."""
    for path in trained.iterdir():
        shutil.copy(path, tmp_path / path.name)
    return tmp_path


def predict(d, recs, *extra):
    return ["predict", "-n", f"{d}/net.nc", "-r", f"{d}/in.txt", "-i", f"{d}/features", "-o", f"{d}/features",
            "-s", str(recs), "-k", "3", "--quiet", *extra]


def fails(argv, capsys, *expected) -> str:
    """Run ``destiny argv``: exit 2, one line on stderr holding every expected text."""
    capsys.readouterr()
    status = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert status == 2, err
    assert err.count("\n") == 1 and ": error: " in err, err
    for text in expected:
        assert text in err, err
    return err


def listing(d) -> list[str]:
    return sorted(p.name for p in d.iterdir())


def no_training(monkeypatch):
    """Make training fail loudly: a check that passes lets the command reach it."""
    def fit(*args, **kwargs):
        raise AssertionError("training started")

    monkeypatch.setattr(Trainer, "fit", fit)


# -- 1. outputs distinct from inputs --------------------------------------------------------

@pytest.mark.parametrize("target, flag", [("net.nc", "-n"), ("in.txt", "-r"), ("features", "-i")])
def test_predict_onto_its_own_input_is_refused(work, capsys, target, flag):
    before = (work / target).read_bytes()
    fails(predict(work, work / target), capsys, f"-s {work}/{target} is the same file as {flag} {work}/{target}",
          "writing it would destroy the input; name another file for -s")
    assert (work / target).read_bytes() == before


def test_links_to_an_input_are_the_same_file(work, capsys):
    os.link(work / "net.nc", work / "hard.nc")
    os.symlink(work / "in.txt", work / "soft.txt")
    fails(predict(work, work / "hard.nc"), capsys, f"-s {work}/hard.nc is the same file as -n {work}/net.nc (a hard "
          "link to it)")
    fails(predict(work, work / "soft.txt"), capsys, f"-s {work}/soft.txt is the same file as -r {work}/in.txt "
          "(through a symbolic link)")
    fails(predict(work, f"{work}/../{work.name}/net.nc"), capsys, "is the same file as -n")  # another spelling


def test_encode_onto_the_network_is_refused(work, capsys):
    before = (work / "net.nc").read_bytes()
    fails(["encode", "-n", work / "net.nc", "--input-nc", work / "input.nc", "-o", work / "net.nc"], capsys,
          f"-o {work}/net.nc is the same file as -n {work}/net.nc")
    fails(["encode", "-n", work / "net.nc", "--input-nc", work / "input.nc", "-o", work / "e.npy",
           "--samples-out", work / "e.npy"], capsys, "-o", "and --samples-out", "are the same file")
    assert (work / "net.nc").read_bytes() == before


@pytest.mark.parametrize("onto", ["-f", "-i"])
def test_generate_onto_its_index_or_text_is_refused(work, capsys, onto):
    before = {p: (work / p).read_bytes() for p in ("features", "in.txt")}
    out = work / ("features" if onto == "-f" else "in.txt")
    fails(["generate", "-i", work / "in.txt", "-o", out, "-d", "input", "-f", work / "features", "-s",
           work / "samples"], capsys, f"-o {out} is the same file as {onto} {out}")
    fails(["generate", "-i", work / "in.txt", "-o", work / "g.nc", "-d", "input", "-f", work / "in.txt", "-c", "-s",
           work / "samples"], capsys, f"-f {work}/in.txt is the same file as -i {work}/in.txt")
    assert {p: (work / p).read_bytes() for p in before} == before and not (work / "samples").exists()


def test_generate_into_its_input_directory_is_refused(work, capsys):
    (work / "texts").mkdir()
    (work / "texts" / "a.txt").write_text("u1\ti1\n")
    fails(["generate", "-i", work / "texts", "-o", work / "texts" / "out.nc", "-d", "input", "-f", work / "f2", "-c",
           "-s", work / "s2"], capsys, f"is in the directory -i {work}/texts, every file of which is read as input")
    assert listing(work / "texts") == ["a.txt"]


def test_train_history_onto_the_config_and_network_onto_data(work, capsys, monkeypatch):
    no_training(monkeypatch)
    config = (work / "net.json").read_bytes()
    fails(train_args(work, "new.nc", "--history", work / "net.json"), capsys,
          f"--history {work}/net.json is the same file as -c {work}/net.json")
    fails(train_args(work, "input.nc", "--force"), capsys, f"-n {work}/input.nc is the same file as -i")
    fails(train_args(work, "new.nc", "--history", work / "new.nc"), capsys,
          f"-n {work}/new.nc and --history {work}/new.nc are the same file: one would overwrite the other")
    assert (work / "net.json").read_bytes() == config and not (work / "new.nc").exists()


@pytest.mark.parametrize("argv, expected", [
    (["synth", "--users", "20", "--items", "30", "--seed", "1", "-o", "{d}/s.nc", "--split", "0.2", "--test-output",
      "{d}/s.nc"], "-o {d}/s.nc and --test-output {d}/s.nc are the same file"),
    (["convert", "{d}/input.nc", "-o", "{d}/input.nc"], "-o {d}/input.nc is the same file as INPUT {d}/input.nc"),
    (["evaluate", "-n", "{d}/net.nc", "--input-nc", "{d}/input.nc", "-o", "{d}/features", "-t", "{d}/output.nc",
      "--json-out", "{d}/output.nc"], "--json-out {d}/output.nc is the same file as -t {d}/output.nc"),
    (["plot", "{d}/h.png", "-o", "{d}/h.png"], "-o {d}/h.png is the same file as HISTORY.json {d}/h.png"),
    (["tune", "-i", "{d}/input.nc", "--validation", "{d}/output.nc", "--budget", "1", "-o", "{d}/output.nc", "-n",
      "{d}/t.nc"], "-o {d}/output.nc is the same file as --validation {d}/output.nc"),
], ids=["synth", "convert", "evaluate", "plot", "tune"])
def test_every_command_checks_its_outputs(work, capsys, argv, expected):
    (work / "h.png").write_text('{"meta": {}, "epochs": [{"epoch": 1, "training_error": 0.7}]}')  # a history
    before = {p.name: p.read_bytes() for p in work.iterdir()}
    fails([a.replace("{d}", str(work)) for a in argv], capsys, expected.replace("{d}", str(work)))
    assert {p.name: p.read_bytes() for p in work.iterdir()} == before


# -- 2. one writer an output ----------------------------------------------------------------

def _holder(path):
    """A process holding the lock of output ``path`` (as a destiny process writing it would)."""
    code = ("import sys, time\nfrom destiny.io.lock import output_lock\n"
            "with output_lock(sys.argv[1]):\n    print('locked', flush=True)\n    time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(path)], env=ENV, stdout=subprocess.PIPE)
    assert proc.stdout.readline() == b"locked\n"
    return proc


def _end(proc):
    proc.kill()
    proc.wait()
    proc.stdout and proc.stdout.close()


def test_an_output_locked_by_another_process_is_refused_before_training(work, capsys, monkeypatch):
    no_training(monkeypatch)
    proc = _holder(work / "new.nc")
    try:
        fails(train_args(work, "new.nc"), capsys, f"{work}/new.nc is being written by another destiny process (pid "
              f"{proc.pid}); wait for it to finish, or write to another file")
        with pytest.raises(ResourceError, match=f"pid {proc.pid}"):  # the Python API asks for the same lock
            write_netcdf(work / "new.nc", SparseDataset("x", (4,), [0, 2], [1, 3]))
    finally:
        _end(proc)
    assert not (work / "new.nc").exists()
    write_netcdf(work / "new.nc", SparseDataset("x", (4,), [0, 2], [1, 3]))  # the killed holder's lock is gone
    assert ".new.nc.lock" not in listing(work)


def test_a_writer_with_this_pid_in_another_container_is_another_writer(work):
    proc = _holder(work / "x.nc")
    try:
        with open(lock_path(work / "x.nc"), "r+") as stream:  # pid 1 here and in a container sharing the volume
            stream.write(f"{os.getpid()} 0123456789abcdef\n")
            stream.truncate()
        with pytest.raises(ResourceError, match=f"x.nc is being written by another destiny process \\(pid {os.getpid()}"):
            write_netcdf(work / "x.nc", SparseDataset("x", (4,), [0, 2], [1, 3]))
    finally:
        _end(proc)


def test_two_trainings_of_one_network_do_not_both_succeed(work, capsys):
    argv = train_args(work, "same.nc", "-e", "500")
    proc = subprocess.Popen([sys.executable, "-m", "destiny", *argv], env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not os.path.exists(lock_path(work / "same.nc")):
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        fails(train_args(work, "same.nc", "-e", "1"), capsys,
              f"same.nc is being written by another destiny process (pid {proc.pid})")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stderr.close()
    assert not (work / "same.nc").exists()


# -- 3. what would fail at the end, found at the start --------------------------------------

def test_a_missing_directory_is_found_before_training(work, capsys, monkeypatch):
    no_training(monkeypatch)
    fails(train_args(work, "no/dir/net2.nc"), capsys, f"{work}/no/dir: cannot write net2.nc there: the directory "
          "does not exist")
    fails(train_args(work, "in.txt/net2.nc"), capsys, f"{work}/in.txt: cannot write net2.nc there: it is not a "
          "directory")
    fails(predict(work, work / "no" / "recs"), capsys, "the directory does not exist")


def test_a_read_only_directory_is_found_before_training(work, capsys, monkeypatch):
    no_training(monkeypatch)
    real_open = os.open

    def read_only(path, flags, *args, **kwargs):  # the filesystem refuses new files
        if flags & os.O_CREAT:
            raise OSError(errno.EROFS, "Read-only file system", path)
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", read_only)
    fails(train_args(work, "net2.nc"), capsys, f"cannot write {work}/net2.nc: the filesystem is read-only (EROFS in "
          f"{work}); nothing was written")
    monkeypatch.undo()
    assert not (work / "net2.nc").exists()


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes into read-only directories")
def test_a_directory_without_write_permission(work, capsys, monkeypatch):
    no_training(monkeypatch)
    (work / "ro").mkdir()
    (work / "ro").chmod(0o555)
    try:
        fails(train_args(work, "ro/net2.nc"), capsys, "ro/net2.nc: permission denied (EACCES")
    finally:
        (work / "ro").chmod(0o755)


def test_a_directory_or_a_fifo_as_the_output_file(work, capsys, monkeypatch):
    (work / "adir").mkdir()
    os.mkfifo(work / "fifo")
    fails(predict(work, work / "adir"), capsys, f"-s {work}/adir is a directory; name a file to write")
    fails(predict(work, work / "fifo"), capsys, f"-s {work}/fifo is a FIFO; Destiny writes an output whole")
    with pytest.raises(UsageError, match=f"cannot write {work}/adir: it is a directory") as info:
        write_netcdf(work / "adir", SparseDataset("x", (4,), [0, 2], [1, 3]))
    assert ".tmp" not in str(info.value)
    assert listing(work / "adir") == []


def test_too_little_disk_for_the_network_is_found_before_training(work, capsys, monkeypatch):
    no_training(monkeypatch)
    free = 60_000
    monkeypatch.setattr(outputs.shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**9, 10**9 - free, free))
    # 64 → 32 → 64: 4,192 parameters, 16,768 bytes + 64 KiB of header: 82,304 bytes; a checkpoint of
    # Adam's training holds 3 arrays a parameter: 115,840 bytes
    fails(train_args(work, "net2.nc"), capsys, f"cannot write {work}/net2.nc: the network file (4,192 parameters): "
          f"about 80.4 KiB needed, 58.6 KiB free in {work}; free space there or write to another disk")
    monkeypatch.setattr(outputs.shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**9, 0, 10**7))
    fails(train_args(work, "net2.nc", "-e", "100", "--checkpoint-every", "1"), capsys,
          "the network file (4,192 parameters) and 100 checkpoints: about 11.1 MiB needed, 9.5 MiB free")


def test_no_room_for_the_encodings(work, capsys, monkeypatch):
    monkeypatch.setattr(outputs.shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**9, 10**9, 100))
    fails(["encode", "-n", work / "net.nc", "--input-nc", work / "input.nc", "-o", work / "e.npy"], capsys,
          f"cannot write {work}/e.npy: 200 rows of layer 'Hidden' (float32): about 29.0 KiB needed, 100 bytes free")
    assert not (work / "e.npy").exists()


def test_a_full_disk_is_not_reported_as_a_permission_problem(tmp_path, monkeypatch):
    def create_fails(path, mode="r", **kwargs):  # netCDF-C: any H5Fcreate failure is EACCES
        raise PermissionError(errno.EACCES, "Permission denied", path)

    monkeypatch.setattr(netCDF4, "Dataset", create_fails)
    monkeypatch.setattr(atomic, "_nearly_full", lambda directory: True)
    with pytest.raises(ResourceError, match=r"out\.nc: the disk is full \(ENOSPC in .*\); nothing was written"):
        write_netcdf(tmp_path / "out.nc", SparseDataset("x", (4,), [0, 2], [1, 3]))
    monkeypatch.setattr(atomic, "_nearly_full", lambda directory: False)  # room left: a permission problem
    with pytest.raises(ResourceError, match=r"out\.nc: permission denied \(EACCES"):
        write_netcdf(tmp_path / "out.nc", SparseDataset("x", (4,), [0, 2], [1, 3]))
    assert listing(tmp_path) == []


# -- 4. temporaries of dead writers ---------------------------------------------------------

def test_stale_temporaries_are_removed_at_start(work, capsys):
    stale = [".net2.nc.ab12cd34.tmp", ".net2.epoch1.nc.x_9yz012.tmp", ".recs.q1w2e3r4.tmp", ".net2.epoch3.nc.lock"]
    kept = [".net2.nc.lock.txt", ".other.nc.ab12cd34.tmp", ".net2.nc.short.tmp"]  # not Destiny's, or not theirs
    for name in stale + kept:
        (work / name).write_bytes(b"half")
    assert main([str(a) for a in train_args(work, "net2.nc", "-e", "1")]) == 0
    out = capsys.readouterr()
    assert f"removed {work}/.net2.nc.ab12cd34.tmp, a temporary file left by an interrupted destiny process" in out.err
    assert f"Removed {work}/.net2.epoch1.nc.x_9yz012.tmp, left by an interrupted run" in out.out
    assert main(predict(work, work / "recs")) == 0
    names = listing(work)
    assert not set(stale) & set(names) and set(kept) <= set(names)
    assert not [n for n in names if n.endswith(".lock")]


def test_the_temporary_of_a_live_writer_is_kept(work):
    (work / ".busy.nc.ab12cd34.tmp").write_bytes(b"being written")
    proc = _holder(work / "busy.nc")
    try:
        assert remove_stale_temporaries(work, lambda target: True) == []
    finally:
        _end(proc)
    assert remove_stale_temporaries(work, lambda target: True) == [f"{work}/.busy.nc.ab12cd34.tmp"]


def test_a_save_killed_mid_write_is_cleaned_by_the_next_save(tmp_path):
    code = ("import sys, time\nfrom destiny.io.atomic import atomic_path\n"
            "with atomic_path(sys.argv[1]) as tmp:\n    open(tmp, 'wb').write(b'half')\n"
            "    print('writing', flush=True)\n    time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "d.nc")], env=ENV, stdout=subprocess.PIPE)
    assert proc.stdout.readline() == b"writing\n"
    _end(proc)  # SIGKILL: the temporary and the lock file stay
    assert len([n for n in listing(tmp_path) if n.startswith(".d.nc.") and ".tmp" in n]) == 1
    _dataset_file(tmp_path / "d.nc")
    assert listing(tmp_path) == ["d.nc"]


# -- 5. checksums of datasets ---------------------------------------------------------------

def _flip(path, values: np.ndarray, bit: int = 0) -> None:
    """Flip one bit of the stored bytes of ``values`` in the file."""
    raw = bytearray(path.read_bytes())
    at = raw.find(values.tobytes())
    assert at >= 0 and raw.find(values.tobytes(), at + 1) < 0
    raw[at + 4 * 5] ^= 1 << bit  # the sixth value
    path.write_bytes(bytes(raw))


INDICES = np.arange(10, 74, 2, dtype=np.uint32) % 64  # 32 entries, 2 a row: a pattern found once


def _dataset_file(path):
    write_netcdf(path, SparseDataset("input", (64,), np.arange(0, 33, 2), INDICES.astype(np.int32)))


def test_a_flipped_bit_in_a_dataset_is_refused_naming_the_variable(tmp_path):
    _dataset_file(tmp_path / "d.nc")
    _flip(tmp_path / "d.nc", INDICES)  # 20 → 21: still a valid feature index
    message = (f"{tmp_path}/d.nc: variable 'sparseIndex0' of dataset 'input' was changed or corrupted after it was "
               "written")
    with pytest.raises(DataError, match=message + r" \(CRC-32 [0-9a-f]{8}, the file's checksum says [0-9a-f]{8}\); "
                       "re-create it with `destiny generate`"):
        read_netcdf(tmp_path / "d.nc")
    with pytest.raises(DataError, match=message):
        StreamingSparseDataset(tmp_path / "d.nc")


def test_training_on_a_changed_dataset_exits_2(work, capsys, monkeypatch):
    no_training(monkeypatch)
    data = read_netcdf(work / "input.nc")[0]
    _flip(work / "input.nc", data.indices.astype(np.uint32)[:64], bit=1)
    fails(train_args(work, "net2.nc"), capsys, "input.nc: variable 'sparseIndex0' of dataset 'input' was changed or "
          "corrupted after it was written", "ncatted -a destiny_checksums,global,d,,")


def test_changed_attributes_and_a_damaged_checksum_are_refused(tmp_path):
    _dataset_file(tmp_path / "d.nc")
    with netCDF4.Dataset(tmp_path / "d.nc", "a") as nc:
        nc.setncattr("width0", np.uint32(128))
    with pytest.raises(DataError, match="the global attributes .* were changed or corrupted after it was written"):
        read_netcdf(tmp_path / "d.nc")
    with netCDF4.Dataset(tmp_path / "d.nc", "a") as nc:
        nc.setncattr("destiny_checksums", "{not json")
    with pytest.raises(DataError, match="its global attribute 'destiny_checksums' is damaged"):
        read_netcdf(tmp_path / "d.nc")
    with netCDF4.Dataset(tmp_path / "d.nc", "a") as nc:  # deleted on purpose: read as DSSTNE's
        nc.delncattr("destiny_checksums")
    assert read_netcdf(tmp_path / "d.nc")[0].n_features == 128


def test_dsstnes_files_without_checksums_load_as_before(tmp_path):
    with netCDF4.Dataset(tmp_path / "dsstne.nc", "w", format="NETCDF4") as nc:
        for key, value in dict(datasets=1, attributes0=3, kind0=0, dataType0=0, dimensions0=1, width0=64).items():
            nc.setncattr(key, np.uint32(value))
        nc.setncattr("name0", "input")
        nc.createDimension("examplesDim0", 2)
        nc.createDimension("sparseDataDim0", 3)
        for name, dim, values in (("sparseStart0", "examplesDim0", [0, 2]), ("sparseEnd0", "examplesDim0", [2, 3]),
                                  ("sparseIndex0", "sparseDataDim0", [1, 5, 30])):
            nc.createVariable(name, "u4", (dim,))[:] = np.asarray(values, dtype=np.uint32)
    (data,) = read_netcdf(tmp_path / "dsstne.nc")
    assert data.indices.tolist() == [1, 5, 30]
    with StreamingSparseDataset(tmp_path / "dsstne.nc") as streamed:
        assert streamed.to_memory().indices.tolist() == [1, 5, 30]


def test_written_values_and_weights_are_checked_too(tmp_path):
    values = np.float32([0.5, 1.5, 2.5])
    write_netcdf(tmp_path / "v.nc", SparseDataset("v", (8,), [0, 1, 3], [1, 2, 3], values, weights=np.float32([2, 3])))
    with netCDF4.Dataset(tmp_path / "v.nc") as nc:
        listed = json.loads(nc.getncattr("destiny_checksums"))["variables"]
    assert sorted(listed) == ["dataWeight0", "sparseData0", "sparseEnd0", "sparseIndex0", "sparseStart0"]
    with netCDF4.Dataset(tmp_path / "v.nc", "a") as nc:
        nc.variables["dataWeight0"][1] = np.float32(4)
    with pytest.raises(DataError, match="variable 'dataWeight0' of dataset 'v' was changed"):
        read_netcdf(tmp_path / "v.nc")
