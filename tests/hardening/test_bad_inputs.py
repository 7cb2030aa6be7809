"""Bad input, table-driven, through the command line: each of the cases below (JSON network
descriptions, DSSTNE text and index files, NetCDF datasets and network files, command-line
flags) ends with exit status 2, one line on stderr holding the expected message, and no output
file (nor a temporary one) left behind."""

from __future__ import annotations

import json

import netCDF4
import numpy as np
import pytest

from destiny.cli.main import main
from destiny.io.network_file import read_network
from tests.hardening.helpers import CONFIG, train_args, write_problem


def _json(text: str):
    return {"bad.json": text}


def _layers(**changes) -> str:
    doc = json.loads(json.dumps(CONFIG))
    for i, layer in changes.items():
        doc["Layers"][int(i[1:])].update(layer)
    return json.dumps(doc)


def _nc(path, attrs: dict, dims: dict, variables: dict) -> None:
    with netCDF4.Dataset(path, "w", format="NETCDF4") as nc:
        for k, v in attrs.items():
            nc.setncattr(k, v)
        for k, v in dims.items():
            nc.createDimension(k, v)
        for name, (dtype, dim, values) in variables.items():
            var = nc.createVariable(name, dtype, (dim,))
            if values is not None:
                var[:] = np.asarray(values, dtype=dtype)


def _sparse(path, *, start=(0, 2), end=(2, 3), index=(1, 5, 30), width=64, datasets=1, huge=False, drop=()):
    attrs = dict(datasets=np.uint32(datasets), name0="input", attributes0=np.uint32(3), kind0=np.uint32(0),
                 dataType0=np.uint32(0), dimensions0=np.uint32(1), width0=np.uint32(width))
    dims = {"examplesDim0": 2, "sparseDataDim0": 10**9 if huge else len(index)}
    variables = {"sparseStart0": ("u4", "examplesDim0", start), "sparseEnd0": ("u4", "examplesDim0", end),
                 "sparseIndex0": ("u4", "sparseDataDim0", None if huge else index)}
    _nc(path, {k: v for k, v in attrs.items() if k not in drop}, dims, variables)


