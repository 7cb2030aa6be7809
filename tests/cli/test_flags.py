"""Flags a newcomer mistypes (destiny.cli.parser): DSSTNE's single-dash spelling of a long flag
and misspelt flags get "did you mean --flag?", exit status 2, from the command's own parser;
DSSTNE's own single-dash flags and attached short values keep working."""

from __future__ import annotations

import pytest

from destiny.cli.main import build_parser, main
from tests.hardening.helpers import train_args, write_problem


def _error(capsys, argv: list[str]) -> str:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert lines[0].startswith("usage: destiny"), err  # the usage, then one error line, no traceback
    assert "Traceback" not in err
    return lines[-1]


TRAIN = ["train", "-c", "net.json", "-i", "in.nc", "-o", "out.nc", "-n", "net.nc"]


@pytest.mark.parametrize("argv, message", [
    (TRAIN + ["-epochs", "1"], "destiny train: error: -epochs: flags spelt out take two dashes: did you mean --epochs?"),
    (TRAIN + ["-aplha", "0.1"], "destiny train: error: unrecognized argument -aplha: did you mean --alpha?"),
    (TRAIN + ["--aplha", "0.1"], "destiny train: error: unrecognized argument --aplha: did you mean --alpha?"),
    (TRAIN + ["--aplha=0.1"], "unrecognized argument --aplha: did you mean --alpha?"),
    (TRAIN + ["-epcohs", "1"], "unrecognized argument -epcohs: did you mean --epochs?"),  # not -e 'pcohs'
    (TRAIN + ["--lamda", "0.1"], "unrecognized argument --lamda: did you mean --lambda?"),
    (["train", "--epcohs", "1"], "unrecognized argument --epcohs: did you mean --epochs?"),  # before the missing -c
    (TRAIN + ["-x"], "unrecognized argument -x (see destiny train -h for the flags)"),
    (TRAIN + ["extra"], "unrecognized arguments: extra (see destiny train -h)"),
    (["predict", "-dataset", "gl"], "destiny predict: error: -dataset: flags spelt out take two dashes: did you mean "
                                    "--dataset?"),
    (["predict", "-topk", "5"], "destiny predict: error: unrecognized argument -topk: did you mean --top-k?"),
    (["generate", "-type", "analog"], "destiny generate: error: -type: flags spelt out take two dashes"),
    (["evaluate", "--treshold", "4"], "destiny evaluate: error: unrecognized argument --treshold: did you mean "
                                      "--threshold?"),
    (["trian"], "destiny: error: unknown command 'trian': did you mean train?"),
])
def test_a_mistyped_flag_gets_the_closest(capsys, argv, message):
    assert message in _error(capsys, argv)


def test_every_command_suggests(capsys):
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    for name, command in commands.items():
        flags = [s for a in command._actions for s in a.option_strings if s.startswith("--") and s != "--help"]
        if not flags:
            continue
        flag = max(flags, key=len)
        typo = flag[:-2] + flag[-1] + flag[-2]  # the last two letters swapped
        with pytest.raises(SystemExit):
            main([name, typo])
        assert f"did you mean {flag}?" in capsys.readouterr().err, name


def test_dsstne_flags_and_attached_values_still_work(tmp_path, capsys):
    write_problem(tmp_path)
    # DSSTNE's train: -alpha and -lambda with one dash; -e2 and -b16 with their values attached; --epoch abbreviated
    args = [a for a in train_args(tmp_path, "net.nc") if a not in ("--alpha", "0.01")]
    assert main(args + ["-alpha", "0.01", "-lambda", "0.0001", "-mu", "0.5", "-e2", "-b16"]) == 0
    assert "Epoch 2: training error" in capsys.readouterr().out
    assert main(train_args(tmp_path, "other.nc", "--epoch", "1")) == 0
