"""`destiny predict` end to end on an exact autoencoder: DSSTNE's recs format through the index
files, seen items removed, any K, filters, CSV, NetCDF input, -d, and the Python API agreeing."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse

from destiny.cli.main import main
from destiny.data import SparseDataset, write_netcdf
from destiny.predict.api import recommend_batch
from tests.predict.helpers import autoencoder_files, brute_top_k, exact_scores, write_index, write_lines


@pytest.fixture
def case(tmp_path):
    paths, rows, labels, net = autoencoder_files(tmp_path)
    return tmp_path, paths, rows, labels, net


def parse_recs(path) -> dict[str, list[tuple[str, str]]]:
    out = {}
    for line in path.read_text().splitlines():
        user, tab, body = line.partition("\t")
        assert tab and (body == "" or body.endswith(":"))  # DSSTNE's trailing ':'
        out[user] = [tuple(p.split(",")) for p in body.split(":") if p]
    return out


def predict(tmp_path, paths, *extra, recs="recs.txt"):
    return main(["predict", "-n", str(paths["net"]), "-i", str(paths["index"]), "-o", str(paths["index"]),
                 "-r", str(paths["input"]), "-s", str(tmp_path / recs), "--quiet", *extra])


def test_recs_are_the_brute_force_top_k_without_seen_items(case):
    tmp_path, paths, rows, labels, net = case
    assert predict(tmp_path, paths, "-k", "7", "-b", "5") == 0
    recs = parse_recs(tmp_path / "recs.txt")
    assert list(recs) == [f"u{j}" for j in range(len(rows))]  # input order
    want = brute_top_k(exact_scores(net, rows), 7, [set(r) for r in rows])
    for j, r in enumerate(rows):
        assert [item for item, _ in recs[f"u{j}"]] == [labels[i] for i in want[j]]
        assert all(len(score.split(".")[1]) == 3 for _, score in recs[f"u{j}"])  # %.3f


def test_any_k_writes_only_eligible_items(case):
    tmp_path, paths, rows, labels, _ = case
    assert predict(tmp_path, paths, "-k", "500") == 0  # DSSTNE refused K >= 128
    recs = parse_recs(tmp_path / "recs.txt")
    for j, r in enumerate(rows):
        assert len(recs[f"u{j}"]) == len(labels) - len(r)
        assert not {labels[i] for i in r} & {item for item, _ in recs[f"u{j}"]}


def test_no_filter_seen_score_formats_and_dsstne_precision_flag(case):
    tmp_path, paths, rows, labels, net = case
    assert predict(tmp_path, paths, "-k", "4", "--no-filter-seen", "--score-format", "%.5f") == 0
    recs = parse_recs(tmp_path / "recs.txt")
    want = brute_top_k(exact_scores(net, rows), 4)
    assert [item for item, _ in recs["u0"]] == [labels[i] for i in want[0]]
    assert all(len(score.split(".")[1]) == 5 for _, score in recs["u0"])
    assert predict(tmp_path, paths, "-k", "2", "-p", "4.2f") == 0
    assert all(len(s.split(".")[1]) == 2 for _, s in parse_recs(tmp_path / "recs.txt")["u1"])


def test_exclude_include_only_and_a_dsstne_filter_file_remove_items(case, capsys):
    tmp_path, paths, rows, labels, net = case
    (tmp_path / "exclude").write_text("m100\nm101\nnot-an-item\n")
    (tmp_path / "only").write_text("".join(f"{lab}\n" for lab in labels[:20]))
    write_lines(tmp_path / "filter.txt", {"u0": [f"{labels[25]},1112486027", labels[26]], "stranger": [labels[1]]})
    status = predict(tmp_path, paths, "-k", "30", "--exclude", str(tmp_path / "exclude"),
                     "--include-only", str(tmp_path / "only"), "-f", str(tmp_path / "filter.txt"))
    assert status == 0
    err = capsys.readouterr().err
    assert "skipped 1 samples not in the input" in err and "'not-an-item' on line 3" in err
    recs = parse_recs(tmp_path / "recs.txt")
    z = exact_scores(net, rows)
    allowed = np.zeros(len(labels), bool)
    allowed[2:20] = True
    banned = [set(r) for r in rows]
    banned[0] |= {25, 26}
    want = brute_top_k(z, 30, banned, allowed)
    for j in range(len(rows)):
        assert [item for item, _ in recs[f"u{j}"]] == [labels[i] for i in want[j]]


def test_csv_output_and_parquet_needs_pyarrow(case, capsys):
    tmp_path, paths, rows, labels, _ = case
    assert predict(tmp_path, paths, "-k", "3", "--format", "csv", recs="recs.csv") == 0
    lines = (tmp_path / "recs.csv").read_text().splitlines()
    assert lines[0] == "user,rank,item,score" and len(lines) == 1 + 3 * len(rows)
    user, rank, item, score = lines[1].split(",")
    assert (user, rank) == ("u0", "1") and item in labels and 0 < float(score) <= 1
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        assert predict(tmp_path, paths, "--format", "parquet", recs="recs.parquet") == 2
        assert "pip install pyarrow" in capsys.readouterr().err
        assert not (tmp_path / "recs.parquet").exists()
    else:
        assert predict(tmp_path, paths, "-k", "3", "--format", "parquet", recs="recs.parquet") == 0
        import pandas as pd

        frame = pd.read_parquet(tmp_path / "recs.parquet")
        assert list(frame.columns) == ["user", "rank", "item", "score"] and len(frame) == 3 * len(rows)


def test_netcdf_input_gives_the_same_recs(case):
    tmp_path, paths, rows, labels, _ = case
    assert predict(tmp_path, paths, "-k", "6") == 0
    offsets = np.concatenate([[0], np.cumsum([len(r) for r in rows])])
    write_netcdf(tmp_path / "in.nc", SparseDataset("input", (len(labels),), offsets, np.concatenate(rows)))
    write_index(tmp_path / "samples", [f"u{j}" for j in range(len(rows))])
    assert main(["predict", "-n", str(paths["net"]), "--input-nc", str(tmp_path / "in.nc"), "--samples",
                 str(tmp_path / "samples"), "-o", str(paths["index"]), "-s", str(tmp_path / "nc.txt"), "-k", "6",
                 "--quiet"]) == 0
    assert (tmp_path / "nc.txt").read_text() == (tmp_path / "recs.txt").read_text()


@pytest.mark.parametrize("n_labels", [5, "features"])
def test_a_samples_index_that_does_not_label_every_row_is_refused(case, capsys, n_labels):
    """A samples index of other data (too short, or the features index by mistake) would label
    the first rows and number the rest: refused, naming the index, before anything is written."""
    tmp_path, paths, rows, labels, _ = case
    offsets = np.concatenate([[0], np.cumsum([len(r) for r in rows])])
    write_netcdf(tmp_path / "in.nc", SparseDataset("input", (len(labels),), offsets, np.concatenate(rows)))
    samples = paths["index"] if n_labels == "features" else tmp_path / "short"
    if n_labels != "features":
        write_index(samples, [f"u{j}" for j in range(n_labels)])
    assert main(["predict", "-n", str(paths["net"]), "--input-nc", str(tmp_path / "in.nc"), "--samples",
                 str(samples), "-o", str(paths["index"]), "-s", str(tmp_path / "nc.txt"), "-k", "6",
                 "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"--samples {samples}" in err and f"rows of {tmp_path / 'in.nc'}" in err and "Traceback" not in err
    assert not (tmp_path / "nc.txt").exists()


def test_no_item_left_to_recommend_is_refused(case, capsys):
    """--exclude of every item (or --include-only of none of the index's) leaves nothing to rank:
    exit 2 before scoring, not an empty recs file."""
    tmp_path, paths, rows, labels, _ = case
    (tmp_path / "all.txt").write_text("".join(f"{label}\n" for label in labels))
    assert predict(tmp_path, paths, "-k", "3", "--exclude", str(tmp_path / "all.txt")) == 2
    assert "no item of layer" in capsys.readouterr().err and not (tmp_path / "recs.txt").exists()
    (tmp_path / "none.txt").write_text("not-an-item\n")
    assert predict(tmp_path, paths, "-k", "3", "--include-only", str(tmp_path / "none.txt")) == 2
    assert "after --include-only" in capsys.readouterr().err


def test_seen_items_map_by_label_when_the_indices_differ(case):
    tmp_path, paths, rows, labels, net = case
    write_index(tmp_path / "features_input", list(reversed(labels)))  # input column c is label 29 − c
    assert main(["predict", "-n", str(paths["net"]), "-i", str(tmp_path / "features_input"), "-o", str(paths["index"]),
                 "-r", str(paths["input"]), "-s", str(tmp_path / "a.txt"), "-k", "8", "--quiet"]) == 0
    recs = parse_recs(tmp_path / "a.txt")
    last = len(labels) - 1
    want = brute_top_k(exact_scores(net, [[last - i for i in r] for r in rows]), 8, [set(r) for r in rows])
    for j in range(len(rows)):
        assert [item for item, _ in recs[f"u{j}"]] == [labels[i] for i in want[j]]


def test_dataset_name_follows_dsstne(case, capsys):
    tmp_path, paths, _, _, _ = case
    assert predict(tmp_path, paths, "-d", "input") == 0
    assert predict(tmp_path, paths, "-d", "gl") == 2
    err = capsys.readouterr().err
    assert "'gl' or 'gl_input'" in err and "'input'" in err


def test_the_python_api_equals_the_cli(case):
    tmp_path, paths, rows, labels, net = case
    assert predict(tmp_path, paths, "-k", "5") == 0
    recs = parse_recs(tmp_path / "recs.txt")
    matrix = scipy.sparse.csr_matrix((np.ones(sum(map(len, rows))), np.concatenate(rows),
                                      np.concatenate([[0], np.cumsum([len(r) for r in rows])])),
                                     shape=(len(rows), len(labels)))
    got = recommend_batch(net, matrix, k=5, batch_size=4, chunk=7)
    for j in range(len(rows)):
        assert [labels[i] for i in got.items[j]] == [item for item, _ in recs[f"u{j}"]]
        assert [f"{s:.3f}" for s in got.scores[j]] == [score for _, score in recs[f"u{j}"]]
    scores, items = recommend_batch(net, matrix, k=5, filter_seen=False, exclude=[0, 1])
    assert not np.isin(items, [0, 1]).any()
    assert items.shape == scores.shape == (len(rows), 5)


def test_padding_columns_are_never_recommended(tmp_path):
    """A network 128 wide for an index of 30 labels (generateNetCDF rounds widths up)."""
    from destiny.train.checkpoint import save_network
    from tests.predict.helpers import exact_network

    net = exact_network(128, 4, 128, "Linear", seed=4)
    save_network(net, tmp_path / "net.nc")
    labels = [f"i{n}" for n in range(30)]
    write_index(tmp_path / "idx", labels)
    write_lines(tmp_path / "in.txt", {"a": ["i1", "i2"], "b": ["i3"]})
    assert main(["predict", "-n", str(tmp_path / "net.nc"), "-i", str(tmp_path / "idx"), "-o", str(tmp_path / "idx"),
                 "-r", str(tmp_path / "in.txt"), "-s", str(tmp_path / "r.txt"), "-k", "100", "--quiet"]) == 0
    recs = parse_recs(tmp_path / "r.txt")
    assert len(recs["a"]) == 28 and len(recs["b"]) == 29
    assert {item for item, _ in recs["a"]} <= set(labels)


def test_drop_unknown_skips_labels_missing_from_the_index_with_a_warning(case, capsys):
    tmp_path, paths, rows, labels, net = case
    write_lines(tmp_path / "new.txt", {"a": [labels[0], "brand-new-movie"], "b": ["brand-new-movie"]})
    assert main(["predict", "-n", str(paths["net"]), "-i", str(paths["index"]), "-o", str(paths["index"]),
                 "-r", str(tmp_path / "new.txt"), "-s", str(tmp_path / "r.txt"), "-k", "3", "--drop-unknown",
                 "--quiet"]) == 0
    assert "dropped 2 datapoints" in capsys.readouterr().err
    recs = parse_recs(tmp_path / "r.txt")
    assert list(recs) == ["a", "b"] and len(recs["b"]) == 3 and labels[0] not in dict(recs["a"])


def test_a_streamed_netcdf_input_gives_the_same_recs(case, capsys):
    tmp_path, paths, rows, labels, net = case
    offsets = np.concatenate([[0], np.cumsum([len(r) for r in rows])])
    write_netcdf(tmp_path / "in.nc", SparseDataset("input", (len(labels),), offsets, np.concatenate(rows)))
    write_index(tmp_path / "samples", [f"u{j}" for j in range(len(rows))])
    write_lines(tmp_path / "filter.txt", {f"u{j}": [labels[(7 * j) % len(labels)]] for j in range(len(rows))})
    common = ["predict", "-n", str(paths["net"]), "--input-nc", str(tmp_path / "in.nc"), "-o", str(paths["index"]),
              "--samples", str(tmp_path / "samples"), "-k", "6", "-b", "5", "-f", str(tmp_path / "filter.txt")]
    assert main(common + ["-s", str(tmp_path / "memory.txt"), "--no-stream", "--quiet"]) == 0
    assert main(common + ["-s", str(tmp_path / "stream.txt"), "--stream"]) == 0
    assert "the input streamed from disk" in capsys.readouterr().out
    assert (tmp_path / "stream.txt").read_text() == (tmp_path / "memory.txt").read_text()
    assert main(common + ["-s", str(tmp_path / "none.txt"), "--stream", "--memory-budget", "100B"]) == 2
    assert "cannot hold two batches" in capsys.readouterr().err and not (tmp_path / "none.txt").exists()
