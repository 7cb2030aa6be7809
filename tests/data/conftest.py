"""Fixtures of the data tests: DSSTNE's MovieLens sample (skipped when the shared data is
absent) and a check that a failed write left nothing behind."""

from __future__ import annotations

import pathlib

import pytest

SAMPLE = "movielens-20m-dsstne-1024"


@pytest.fixture
def movielens_sample(shared_data) -> pathlib.Path:
    """The folder holding movielens_input_1024.txt and index.txt (DSSTNE's Java test data)."""
    folder = shared_data / SAMPLE
    if not (folder / "movielens_input_1024.txt").is_file():
        pytest.skip(f"DSSTNE's MovieLens sample not found in {folder}")
    return folder


@pytest.fixture
def assert_only():
    """assert_only(directory, *names): the directory holds exactly these files, so a failed
    command left no partial output and no temporary file."""

    def check(directory: pathlib.Path, *names: str) -> None:
        assert sorted(p.name for p in directory.iterdir()) == sorted(names)

    return check
