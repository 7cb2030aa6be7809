"""What `destiny quickstart` tells a newcomer: its help, and the next command it suggests, which
must paste into a shell as printed."""

from __future__ import annotations

import shlex
from pathlib import Path

from destiny.cli.main import build_parser, main


def commands(parser):
    """name → parser of every ``destiny`` command."""
    return next(a for a in parser._actions if isinstance(getattr(a, "choices", None), dict)).choices


def test_no_help_prints_a_doubled_percent_sign():
    # argparse turns %% into % in help= strings but prints a description as written
    for name, command in commands(build_parser()).items():
        assert "%%" not in command.format_help(), f"destiny {name} --help prints '%%'"


def test_the_suggested_next_command_is_one_line_that_runs_on_the_quickstarts_files(tmp_path, capsys):
    workdir = tmp_path / "a folder with spaces, and a long name so that the command is wider than the console"
    assert main(["quickstart", "--users", "200", "--items", "160", "--epochs", "1", "--workdir", str(workdir),
                 "--quiet"]) == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if "destiny train" in line]
    assert len(lines) == 1, out
    words = shlex.split(lines[0])
    assert words[:2] == ["destiny", "train"] and words[-1] == "my_network.nc", lines[0]  # not cut anywhere
    args = build_parser().parse_args(words[1:])
    for given in map(Path, (args.config, args.input, args.output)):
        assert given.parent == workdir and given.is_file(), given
