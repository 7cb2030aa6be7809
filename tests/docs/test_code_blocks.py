"""The code in README.md and docs/*.md works.

Conventions for fenced blocks (the info string after the opening ```):

- ``python``: run. The blocks of one file run in order in one namespace (a later block may use
  an earlier one's names), in a temporary directory that holds ``ratings.csv``, a small
  MovieLens-shaped table (userId, movieId, rating, timestamp; 80 users, 60 movies) standing
  in for MovieLens's own, so every block runs in seconds.
- ``python requires=mod1,mod2``: run if those modules import, else only compiled.
- ``python no-run``: only compiled (needs a GPU, real data, a launcher, ...).
- ``json`` whose object has ``Layers``: must load as a network description.
- ``bash``/``sh``/``console``: every ``destiny …`` command in it (also after ``torchrun …
  -m`` / ``mpirun -np N``) must parse with destiny's own argument parser. Here nothing is run;
  test_getting_started.py runs docs/getting-started.md's commands, in order, except those of
  ``bash no-run`` blocks (downloads, the same steps on data one has to fetch).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import warnings
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO

DOCS = [REPO / "README.md"] + sorted((REPO / "docs").glob("*.md"))
FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```\s*$", re.M | re.S)


def blocks(path: Path) -> list[tuple[str, str, int]]:
    """(info string, code, line number) of every fenced block of a Markdown file."""
    text = path.read_text(encoding="utf-8")
    return [(m.group(1).strip(), m.group(2), text.count("\n", 0, m.start()) + 2) for m in FENCE.finditer(text)]


def write_ratings(path: Path) -> None:
    from destiny.data import synthesize

    data = synthesize(80, 60, seed=7, mean_items=12, topics=3, topic_share=0.9)
    rng = np.random.default_rng(7)
    users = np.repeat(np.arange(1, data.n_examples + 1), np.diff(data.offsets))
    movies = data.indices.astype(np.int64) * 3 + 1  # ids that are not row numbers, as MovieLens's
    ratings = rng.choice([3.0, 3.5, 4.0, 4.5, 5.0], size=data.nnz, p=[0.15, 0.15, 0.3, 0.2, 0.2])
    stamps = 964_982_703 + rng.integers(0, 10**7, size=data.nnz)
    lines = ["userId,movieId,rating,timestamp"] + [f"{u},{m},{r:g},{t}" for u, m, r, t in
                                                   zip(users, movies, ratings, stamps)]
    path.write_text("\n".join(lines) + "\n")


def _runnable(info: str) -> bool:
    words = info.split()
    if "no-run" in words:
        return False
    for word in words:
        if word.startswith("requires="):
            return all(importlib.util.find_spec(m) is not None for m in word[len("requires="):].split(","))
    return True


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_python_blocks_run(path, tmp_path, monkeypatch):
    python = [(info, code, line) for info, code, line in blocks(path) if info.split()[:1] == ["python"]]
    if not python:
        pytest.skip(f"{path.name} has no Python blocks")
    import torch

    write_ratings(tmp_path / "ratings.csv")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__docs__"}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: one thread is several times faster on a busy machine
    try:
        for info, code, line in python:
            compiled = compile(code, f"{path.name}:{line}", "exec")
            if _runnable(info):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    exec(compiled, namespace)
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_json_network_descriptions_load(path):
    from destiny.config import loads_config

    for info, code, line in blocks(path):
        if info.split()[:1] == ["json"]:
            document = json.loads(code)
            if isinstance(document, dict) and "Layers" in document:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    loads_config(code, source=f"{path.name}:{line}")


def destiny_commands(code: str) -> list[list[str]]:
    """The argument lists of the ``destiny …`` commands of a shell block."""
    code = code.replace("\\\n", " ")
    found = []
    for line in code.splitlines():
        line = line.split(" #")[0].strip()
        if line.startswith(("$ ", "# ")):
            line = line[2:]
        for part in re.split(r"&&|;|\|", line):
            try:
                words = shlex.split(part)
            except ValueError:
                continue
            for i, word in enumerate(words):
                if word == "destiny" and (i == 0 or words[i - 1] not in ("cd", "ls", "rm")):
                    found.append(words[i + 1:])
                    break
    return found


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_shell_commands_parse(path, capsys):
    from destiny.cli.main import build_parser

    parser = build_parser()
    for info, code, line in blocks(path):
        if info.split()[:1] not in (["bash"], ["sh"], ["console"]):
            continue
        for argv in destiny_commands(code):
            try:
                parser.parse_args(argv)
            except SystemExit as exc:
                if exc.code not in (0, None):
                    pytest.fail(f"{path.name}:{line}: `destiny {' '.join(argv)}` does not parse: "
                                f"{capsys.readouterr().err.strip()}")
