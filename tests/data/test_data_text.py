"""DSSTNE text and index files, and `destiny generate` (DSSTNE's generateNetCDF)."""

from __future__ import annotations

import numpy as np
import pytest

from destiny.cli.main import main
from destiny.data import (
    generate_netcdf, labels_by_index, read_dataset, read_index, read_text, write_index, write_text,
)
from destiny.data.text import format_values
from destiny.errors import DataError, DataWarning


def _write(path, text):
    path.write_bytes(text.encode())
    return path


def rows(dataset):
    return [dataset.row(i)[0].tolist() for i in range(dataset.n_examples)]


def test_parses_labels_datapoints_and_numbers_in_first_appearance_order(tmp_path):
    text = ("cust,US\tb:a::c:\r\n"  # label with a comma, empty datapoints, CRLF
            "\n"  # empty line: skipped
            "u2\tc,5:d,7\n"  # indicator: values ignored
            "u3\t\n")  # no datapoints: an empty row
    data = read_text(_write(tmp_path / "in.txt", text))
    assert data.features == {"b": 0, "a": 1, "c": 2, "d": 3}
    assert data.samples == {"cust,US": 0, "u2": 1, "u3": 2}
    assert rows(data.dataset) == [[0, 1, 2], [2, 3], []]
    assert data.dataset.is_indicator and data.dataset.indices.dtype == np.int32
    assert (data.features_added, data.samples_added) == (4, 3)


@pytest.mark.parametrize("values, dtype", [
    (["5", "3.5", "1"], np.float32),  # ratings: exact in float32
    (["1112486027", "1094785740", "7"], np.int32),  # MovieLens timestamps: not exact in float32
    (["0.1", "2", "3"], np.float64),  # 0.1 needs float64 to read back the same
    (["4294967297001", "1", "2"], np.int64),
    (["1e-3", "-2.5e-10", "7"], np.float64),
])
def test_analog_values_keep_the_narrowest_exact_type(tmp_path, values, dtype):
    line = "u\t" + ":".join(f"{k},{v}" for k, v in zip("abc", values)) + "\n"
    data = read_text(_write(tmp_path / "in.txt", line), analog=True)
    assert data.dataset.values.dtype == dtype
    assert data.dataset.values.tolist() == [float(v) for v in values]
    write_text(tmp_path / "out.txt", data.dataset, labels_by_index(data.features), labels_by_index(data.samples))
    assert (tmp_path / "out.txt").read_text() == line.replace("1e-3", "0.001")


def test_value_type_float32_rounds_like_dsstne(tmp_path):
    data = read_text(_write(tmp_path / "in.txt", "u\ta,1112486027\n"), analog=True, value_type="float32")
    assert data.dataset.values.dtype == np.float32 and data.dataset.values[0] == np.float32(1112486027)


def test_format_values():
    assert format_values(np.int32([5, -3])) == ["5", "-3"]
    assert format_values(np.float32([5.0, 0.1, 3.5, 1e-30])) == ["5", "0.1", "3.5", "1e-30"]
    assert format_values(np.float64([0.1, 2.0, 1 / 3])) == ["0.1", "2", repr(1 / 3)]


def test_a_repeated_sample_keeps_its_last_line(tmp_path):
    text = "a\t1:2\nb\t3\na\t4\n"
    with pytest.warns(DataWarning, match="1 sample labels appear on several lines; the last line of each is kept"):
        data = read_text(_write(tmp_path / "in.txt", text))
    assert data.samples == {"a": 0, "b": 1}
    assert rows(data.dataset) == [[3], [2]]  # features 1→0, 2→1, 3→2, 4→3; a = line 3


def test_duplicate_features_in_a_line_are_merged(tmp_path):
    with pytest.warns(DataWarning, match="merged 2 features listed twice within a sample \\(values summed\\)"):
        data = read_text(_write(tmp_path / "in.txt", "u\tx,1:y,2:x,3:x,4\n"), analog=True)
    assert rows(data.dataset) == [[0, 1]] and data.dataset.values.tolist() == [8.0, 2.0]
    with pytest.raises(DataError, match="sample 'u' lists feature 'x' more than once \\(2 repeated datapoints"):
        read_text(tmp_path / "in.txt", analog=True, duplicates="error")


