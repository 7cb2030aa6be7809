"""`destiny check`: the table, the parameter total, and one-line errors with exit status 2."""

from __future__ import annotations

import json
from pathlib import Path

from destiny.cli.main import main

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "configs"


def test_check_reports_the_parameter_total(capsys):
    status = main(["check", str(EXAMPLES / "movielens-20m.json"), "--input-width", "27278", "--output-width", "27278"])
    out = capsys.readouterr().out
    assert status == 0
    assert "Parameters: 88,548,494" in out
    for cell in ("Hidden3", "Relu", "1536", "41,926,286", "27278 sparse"):
        assert cell in out


def test_check_without_widths_lists_layers(capsys):
    assert main(["check", str(EXAMPLES / "autoencoder.json")]) == 0
    assert "unknown until the widths" in capsys.readouterr().out


def test_check_width_by_dataset_name(capsys):
    assert main(["check", str(EXAMPLES / "cifar100-strawman.json"), "--width", "input=32x32x3",
                 "--width", "output=100"]) == 0
    assert "Parameters: 1,939,684" in capsys.readouterr().out


def test_errors_are_one_line_with_exit_status_2(tmp_path, capsys):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"Layers": [{"N": 4, "DataSet": "x"}, {"N": 2, "pDropuot": 0.1},
                                           {"N": 4, "DataSet": "y"}]}))
    assert main(["check", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("destiny check: error: ") and "did you mean 'pDropout'?" in err


def test_missing_file_and_bad_width(tmp_path, capsys):
    assert main(["check", str(tmp_path / "none.json")]) == 2
    assert "No such file or directory" in capsys.readouterr().err
    assert main(["check", str(EXAMPLES / "autoencoder.json"), "--input-width", "12q"]) == 2
    assert "--input-width '12q': give 1 to 4 positive integers" in capsys.readouterr().err
    assert main(["check", str(EXAMPLES / "autoencoder.json"), "--width", "nothere=5"]) == 2
    assert "no layer reads a dataset named 'nothere'" in capsys.readouterr().err


def test_warnings_go_to_stderr(tmp_path, capsys):
    path = tmp_path / "old.json"
    path.write_text(json.dumps({"ErrorFunction": "SMCE", "Layers": [{"N": 4, "DataSet": "x"}, {"N": 4, "DataSet": "y"}]}))
    assert main(["check", str(path)]) == 0
    assert "destiny: warning: " in capsys.readouterr().err
