"""DSSTNE text where a newcomer gives it: `destiny convert` reads it (each datapoint an
interaction) instead of taking it for a one-column table, and `destiny generate` reports the
samples of the file, not of the samples index it fills."""

from __future__ import annotations

import numpy as np

from destiny.cli.main import main
from destiny.data import read_netcdf

def _out(capsys) -> str:
    """stdout with the console's line wrapping undone."""
    return " ".join(capsys.readouterr().out.split())


TEXT = "u1\t10,1112486027:20,1112484676:30,1112484819\nu2\t20,1094785740:40,1094785734\nu3\t10,5:50,6:60,7:70,8\n"


def test_convert_reads_dsstne_text(tmp_path, capsys):
    (tmp_path / "in.txt").write_text(TEXT)
    assert main(["convert", str(tmp_path / "in.txt"), "-o", str(tmp_path / "out.txt")]) == 0
    out = _out(capsys)
    assert "DSSTNE text, 9 interactions, 9 kept, 3 users, 7 items" in out
    assert (tmp_path / "out.txt").read_text() == "u1\t10:20:30\nu2\t20:40\nu3\t10:50:60:70\n"


def test_convert_splits_dsstne_text_by_time_into_netcdf(tmp_path, capsys):
    (tmp_path / "in.txt").write_text(TEXT)
    argv = ["convert", str(tmp_path / "in.txt"), "-o", str(tmp_path / "train.nc"), "--split", "time",
            "--test-fraction", "0.34", "--test-output", str(tmp_path / "test.nc"), "--values", "timestamp"]
    assert main(argv) == 0
    train, test = read_netcdf(tmp_path / "train.nc")[0], read_netcdf(tmp_path / "test.nc")[0]
    assert train.n_examples == test.n_examples == 3 and train.nnz + test.nnz == 9
    assert test.nnz == 3  # round(0.34 · 3), round(0.34 · 2), round(0.34 · 4): each user's latest
    items = (tmp_path / "features_input").read_text().split()[::2]
    latest = {items[i] for i in test.indices.tolist()}
    assert latest == {"10", "20", "70"}  # u1's 1112486027, u2's 1094785740, u3's 8
    assert np.array_equal(np.sort(test.values), [8, 1094785740, 1112486027])


def test_convert_reads_a_directory_of_dsstne_text(tmp_path, capsys):
    (tmp_path / "parts").mkdir()
    (tmp_path / "parts" / "a").write_text(TEXT.splitlines(keepends=True)[0])
    (tmp_path / "parts" / "b").write_text("".join(TEXT.splitlines(keepends=True)[1:]))
    assert main(["convert", str(tmp_path / "parts"), "-o", str(tmp_path / "out.txt")]) == 0
    assert (tmp_path / "out.txt").read_text() == "u1\t10:20:30\nu2\t20:40\nu3\t10:50:60:70\n"


def test_a_ratings_table_is_still_a_table(tmp_path, capsys):
    (tmp_path / "u.tsv").write_text("1\t10\n1\t20\n2\t10\n")  # user<TAB>item: no ':' or ','
    assert main(["convert", str(tmp_path / "u.tsv"), "-o", str(tmp_path / "out.txt")]) == 0
    assert "3 interactions, 3 kept, 2 users, 2 items" in _out(capsys)
    assert (tmp_path / "out.txt").read_text() == "1\t10:20\n2\t10\n"


def test_generate_counts_the_samples_of_the_file(tmp_path, capsys):
    lines = [f"u{i}\ti{i % 7}:i{(i + 3) % 7}\n" for i in range(12)]
    (tmp_path / "all.txt").write_text("".join(lines))
    (tmp_path / "some.txt").write_text("".join(lines[:11]))  # one sample fewer
    index = ["-f", str(tmp_path / "features"), "-s", str(tmp_path / "samples")]
    assert main(["generate", "-i", str(tmp_path / "all.txt"), "-o", str(tmp_path / "all.nc"), "-d", "input", "-c",
                 *index]) == 0
    out = _out(capsys)
    assert "all.txt: 12 samples, 24 datapoints, 7 features (indicator)" in out and "rows" not in out
    assert main(["generate", "-i", str(tmp_path / "some.txt"), "-o", str(tmp_path / "some.nc"), "-d", "input",
                 *index]) == 0
    out = _out(capsys)
    assert "some.txt: 11 samples, 22 datapoints, 7 features (indicator)" in out
    assert f"12 rows, one for each sample of the samples index {tmp_path / 'samples'}: the 1 not in" in out
    assert read_netcdf(tmp_path / "some.nc")[0].n_examples == 12  # rows follow the index, as before
    (tmp_path / "two.txt").write_text("".join(lines[:2]))
    assert main(["generate", "-i", str(tmp_path / "two.txt"), "-o", str(tmp_path / "two.nc"), "-d", "input",
                 *index]) == 0
    out = _out(capsys)
    assert "two.txt: 2 samples, 4 datapoints, 4 features" in out and "the 10 not in" in out
    assert f"7 features in the features index {tmp_path / 'features'}, 3 of them not in" in out
