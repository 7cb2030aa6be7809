"""examples/recommender_pandas.py runs end to end on a small ratings table."""

from __future__ import annotations

import importlib.util

from tests.conftest import REPO
from tests.docs.test_code_blocks import write_ratings


def test_recommender_pandas_example(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("recommender_pandas", REPO / "examples" / "recommender_pandas.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    write_ratings(tmp_path / "ratings.csv")
    status = example.run([str(tmp_path / "ratings.csv"), "--epochs", "2", "--history", str(tmp_path / "h.json"),
                          "--save", str(tmp_path / "model.nc")])
    out = capsys.readouterr().out
    assert status == 0
    assert "Destiny" in out and "Most popular" in out and "P@10" in out
    assert (tmp_path / "h.json").exists() and (tmp_path / "model.nc").exists()
