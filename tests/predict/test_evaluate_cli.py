"""`destiny evaluate` from a network and from a recs file agree with each other and with the
metrics computed by hand; JSON, several K, thresholds, users without recommendations."""

from __future__ import annotations

import json

import numpy as np
import pytest

from destiny.cli.main import main
from destiny.data import SparseDataset, write_netcdf
from destiny.predict.metrics import ranking_metrics
from tests.predict.helpers import autoencoder_files, brute_top_k, exact_scores, write_index, write_lines


@pytest.fixture
def case(tmp_path):
    paths, rows, labels, net = autoencoder_files(tmp_path, n_items=40, users=20, seed=3)
    rng = np.random.default_rng(5)
    held = {f"u{j}": sorted(set(rng.choice(40, size=int(rng.integers(0, 6)))) - set(r)) for j, r in enumerate(rows)}
    write_lines(tmp_path / "held.txt", {u: [labels[i] for i in items] for u, items in held.items() if items})
    return tmp_path, paths, rows, labels, net, held


def evaluate(*args) -> int:
    return main(["evaluate", *map(str, args)])


def test_network_and_recs_file_give_the_metrics_computed_by_hand(case, capsys):
    tmp_path, paths, rows, labels, net, held = case
    common = ["-o", paths["index"], "--held-out", tmp_path / "held.txt", "-k", 1, 5, 10, "--json"]
    assert evaluate("-n", paths["net"], "-i", paths["index"], "-r", paths["input"], *common) == 0
    from_network = json.loads(capsys.readouterr().out)
    assert main(["predict", "-n", str(paths["net"]), "-i", str(paths["index"]), "-o", str(paths["index"]),
                 "-r", str(paths["input"]), "-s", str(tmp_path / "recs.txt"), "-k", "10", "--quiet"]) == 0
    assert evaluate("--recs", tmp_path / "recs.txt", *common) == 0
    from_recs = json.loads(capsys.readouterr().out)
    assert from_network["metrics"] == from_recs["metrics"]
    recs = np.array([(r + [-1] * 10)[:10] for r in brute_top_k(exact_scores(net, rows), 10, [set(r) for r in rows])])
    offsets = np.concatenate([[0], np.cumsum([len(held[f"u{j}"]) for j in range(len(rows))])])
    indices = np.concatenate([held[f"u{j}"] for j in range(len(rows))]).astype(np.int64)
    for entry in from_network["metrics"]:
        want = ranking_metrics(recs, offsets, indices, k=entry["k"], n_items=len(labels)).as_dict()
        assert entry == pytest.approx({name: want[name] for name in entry})
    skipped = sum(1 for items in held.values() if not items)
    assert from_network["users"] == len(rows) - skipped and from_network["users_skipped"] == skipped
    assert "recall_min" in from_network["definitions"]


def test_table_json_out_and_the_popularity_baseline(case, capsys):
    tmp_path, paths, rows, labels, net, held = case
    assert evaluate("-n", paths["net"], "-i", paths["index"], "-r", paths["input"], "-o", paths["index"],
                    "--held-out", tmp_path / "held.txt", "-k", 3, "--popularity",
                    "--json-out", tmp_path / "m.json") == 0
    out = capsys.readouterr().out
    assert "Recall@K min" in out and "Most popular" in out and "Liang" in out
    document = json.loads((tmp_path / "m.json").read_text())
    assert document["metrics"][0]["k"] == 3 and document["baseline"]["metrics"][0]["k"] == 3


def test_threshold_and_users_without_recommendations(case, capsys):
    tmp_path, paths, rows, labels, net, held = case
    write_lines(tmp_path / "rated.txt", {"u0": [f"{labels[0]},5", f"{labels[1]},2.5"], "u1": [f"{labels[2]},1"],
                                         "newcomer": [f"{labels[3]},4"]})
    assert evaluate("-n", paths["net"], "-i", paths["index"], "-r", paths["input"], "-o", paths["index"],
                    "--held-out", tmp_path / "rated.txt", "--threshold", 4, "-k", 40, "--json") == 0
    document = json.loads(capsys.readouterr().out)
    assert document["users"] == 2 and document["users_without_recommendations"] == 1
    assert document["users_skipped"] == len(rows) - 1  # u1's only item is below the threshold
    # u0 has its relevant item among its 40 recommendations unless it was an input item
    assert document["threshold"] == 4


def test_a_threshold_that_is_not_a_number_is_refused(case, capsys):
    tmp_path, paths, rows, labels, net, held = case
    write_lines(tmp_path / "rated.txt", {"u0": [f"{labels[0]},5"]})
    assert evaluate("-n", paths["net"], "-i", paths["index"], "-r", paths["input"], "-o", paths["index"],
                    "--held-out", tmp_path / "rated.txt", "--threshold", "nan", "-k", 5) == 2
    assert "--threshold must be a finite rating" in capsys.readouterr().err


def test_held_out_users_none_of_whom_were_scored_are_refused(case, capsys):
    """Held-out items of other users (or none relevant at the threshold): every metric would be
    0; exit 2 naming the file instead of a table of zeros."""
    tmp_path, paths, rows, labels, net, held = case
    write_lines(tmp_path / "others.txt", {"stranger": [f"{labels[0]},5"], "another": [f"{labels[1]},4"]})
    base = ("-n", paths["net"], "-i", paths["index"], "-r", paths["input"], "-o", paths["index"], "-k", 5)
    assert evaluate(*base, "--held-out", tmp_path / "others.txt") == 2
    assert "none of its 2 users with held-out items is among the samples scored" in capsys.readouterr().err
    write_lines(tmp_path / "low.txt", {"u0": [f"{labels[0]},1"]})
    assert evaluate(*base, "--held-out", tmp_path / "low.txt", "--threshold", 4) == 2
    assert "no user has a relevant held-out item (a value ≥ 4)" in capsys.readouterr().err


def test_netcdf_held_out_with_recs_and_a_samples_index(case, capsys):
    tmp_path, paths, rows, labels, net, held = case
    assert main(["predict", "-n", str(paths["net"]), "-i", str(paths["index"]), "-o", str(paths["index"]),
                 "-r", str(paths["input"]), "-s", str(tmp_path / "recs.txt"), "-k", "5", "--quiet"]) == 0
    order = [f"u{j}" for j in reversed(range(len(rows)))]  # NetCDF rows in another order
    items = [held[u] for u in order]
    offsets = np.concatenate([[0], np.cumsum([len(i) for i in items])])
    write_netcdf(tmp_path / "held.nc", SparseDataset("output", (len(labels),), offsets,
                                                     np.concatenate(items).astype(np.int64)))
    write_index(tmp_path / "samples", order)
    assert evaluate("--recs", tmp_path / "recs.txt", "-o", paths["index"], "--held-out", tmp_path / "held.nc",
                    "--samples", tmp_path / "samples", "-k", 5, "--json") == 0
    from_nc = json.loads(capsys.readouterr().out)
    assert evaluate("--recs", tmp_path / "recs.txt", "-o", paths["index"], "--held-out", tmp_path / "held.txt",
                    "-k", 5, "--json") == 0
    assert json.loads(capsys.readouterr().out)["metrics"] == from_nc["metrics"]
