"""Bad input to predict, evaluate and encode: one line on stderr naming what is wrong, exit
status 2, and no output file (nor a temporary one) left behind; an existing output survives."""

from __future__ import annotations

import os

import pytest

from destiny.cli.main import main
from tests.predict.helpers import autoencoder_files, write_index, write_lines


@pytest.fixture
def case(tmp_path):
    paths, rows, labels, net = autoencoder_files(tmp_path)
    write_index(tmp_path / "short_index", labels[:-3])  # covers fewer columns than the network has
    write_index(tmp_path / "long_index", labels + ["extra1", "extra2"])
    (tmp_path / "malformed.txt").write_text("u0\tm100:m101\nu1 m102\n")
    write_lines(tmp_path / "recs_unknown.txt", {"u0": ["m100,0.5", "zzz,0.4"]})
    write_lines(tmp_path / "held.txt", {"u0": ["m105"]})
    used = sorted({i for r in rows for i in r})
    missing = labels[used[len(used) // 2]]  # an index with a hole where a label the input uses was
    (tmp_path / "holed_index").write_text("".join(f"{lab}\t{i}\n" for i, lab in enumerate(labels) if lab != missing))
    line = next(n for n, text in enumerate((tmp_path / "input.txt").read_text().splitlines(), 1)
                if missing in text.split("\t")[1].split(":"))
    return tmp_path, missing, line


PREDICT = ["predict", "-n", "{d}/net.nc", "-i", "{d}/features", "-o", "{d}/features", "-r", "{d}/input.txt",
           "-s", "{d}/out.txt"]
EVALUATE = ["evaluate", "-n", "{d}/net.nc", "-i", "{d}/features", "-o", "{d}/features", "-r", "{d}/input.txt",
            "--held-out", "{d}/held.txt", "--json-out", "{d}/out.txt"]
ENCODE = ["encode", "-n", "{d}/net.nc", "-i", "{d}/features", "-r", "{d}/input.txt", "-o", "{d}/out.npy"]


def swap(args: list[str], flag: str, value: str | None) -> list[str]:
    """args with ``flag``'s value replaced (or the flag removed when value is None)."""
    i = args.index(flag)
    return args[:i] + args[i + 2:] if value is None else args[:i + 1] + [value] + args[i + 2:]


CASES = {
    "index missing labels the input uses": (
        swap(PREDICT, "-i", "{d}/holed_index"), ["input.txt:{line}", "'{missing}'", "holed_index", "--drop-unknown"]),
    "k zero": (PREDICT + ["-k", "0"], ["-k/--top-k must be a positive integer, got 0"]),
    "k negative": (PREDICT + ["-k", "-5"], ["got -5"]),
    "output index wider than the network": (
        swap(PREDICT, "-o", "{d}/long_index"), ["long_index", "32 columns", "30 units", "'Output'"]),
    "input index narrower than the network": (
        swap(PREDICT, "-i", "{d}/short_index"), ["short_index", "27 columns", "30 units", "'Input'"]),
    "unknown output layer": (PREDICT + ["-l", "Nope"], ["no layer 'Nope'", "'Output'"]),
    "hidden layer as output": (PREDICT + ["-l", "Hidden"], ["Hidden layer"]),
    "malformed input": (swap(PREDICT, "-r", "{d}/malformed.txt"), ["malformed.txt:2", "no TAB"]),
    "no -i with -r": (swap(PREDICT, "-i", None), ["-r needs -i"]),
    "unknown dataset": (PREDICT + ["-d", "gl"], ["'gl_input'"]),
    "bad score format": (PREDICT + ["--score-format", "%s,%s"], ["--score-format"]),
    "bad batch": (PREDICT + ["-b", "0"], ["-b/--batch-size"]),
    "missing network": (swap(PREDICT, "-n", "{d}/nothing.nc"), ["nothing.nc"]),
    "evaluate k zero": (EVALUATE + ["-k", "5", "0"], ["every K must be a positive integer"]),
    "evaluate threshold on indicators": (EVALUATE + ["--threshold", "4"], ["held.txt:1", "no value", "analog"]),
    "evaluate recs with an unknown item": (
        ["evaluate", "--recs", "{d}/recs_unknown.txt", "-o", "{d}/features", "--held-out", "{d}/held.txt",
         "--json-out", "{d}/out.txt"], ["recs_unknown.txt:1", "'zzz'"]),
    "evaluate held-out label missing": (
        swap(swap(EVALUATE, "--held-out", "{d}/input.txt"), "-o", "{d}/holed_index"),
        ["input.txt:{line}", "'{missing}'", "holed_index"]),
    "encode unknown layer": (ENCODE + ["--layer", "Nope"], ["--layer Nope", "'Hidden'"]),
    "encode input layer": (ENCODE + ["--layer", "Input"], ["Input layer"]),
    "encode bad suffix": (swap(ENCODE, "-o", "{d}/out.txt"), [".npy", ".nc"]),
    "encode index missing labels": (swap(ENCODE, "-i", "{d}/holed_index"), ["'{missing}'", "input.txt:{line}"]),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_is_one_line_exit_2_and_no_output(name, case, capsys):
    tmp_path, missing, line = case
    args, expected = CASES[name]
    fill = lambda text: text.format(d=tmp_path, missing=missing, line=line)  # noqa: E731
    before = set(os.listdir(tmp_path))
    assert main([fill(a) for a in args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("destiny ") and ": error: " in err, err
    for piece in expected:
        assert fill(piece) in err, err
    assert set(os.listdir(tmp_path)) == before  # no output, no temporary file


def test_a_failure_while_writing_leaves_no_file_and_keeps_the_old_one(case, monkeypatch, capsys):
    import destiny.predict.recommend as recommend
    from destiny.errors import ResourceError

    tmp_path, _, _ = case
    (tmp_path / "out.txt").write_text("the previous recommendations\n")
    calls = []
    real = recommend.top_k

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise ResourceError("out of memory (simulated)")
        return real(*args, **kwargs)

    monkeypatch.setattr(recommend, "top_k", failing)
    before = set(os.listdir(tmp_path))
    assert main([a.format(d=tmp_path) for a in PREDICT] + ["-b", "4"]) == 2
    assert "simulated" in capsys.readouterr().err
    assert set(os.listdir(tmp_path)) == before
    assert (tmp_path / "out.txt").read_text() == "the previous recommendations\n"