def _truncated(directory, name: str, source: str) -> None:
    raw = (directory / source).read_bytes()
    (directory / name).write_bytes(raw[: len(raw) // 2])


def _flipped_network(directory) -> None:
    assert main(train_args(directory, "good.nc", "-e", "1")) == 0
    raw = bytearray((directory / "good.nc").read_bytes())
    weights = read_network(directory / "good.nc").weights[0].weights.astype("<f4").tobytes()
    raw[raw.find(weights[:64]) + 9] ^= 0x10
    (directory / "flipped.nc").write_bytes(bytes(raw))


TRAIN = ["train", "-c", "{d}/net.json", "-i", "{d}/input.nc", "-o", "{d}/output.nc", "-n", "{d}/out.nc", "-e", "1",
         "-b", "8", "--quiet"]
GENERATE = ["generate", "-i", "{d}/in.txt", "-o", "{d}/out.nc", "-d", "input", "-f", "{d}/features", "-s",
            "{d}/samples"]


def with_config(name: str) -> list[str]:
    return [x if x != "{d}/net.json" else "{d}/" + name for x in TRAIN]


def with_input(name: str) -> list[str]:
    return [x if x != "{d}/input.nc" else "{d}/" + name for x in TRAIN]


def train_flags(*flags: str) -> list[str]:
    return TRAIN + list(flags)


def text(content: bytes | str, analog: bool = False, index: str | None = None):
    files = {"in.txt": content}
    argv = GENERATE + (["-t", "analog"] if analog else []) + (["-c"] if index is None else ["-m"])
    if index is not None:
        files["features"] = index
    return files, argv


# (id, files to write {name: text/bytes/callable(directory)}, argv, expected message on stderr)
CASES = [
    # -- JSON network descriptions ---------------------------------------------------------
    ("json: not JSON", _json("{"), with_config("bad.json"), "bad.json: line 1, column 2: invalid JSON"),
    ("json: trailing comma", _json('{"Layers": [1,]}'), with_config("bad.json"), "invalid JSON"),
    ("json: NaN", _json('{"Version": NaN}'), with_config("bad.json"), "NaN is not a JSON number"),
    ("json: a dataset given as the config", {}, with_config("input.nc"),
     "input.nc: a NetCDF file (a dataset or a trained network), not a network's JSON description"),
    ("json: 5000 digits", _json('{"Version": ' + "9" * 5000 + "}"), with_config("bad.json"),
     "a number in the JSON has thousands of digits"),
    ("json: 70 levels deep", _json('{"Comment": ' + "[" * 70 + "]" * 70 + "}"), with_config("bad.json"),
     "nests arrays and objects more than 64 levels deep"),
    ("json: 100000 levels deep", _json("[" * 100000), with_config("bad.json"), "the JSON is nested too deeply"),
    ("json: 5 MiB", _json(" " * (5 << 20) + "{}"), with_config("bad.json"),
     "a JSON document Destiny reads is at most 4,194,304 bytes"),
    ("json: not UTF-8", {"bad.json": b'{"Name": "\xff\xfe"}'}, with_config("bad.json"), "bad.json: not UTF-8 text (byte 10)"),
    ("json: empty file", _json(""), with_config("bad.json"), "invalid JSON: Expecting value"),
    ("json: comment never closed", _json('{"Version": 0.8 /* open'), with_config("bad.json"),
     "a /* comment is never closed"),
    ("json: unknown key", _json(_layers(L1={"Neurons": 3})), with_config("bad.json"), "Neurons"),
    ("json: negative N", _json(_layers(L1={"N": -3})), with_config("bad.json"), "Layers[1].N"),
    ("json: unknown dataset", _json(_layers(L0={"DataSet": "nothere"})), with_config("bad.json"),
     "dataset 'nothere'"),
    ("json: Layers not a list", _json('{"Layers": 5}'), with_config("bad.json"), "Layers"),
    ("json: missing file", {}, with_config("absent.json"), "absent.json: No such file or directory"),
    # -- DSSTNE text and index files (destiny generate) ------------------------------------
    ("text: no TAB", *text("u1 a:b\n"), "in.txt:1: no TAB after the sample label"),
    ("text: second TAB", *text("u1\ta\tb\n"), "in.txt:1: a second TAB"),
    ("text: bad value", *text("u1\ta,1:b,x\n", analog=True), "in.txt:1: datapoint 2 'b,x': value 'x' is not a number"),
    ("text: inf value", *text("u1\ta,inf\n", analog=True), "value 'inf' is not finite"),
    ("text: empty", *text("\n\n"), "in.txt: no lines with data"),
    ("text: binary", *text(b"\x00\x01\x02\xff\n"), "in.txt:1: no TAB"),
    ("index: no TAB", *text("u1\ta\n", index="a 0\n"), "features:1: no TAB; each line of an index file"),
    ("index: negative", *text("u1\ta\n", index="a\t-1\n"), "features:1: index '-1' of 'a' is not a non-negative"),
    ("index: 19 digits", *text("u1\ta\n", index="a\t1234567890123456789\n"), "is not a non-negative integer below 10^18"),
    ("index: label twice", *text("u1\ta\n", index="a\t0\na\t1\n"), "features:2: label 'a' is listed again"),
    ("index: number twice", *text("u1\ta\n", index="a\t0\nb\t0\n"), "features:2: index 0 of 'b' is already given"),
    # -- NetCDF datasets (destiny train -i) --------------------------------------------------
    ("nc: empty file", {"bad.nc": b""}, with_input("bad.nc"), "bad.nc: not a NetCDF file (an empty file)"),
    ("nc: text file", {"bad.nc": "u1\ta:b\n"}, with_input("bad.nc"), "bad.nc: not a NetCDF file (a file starting with"),
    ("nc: zip file", {"bad.nc": b"PK\x03\x04" + bytes(100)}, with_input("bad.nc"), "not a NetCDF file (a file starting with b'PK"),
    ("nc: HDF5 magic, garbage", {"bad.nc": b"\x89HDF\r\n\x1a\n" + bytes(range(256)) * 4}, with_input("bad.nc"),
     "bad.nc: cannot open it as NetCDF"),
    ("nc: truncated", {"bad.nc": lambda d: _truncated(d, "bad.nc", "input.nc")}, with_input("bad.nc"), "bad.nc: cannot open"),
    ("nc: no datasets attribute", {"bad.nc": lambda d: _sparse(d / "bad.nc", drop=("datasets",))}, with_input("bad.nc"),
     "no global attribute 'datasets'"),
    ("nc: zero datasets", {"bad.nc": lambda d: _sparse(d / "bad.nc", datasets=0)}, with_input("bad.nc"),
     "attribute 'datasets' is 0"),
    ("nc: feature outside width", {"bad.nc": lambda d: _sparse(d / "bad.nc", index=(1, 5, 300))}, with_input("bad.nc"),
     "example 1 has feature index 300, outside 0..63"),
    ("nc: rows inconsistent", {"bad.nc": lambda d: _sparse(d / "bad.nc", start=(0, 3), end=(2, 2))}, with_input("bad.nc"),
     "row 1 spans entries 3..2"),
    ("nc: forged size", {"bad.nc": lambda d: _sparse(d / "bad.nc", huge=True)}, with_input("bad.nc"),
     "variable 'sparseIndex0' declares 1,000,000,000 values (3,814.7 MiB), more than its file"),
    ("nc: no name attribute", {"bad.nc": lambda d: _sparse(d / "bad.nc", drop=("name0",))}, with_input("bad.nc"),
     "dataset 0 has no global attribute 'name0'"),
    ("nc: a network file as data", {"bad.nc": lambda d: main(train_args(d, "bad.nc", "-e", "1"))}, with_input("bad.nc"),
     "it looks like a DSSTNE network file"),
    ("nc: missing file", {}, with_input("absent.nc"), "absent.nc: No such file or directory"),
    # -- network files (destiny fingerprint, destiny predict) ------------------------------
    ("network: flipped byte", {"flipped.nc": _flipped_network}, ["fingerprint", "{d}/flipped.nc"],
     "flipped.nc is corrupt: its content does not match the checksum"),
    ("network: a dataset file", {}, ["fingerprint", "{d}/input.nc"], "input.nc is a dataset file (it has 'datasets'), not a network file"),
    ("network: empty file", {"bad.nc": b""}, ["fingerprint", "{d}/bad.nc"], "bad.nc is not a NetCDF file or is damaged"),
    ("network: truncated", {"bad.nc": lambda d: (main(train_args(d, "good.nc", "-e", "1")), _truncated(d, "bad.nc", "good.nc"))},
     ["fingerprint", "{d}/bad.nc"], "bad.nc is not a NetCDF file or is damaged"),
    # -- command-line flags (destiny train) ------------------------------------------------
    ("flag: zero epochs", {}, [x if x != "1" else "0" for x in TRAIN], "--epochs and --batch-size must be positive"),
    ("flag: negative batch", {}, [x if x != "8" else "-1" for x in TRAIN], "--epochs and --batch-size must be positive"),
    ("flag: negative checkpoint batches", {}, train_flags("--checkpoint-batches", "-1"),
     "--checkpoint-batches must be a non-negative integer (0: off); got -1"),
    ("flag: negative checkpoint epochs", {}, train_flags("--checkpoint-every", "-2"), "--checkpoint-every must be a non-negative"),
    ("flag: negative nan check", {}, train_flags("--nan-check", "-2"),
     "--nan-check must be a non-negative integer (0: at the end of each epoch only); got -2"),
    ("flag: brake factor below 1", {}, train_flags("--divergence-brake", "0.5"),
     "--divergence-brake FACTOR must be a number above 1 (DSSTNE's is 2); got 0.5"),
    ("flag: unknown optimizer", {}, train_flags("--optimizer", "lbfgs"), "unknown optimizer 'lbfgs'"),
    ("flag: unknown precision device", {}, train_flags("--device", "tpu"), "tpu"),
    ("kind: a NetCDF dataset given to predict -r", {"items": "a\t0\n"},
     ["predict", "-n", "{d}/net.nc", "-r", "{d}/input.nc", "-i", "{d}/items", "-o", "{d}/items", "-s", "{d}/recs"],
     "-r {d}/input.nc is a NetCDF file (a dataset or a trained network), and -r reads DSSTNE text"),
    ("kind: the fix of a NetCDF dataset given to predict -r", {"items": "a\t0\n"},
     ["predict", "-n", "{d}/net.nc", "-r", "{d}/input.nc", "-i", "{d}/items", "-o", "{d}/items", "-s", "{d}/recs"],
     "give a NetCDF dataset with --input-nc {d}/input.nc instead"),
    ("kind: DSSTNE text given to predict --input-nc", {"in.txt": "u1\ta:b\n", "items": "a\t0\n"},
     ["predict", "-n", "{d}/net.nc", "--input-nc", "{d}/in.txt", "-o", "{d}/items", "-s", "{d}/recs"],
     "--input-nc {d}/in.txt is DSSTNE text, and --input-nc reads a NetCDF dataset: give the text with -r {d}/in.txt"),
    ("kind: a NetCDF dataset given to evaluate -r", {"items": "a\t0\n"},
     ["evaluate", "-n", "{d}/net.nc", "-r", "{d}/input.nc", "-i", "{d}/items", "-o", "{d}/items", "-t",
      "{d}/output.nc"], "-r {d}/input.nc is a NetCDF file"),
    ("kind: a NetCDF dataset given as predict's filter", {"in.txt": "u1\ta:b\n", "items": "a\t0\n"},
     ["predict", "-n", "{d}/net.nc", "-r", "{d}/in.txt", "-i", "{d}/items", "-o", "{d}/items", "-s", "{d}/recs",
      "-f", "{d}/output.nc"], "-f {d}/output.nc is a NetCDF file (a dataset or a trained network), and -f reads"),
    ("kind: a NetCDF dataset given to generate -i", {}, [x if x != "{d}/in.txt" else "{d}/input.nc" for x in GENERATE],
     "-i {d}/input.nc is a NetCDF file (a dataset or a trained network), and -i reads DSSTNE text: it is a dataset "
     "already"),
    ("kind: DSSTNE text with a table's flags to convert", {"in.txt": "u1\ta:b\nu2\tb\n"},
     ["convert", "{d}/in.txt", "-o", "{d}/out.txt", "--delimiter", ","],
     "{d}/in.txt is DSSTNE text ('sample<TAB>feature[,value]:...'), which has no columns to choose: leave out "
     "--delimiter"),
    ("kind: a time split of DSSTNE text without timestamps", {"in.txt": "u1\ta:b\nu2\tb\n"},
     ["convert", "{d}/in.txt", "-o", "{d}/out.txt", "--split", "time", "--test-output", "{d}/test.txt"],
     "--split time on DSSTNE text ({d}/in.txt) reads the text's values as timestamps: add --values timestamp"),
    ("flag: output exists", {"out.nc": b"keep me"}, TRAIN, "out.nc exists; DSSTNE's train refuses to overwrite"),
    ("flag: output in a missing directory", {}, [x if x != "{d}/out.nc" else "{d}/no/dir/out.nc" for x in TRAIN],
     "no/dir: cannot write out.nc there: the directory does not exist"),
]


def test_there_are_at_least_40_cases():
    assert len(CASES) >= 40


@pytest.mark.parametrize("case, files, argv, message", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2_and_leaves_nothing(tmp_path, capsys, case, files, argv, message):
    write_problem(tmp_path)
    for name, content in files.items():
        if callable(content):
            content(tmp_path)
        elif isinstance(content, bytes):
            (tmp_path / name).write_bytes(content)
        else:
            (tmp_path / name).write_text(content)
    before = sorted(p.name for p in tmp_path.iterdir())
    capsys.readouterr()
    status = main([a.replace("{d}", str(tmp_path)) for a in argv])
    err = capsys.readouterr().err
    assert status == 2, err
    assert err.count("\n") == 1 and ": error: " in err, err
    assert message.replace("{d}", str(tmp_path)) in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no output, no temporary
    if "out.nc" in files:
        assert (tmp_path / "out.nc").read_bytes() == b"keep me"
