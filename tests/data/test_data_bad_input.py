"""Bad input, table-driven: every case is a DataError with a precise message (file, line where
there is one, what is wrong), the CLI prints it as one line and exits 2, and no output file or
temporary file is left behind."""

from __future__ import annotations

import re

import numpy as np
import pytest

netCDF4 = pytest.importorskip("netCDF4")

from destiny.cli.main import main  # noqa: E402
from destiny.data import SparseDataset, read_dataset, read_netcdf, write_netcdf  # noqa: E402
from destiny.errors import DataError  # noqa: E402

# (case, text input, analog, features index file or None, expected message after "<dir>/")
TEXT_CASES = [
    ("no tab", "u1\ta:b\nu2 a b\n", False, None,
     r"in\.txt:2: no TAB after the sample label; each line must be 'sample<TAB>feature\[,value\]"),
    ("second tab", "u1\ta\tb\n", False, None, r"in\.txt:1: a second TAB"),
    ("empty label", "u1\ta\n\tb\n", False, None, r"in\.txt:2: empty sample label before the TAB"),
    ("bad value", "u1\t2,5:3,abc\n", True, None, r"in\.txt:1: datapoint 2 '3,abc': value 'abc' is not a number"),
    ("nan value", "u1\t2,5\nu2\t3,nan\n", True, None, r"in\.txt:2: datapoint 1 '3,nan': value 'nan' is not finite"),
    ("missing value", "u1\t2,5:3\n", True, None,
     r"in\.txt:1: datapoint 2 '3' has no value; analog data needs feature,value"),
    ("empty feature", "u1\ta:,5\n", False, None, r"in\.txt:1: datapoint 2 ',5' has an empty feature label"),
    ("two commas", "u1\ta,1,2\n", True, None, r"in\.txt:1: datapoint 1 'a,1,2' has 2 commas"),
    ("negative index", "u1\ta\n", False, "a\t0\nb\t-1\n",
     r"features:2: index '-1' of 'b' is not a non-negative integer"),
    ("non-integer index", "u1\ta\n", False, "a\t1.5\n", r"features:1: index '1\.5' of 'a' is not a non-negative"),
    ("index without tab", "u1\ta\n", False, "a 0\n", r"features:1: no TAB; each line of an index file"),
    ("index with two tabs", "u1\ta\n", False, "a\t0\t1\n", r"features:1: more than one TAB"),
    ("index empty label", "u1\ta\n", False, "\t0\n", r"features:1: empty label before the TAB"),
    ("index repeated label", "u1\ta\n", False, "a\t0\nb\t1\na\t2\n",
     r"features:3: label 'a' is listed again \(first on line 1\)"),
    ("index repeated number", "u1\ta\n", False, "a\t0\nb\t0\n",
     r"features:2: index 0 of 'b' is already given on line 1"),
    ("no data", "\n\n", False, None, r"in\.txt: no lines with data"),
]


@pytest.mark.parametrize("case, text, analog, features, message", TEXT_CASES, ids=[c[0] for c in TEXT_CASES])
def test_generate_rejects_bad_text_and_writes_nothing(tmp_path, capsys, assert_only, case, text, analog,
                                                      features, message):
    (tmp_path / "in.txt").write_text(text)
    inputs = ["in.txt"]
    if features is not None:
        (tmp_path / "features").write_text(features)
        inputs.append("features")
    argv = ["generate", "-i", str(tmp_path / "in.txt"), "-o", str(tmp_path / "out.nc"), "-d", "input",
            "-f", str(tmp_path / "features"), "-s", str(tmp_path / "samples")]
    argv += ["-t", "analog"] if analog else []
    argv += ["-m"] if features is not None else ["-c"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("destiny generate: error: ")
    assert re.search(message, err), err
    assert_only(tmp_path, *inputs)


def _dsstne_file(path, *, width=128, index=(1, 5, 300), values=None, data_type=0, attributes=3, drop=(),
                 start=(0, 2)):
    """A one-dataset generateNetCDF-style file, with one thing broken on request."""
    with netCDF4.Dataset(path, "w", format="NETCDF4") as nc:
        attrs = dict(datasets=np.uint32(1), name0="input", attributes0=np.uint32(attributes), kind0=np.uint32(0),
                     dataType0=np.uint32(data_type), dimensions0=np.uint32(1), width0=np.uint32(width))
        for key, value in attrs.items():
            if key not in drop:
                nc.setncattr(key, value)
        nc.createDimension("examplesDim0", 2)
        nc.createDimension("sparseDataDim0", len(index))
        variables = dict(sparseStart0=("u4", start), sparseEnd0=("u4", (2, len(index))), sparseIndex0=("u4", index))
        if values is not None:
            variables["sparseData0"] = ("f4", values)
        for name, (dtype, content) in variables.items():
            if name not in drop:
                dim = "examplesDim0" if "Index" not in name and "Data" not in name else "sparseDataDim0"
                nc.createVariable(name, dtype, (dim,))[:] = np.asarray(content, dtype=dtype)


def _foreign(path):
    with netCDF4.Dataset(path, "w") as nc:
        nc.createDimension("time", 3)
        nc.createVariable("temperature", "f4", ("time",))[:] = [1, 2, 3]


def _truncated(path):
    write_netcdf(path, SparseDataset("input", (1000,), [0, 50_000], np.arange(50_000) % 1000))
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])


