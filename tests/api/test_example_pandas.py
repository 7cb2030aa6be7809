"""examples/recommender_pandas.py runs end to end on a small ratings table, and with its defaults
trains what the README's Python block trains."""

from __future__ import annotations

import importlib.util
import re
import warnings

from tests.conftest import REPO
from tests.docs.test_code_blocks import blocks, write_ratings


def load_example():
    spec = importlib.util.spec_from_file_location("recommender_pandas", REPO / "examples" / "recommender_pandas.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    return example


def test_recommender_pandas_example(tmp_path, capsys):
    example = load_example()
    write_ratings(tmp_path / "ratings.csv")
    status = example.run([str(tmp_path / "ratings.csv"), "--epochs", "2", "--history", str(tmp_path / "h.json"),
                          "--save", str(tmp_path / "model.nc")])
    out = capsys.readouterr().out
    assert status == 0
    assert "Destiny" in out and "Most popular" in out and "P@10" in out
    assert (tmp_path / "h.json").exists() and (tmp_path / "model.nc").exists()


def test_the_example_with_its_defaults_trains_the_readmes_model(tmp_path, capsys, monkeypatch):
    import torch

    snippet = next(code for info, code, _ in blocks(REPO / "README.md") if info == "python")
    write_ratings(tmp_path / "ratings.csv")
    monkeypatch.chdir(tmp_path)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as test_code_blocks runs the README: tiny matrices
    try:
        namespace: dict = {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            exec(compile(snippet, "README.md", "exec"), namespace)
            readme = namespace["model"].save(tmp_path / "readme.nc")
            assert load_example().run(["ratings.csv", "--save", str(tmp_path / "example.nc")]) == 0
    finally:
        torch.set_num_threads(threads)
    example = re.search(r"wrote .*example.nc \(fingerprint (\w+)\)", capsys.readouterr().out).group(1)
    assert example == readme, "examples/recommender_pandas.py no longer trains the README's model"