def test_analog_lines_without_datapoints(tmp_path):
    data = read_text(_write(tmp_path / "in.txt", "u1\t\nu2\ta,2.5\n"), analog=True)
    assert rows(data.dataset) == [[], [0]] and data.dataset.values.tolist() == [2.5]


def test_rows_follow_an_existing_samples_index(tmp_path):
    """Row i is sample i even when the index lists samples the file lacks (DSSTNE packs them)."""
    data = read_text(_write(tmp_path / "in.txt", "c\tx\na\ty\n"), samples={"a": 0, "b": 1, "c": 2})
    assert rows(data.dataset) == [[1], [], [0]]
    assert data.samples_added == 0


def test_index_files_round_trip_sorted_by_index(tmp_path):
    write_index(tmp_path / "idx", {"z": 2, "a,b": 0, "ü": 1})
    assert (tmp_path / "idx").read_bytes() == "a,b\t0\nü\t1\nz\t2\n".encode()
    assert read_index(tmp_path / "idx") == {"a,b": 0, "ü": 1, "z": 2}
    with pytest.raises(DataError, match="cannot be written to an index file"):
        write_index(tmp_path / "bad", {"a\tb": 0})


def test_directory_input_reads_files_in_sorted_order(tmp_path):
    folder = tmp_path / "parts"
    folder.mkdir()
    _write(folder / "b.txt", "u2\tz\n")
    _write(folder / "a.txt", "u1\ty\n")
    data = read_text(folder)
    assert data.samples == {"u1": 0, "u2": 1} and data.features == {"y": 0, "z": 1}


def test_many_lines_and_files_keep_their_places(tmp_path, monkeypatch):
    from destiny.data.text import _Parser

    monkeypatch.setattr(_Parser, "BATCH", 2)  # join per-line arrays often
    folder = tmp_path / "parts"
    folder.mkdir()
    _write(folder / "a.txt", "".join(f"u{i}\tf{i},{i}:g,0.5\n" for i in range(5)))
    _write(folder / "b.txt", "v\tg,1\n\nw\tf1,inf\n")
    with pytest.raises(DataError, match=r"b\.txt:3: datapoint 1 'f1,inf': value 'inf' is not finite"):
        read_text(folder, analog=True)
    _write(folder / "b.txt", "v\tg,1\n")
    data = read_text(folder, analog=True)
    assert rows(data.dataset) == [[0, 1], [2, 1], [3, 1], [4, 1], [5, 1], [1]]
    assert data.dataset.values.tolist() == [0, 0.5, 1, 0.5, 2, 0.5, 3, 0.5, 4, 0.5, 1]


def test_write_text_needs_a_label_for_every_used_feature(tmp_path):
    data = read_text(_write(tmp_path / "in.txt", "u\ta:b\n"))
    with pytest.raises(DataError, match="feature 1 \\(example 0\\) has no label"):
        write_text(tmp_path / "out.txt", data.dataset, ["a"], ["u"])
    assert not (tmp_path / "out.txt").exists()


# -- generate ------------------------------------------------------------------------------
def test_generate_creates_merges_or_fixes_the_features_index(tmp_path):
    first = _write(tmp_path / "first.txt", "u1\ta:b\nu2\tb:c\n")
    second = _write(tmp_path / "second.txt", "u3\tc:d\nu1\ta\n")
    f, s = tmp_path / "features", tmp_path / "samples"
    report = generate_netcdf(first, tmp_path / "1.nc", "input", f, s, features="create")
    assert (report.width, report.n_features, report.wrote_features, report.wrote_samples) == (128, 3, True, True)
    assert read_index(f) == {"a": 0, "b": 1, "c": 2} and read_index(s) == {"u1": 0, "u2": 1}
    with pytest.warns(DataWarning, match="dropped 1 datapoints whose features are not in"):
        report = generate_netcdf(second, tmp_path / "2.nc", "input", f, s)
    assert rows(read_dataset(tmp_path / "2.nc", "input")) == [[0], [], [2]]  # rows follow the samples index
    assert (report.wrote_features, report.samples_added) == (False, 1)
    assert read_index(s) == {"u1": 0, "u2": 1, "u3": 2}
    generate_netcdf(second, tmp_path / "3.nc", "input", f, s, features="merge", exact_width=True)
    assert read_index(f) == {"a": 0, "b": 1, "c": 2, "d": 3}
    merged = read_dataset(tmp_path / "3.nc", "input")
    assert merged.dims == (4,) and rows(merged) == [[0], [], [2, 3]]