def _wrong_size(path):
    _dsstne_file(path, index=(1, 5, 7), drop=("sparseEnd0",))
    with netCDF4.Dataset(path, "a") as nc:
        nc.createDimension("other", 3)
        nc.createVariable("sparseEnd0", "u4", ("other",))[:] = [1, 2, 3]


NETCDF_CASES = [
    ("width overflow", lambda p: _dsstne_file(p),
     r"dataset 'input': example 1 has feature index 300, outside 0\.\.127 \(width×height×length = 128\)"),
    ("truncated", _truncated, r"(damaged or truncated)"),
    ("foreign netcdf", _foreign,
     r"not a DSSTNE dataset file: it has no global attribute 'datasets' \(it holds temperature\)"),
    ("not netcdf", lambda p: p.write_bytes(b"user\titem\n1\t2\n"), r"not a NetCDF file \(a file starting with"),
    ("empty file", lambda p: p.write_bytes(b""), r"not a NetCDF file \(an empty file\)"),
    ("nan values", lambda p: _dsstne_file(p, index=(1, 5, 7), values=(1.0, np.nan, 2.0), data_type=4, attributes=1),
     r"dataset 'input' example 0 has value nan for feature 5; values must be finite"),
    ("missing variable", lambda p: _dsstne_file(p, index=(1, 5, 7), drop=("sparseIndex0",)),
     r"dataset 'input' has no variable 'sparseIndex0'"),
    ("missing attribute", lambda p: _dsstne_file(p, index=(1, 5, 7), drop=("width0",)),
     r"dataset 0 \('input'\) has no global attribute 'width0'"),
    ("wrong size", _wrong_size, r"dataset 'input' variable 'sparseEnd0' has shape \(3,\), expected \(2,\)"),
    ("rows beyond the entries", lambda p: _dsstne_file(p, index=(1, 5, 7), start=(0, 4)),
     r"dataset 'input' row 1 spans entries 4\.\.3, outside 0\.\.3"),
    ("unknown data type", lambda p: _dsstne_file(p, index=(1, 5, 7), data_type=12),
     r"has dataType0 = 12, which is not a DSSTNE data type"),
]


@pytest.mark.parametrize("case, make, message", NETCDF_CASES, ids=[c[0] for c in NETCDF_CASES])
def test_bad_netcdf_files_are_data_errors(tmp_path, capsys, assert_only, case, make, message):
    make(tmp_path / "bad.nc")
    with pytest.raises(DataError, match=message) as info:
        read_netcdf(tmp_path / "bad.nc")
    assert str(info.value).startswith(str(tmp_path / "bad.nc") + ": ")
    assert main(["convert", str(tmp_path / "bad.nc"), "--from", "netcdf", "-o", str(tmp_path / "out.txt")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("destiny convert: error: ")
    assert_only(tmp_path, "bad.nc")


def test_a_dataset_name_not_in_the_file(tmp_path, capsys):
    write_netcdf(tmp_path / "two.nc", [SparseDataset("input", (4,), [0, 1], [1]),
                                      SparseDataset("output", (4,), [0, 1], [2])])
    with pytest.raises(DataError, match=r"two\.nc: no dataset named 'hidden'; the file holds 'input', 'output'"):
        read_dataset(tmp_path / "two.nc", "hidden")
    assert main(["convert", str(tmp_path / "two.nc"), "-d", "hidden", "-o", str(tmp_path / "o.txt")]) == 2
    assert "no dataset named 'hidden'" in capsys.readouterr().err
    assert not (tmp_path / "o.txt").exists()


def test_a_missing_file_is_one_line(tmp_path, capsys):
    assert main(["convert", str(tmp_path / "absent.nc"), "-o", str(tmp_path / "o.txt")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "absent.nc" in err


def test_fixed_index_needs_the_file(tmp_path, capsys, assert_only):
    (tmp_path / "in.txt").write_text("u\ta\n")
    assert main(["generate", "-i", str(tmp_path / "in.txt"), "-o", str(tmp_path / "o.nc"), "-d", "input",
                 "-f", str(tmp_path / "features"), "-s", str(tmp_path / "samples")]) == 2
    assert "features index not found; pass -c to create it" in capsys.readouterr().err
    assert_only(tmp_path, "in.txt")


def test_failed_write_leaves_the_old_file(tmp_path):
    good = SparseDataset("input", (4,), [0, 1], [1])
    write_netcdf(tmp_path / "d.nc", good)
    before = (tmp_path / "d.nc").read_bytes()
    with pytest.raises(DataError):
        write_netcdf(tmp_path / "d.nc", SparseDataset("input", (4,), [0, 1], [1], np.float32([np.inf])))
    assert (tmp_path / "d.nc").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.nc"]
