"""docs/getting-started.md's shell commands run, in order, as a user types them.

Every command of the guide's ``bash`` blocks (``$ `` lines of ``console`` blocks) runs in one
``bash -e`` in an empty temporary directory, with this Python's ``destiny`` first on the PATH,
so a later command finds the files an earlier one wrote. Not run: ``pip install`` lines (the
suite runs where they were done; the extras they name must exist) and blocks marked
``no-run`` (downloads, the same step on data one has to fetch), which test_code_blocks.py
still parses. The guide's Python blocks run in test_code_blocks.py.

Beyond exit status 0, the commands must agree with each other: ``destiny check`` counts the
parameters that the next ``destiny train`` of the same network trains.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import pytest

from tests.conftest import REPO
from tests.docs.test_code_blocks import blocks

GUIDE = REPO / "docs" / "getting-started.md"
MARK = "::guide-step::"


def shell_commands(path) -> list[tuple[str, int]]:
    """(command, line number) of every shell command of a Markdown file, in order; a command
    continued with a trailing backslash is one command."""
    found = []
    for info, code, line in blocks(path):
        words = info.split()
        if words[:1] not in (["bash"], ["sh"], ["console"]) or "no-run" in words:
            continue
        pending, start = "", line
        for number, text in enumerate(code.splitlines(), line):
            if words[0] == "console" and not pending:
                if not text.startswith("$ "):
                    continue  # output
                text = text[2:]
            if not pending and (not text.strip() or text.lstrip().startswith("#")):
                continue
            if not pending:
                start = number
            if text.endswith("\\"):
                pending += text[:-1] + " "
                continue
            found.append((pending + text, start))
            pending = ""
    return found


def test_the_guide_has_commands_to_run():
    commands = [c for c, _ in shell_commands(GUIDE)]
    assert any(c.startswith("destiny quickstart") for c in commands)
    assert any(c.startswith("destiny evaluate") for c in commands)


def extras() -> dict[str, set[str]]:
    """extra → the names of the packages it brings, from pyproject.toml (the file: an editable
    install does not re-read it)."""
    try:
        import tomllib
    except ImportError:  # Python 3.10
        tomllib = pytest.importorskip("tomli")
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return {extra: {re.match(r"[A-Za-z0-9_.-]+", r).group(0).lower() for r in requirements}
            for extra, requirements in project["optional-dependencies"].items()}


def test_the_test_extra_brings_every_extra_and_the_guide_lists_them():
    declared = extras()
    for extra, packages in declared.items():
        assert packages <= declared["test"], f"pyproject.toml: the test extra lacks {packages - declared['test']}"
    table = re.findall(r"^\| `([\w-]+)` \|", GUIDE.read_text(encoding="utf-8"), re.M)
    assert sorted(table) == sorted(declared), "getting-started.md's table of extras differs from pyproject.toml's"


def test_the_install_commands_name_existing_extras():
    declared = extras()
    assert {"test", "onnx", "plot"} <= set(declared)
    for command, line in shell_commands(GUIDE):
        if command.startswith("pip install"):
            for group in re.findall(r"\.\[([^\]]*)\]", command):
                for extra in group.split(","):
                    assert extra.strip() in declared, f"getting-started.md:{line}: no extra {extra!r} in pyproject.toml"


def run_guide(tmp_path) -> list[tuple[str, int, str, float]]:
    """Runs the guide's commands; (command, line, output, longest silence in s) of each that ran."""
    steps = [(c, line) for c, line in shell_commands(GUIDE) if not c.startswith("pip install")]
    script = "".join(f"echo '{MARK} {i}'\n{command}\n" for i, (command, _) in enumerate(steps))
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""),
               PYTHONUNBUFFERED="1")  # output as it comes, as on a terminal
    env.pop("TRITON_INTERPRET", None)  # the suite's setting (tests/conftest.py), not a user's
    process = subprocess.Popen(["bash", "-e", "-c", script], cwd=tmp_path, env=env, stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    outputs: list[list[str]] = []
    quiet: list[float] = []
    last = time.monotonic()
    for text in process.stdout:
        now = time.monotonic()
        if quiet:  # the silence before a step's next line, or before the next step starts: its last
            quiet[-1] = max(quiet[-1], now - last)
        if text.startswith(MARK):
            outputs.append([])
            quiet.append(0.0)
        else:
            outputs[-1].append(text)
        last = now
    if quiet:
        quiet[-1] = max(quiet[-1], time.monotonic() - last)
    status = process.wait()
    ran = [(command, line, "".join(out), gap) for (command, line), out, gap in zip(steps, outputs, quiet)]
    if status != 0:
        command, line, out, _ = ran[-1]
        pytest.fail(f"getting-started.md:{line}: `{command}` failed (exit status {status}):\n{out[-3000:]}")
    return ran


def parameters(text: str, pattern: str) -> int:
    match = re.search(pattern, text)
    assert match, text
    return int(match.group(1).replace(",", ""))


@pytest.mark.slow
def test_the_guides_commands_run_in_order(tmp_path):
    ran = run_guide(tmp_path)
    for command, _, _, gap in ran:  # shown with -s: the acceptance asks for no silence over 10 s on a user's machine
        print(f"{gap:5.1f} s silent at most: {command}")
    assert len(ran) == len([c for c, _ in shell_commands(GUIDE) if not c.startswith("pip install")])
    config = None
    for command, line, out, _ in ran:
        words = command.split()
        if words[:2] == ["destiny", "check"]:
            config, counted = words[2], parameters(out, r"Parameters: ([\d,]+)")
        elif words[:2] == ["destiny", "train"] and config == words[words.index("-c") + 1]:
            trained = parameters(out, r"([\d,]+) parameters")
            assert counted == trained, (f"getting-started.md:{line}: `destiny check {config}` counts {counted:,} "
                                        f"parameters, `destiny train` trains {trained:,}: give check the data's widths")
            config = None
    assert config is None, "no `destiny train` follows the guide's `destiny check`"