def test_generate_leaves_unchanged_indices_untouched(tmp_path):
    _write(tmp_path / "in.txt", "u1\ta\n")
    _write(tmp_path / "features", "a\t0\n")
    _write(tmp_path / "samples", "u1\t0\n\n")  # a blank line: rewriting would drop it
    generate_netcdf(tmp_path / "in.txt", tmp_path / "o.nc", "input", tmp_path / "features", tmp_path / "samples")
    assert (tmp_path / "samples").read_text() == "u1\t0\n\n"


def test_generate_numbers_new_labels_after_the_largest_index(tmp_path):
    _write(tmp_path / "features", "a\t0\nb\t5\n")  # a gap: DSSTNE would hand out 2, 3, ...
    _write(tmp_path / "in.txt", "u\ta:new\n")
    generate_netcdf(tmp_path / "in.txt", tmp_path / "o.nc", "input", tmp_path / "features", tmp_path / "samples",
                    features="merge")
    assert read_index(tmp_path / "features") == {"a": 0, "b": 5, "new": 6}


def test_generate_cli_matches_dsstne_flags(tmp_path, capsys):
    _write(tmp_path / "in.txt", "u1\t10,1:20,2\n")
    status = main(["generate", "-i", str(tmp_path / "in.txt"), "-o", str(tmp_path / "o.nc"), "-d", "input",
                   "-f", str(tmp_path / "f"), "-s", str(tmp_path / "s"), "-c", "-t", "analog"])
    assert status == 0
    out = capsys.readouterr().out
    assert "Width 128: 2 features rounded up to a multiple of 128" in out
    dataset = read_dataset(tmp_path / "o.nc", "input")
    assert dataset.dims == (128,) and dataset.values.tolist() == [1.0, 2.0]
    with pytest.raises(SystemExit):
        main(["generate", "-i", "x", "-o", "y", "-d", "n", "-f", "f", "-s", "s", "-c", "-m"])


# -- DSSTNE's MovieLens sample -------------------------------------------------------------
def test_text_netcdf_text_is_byte_identical_on_dsstnes_sample(movielens_sample, tmp_path):
    source = movielens_sample / "movielens_input_1024.txt"
    f, s = tmp_path / "features_input", tmp_path / "samples_input"
    assert main(["generate", "-i", str(source), "-o", str(tmp_path / "ml.nc"), "-d", "input", "-f", str(f),
                 "-s", str(s), "-c", "-t", "analog"]) == 0
    dataset = read_dataset(tmp_path / "ml.nc", "input")
    assert (dataset.n_examples, dataset.nnz, dataset.width) == (1024, 153_511, 9856)  # 9,734 features → 9,856
    assert dataset.values.dtype == np.int32  # timestamps kept exactly
    assert main(["convert", str(tmp_path / "ml.nc"), "-o", str(tmp_path / "back.txt"), "-f", str(f),
                 "-s", str(s)]) == 0
    assert (tmp_path / "back.txt").read_bytes() == source.read_bytes()


def test_feature_numbers_match_dsstnes_index(movielens_sample, tmp_path):
    """DSSTNE numbered ml-20m's features in first-appearance order; users 1..740 of the sample
    are ml-20m's first users, so their features get exactly the numbers of index.txt."""
    lines = (movielens_sample / "movielens_input_1024.txt").read_bytes().split(b"\n")[:740]
    _write(tmp_path / "first740.txt", b"\n".join(lines).decode() + "\n")
    generate_netcdf(tmp_path / "first740.txt", tmp_path / "o.nc", "input", tmp_path / "f", tmp_path / "s",
                    features="create")
    ours, dsstne = read_index(tmp_path / "f"), read_index(movielens_sample / "index.txt")
    assert len(ours) == 8351
    assert {label: dsstne[label] for label in ours} == ours
