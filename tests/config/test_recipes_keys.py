"""The recipe keys (Destiny extensions): Normalize, Denoising.Rescale, ZeroDiagonal and
WeightInit.FrequencyBias — how they read, where they are refused and why, how they are written
back (left out at their defaults, so DSSTNE's parser still reads what Destiny writes), and the
warnings and checks of `destiny check`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from destiny.cli.main import main
from destiny.config import dumps_config, loads_config
from destiny.errors import ConfigError
from tests.helpers import config

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "configs"


def net(input_extra=None, output_extra=None, hidden=None, **top):
    layers = [{"Name": "In", "N": "auto", "DataSet": "in", "Sparse": True, **(input_extra or {})}]
    if hidden is not None:
        layers.append({"Name": "Mid", **hidden})
    layers.append({"Name": "Out", "Kind": "Output", "N": "auto", "DataSet": "out", "Sparse": True,
                   **(output_extra or {})})
    return config(layers, **top)


@pytest.mark.parametrize("written, value", [("L2", "L2"), ("l1", "L1"), ("None", None), (None, None)])
def test_normalize_reads_any_case(written, value):
    assert net({"Normalize": written}).layers[0].normalize == value


@pytest.mark.parametrize("layers, message", [
    ([{"N": 5, "DataSet": "in", "Sparse": True, "Normalize": "L3"}, {"N": 5, "DataSet": "out"}],
     "Layers[0].Normalize (layer 'Input0'): must be \"None\", \"L1\" or \"L2\"; got 'L3'"),
    ([{"N": 5, "DataSet": "in", "Normalize": "L2"}, {"N": 5, "DataSet": "out"}],
     "Layers[0].Normalize (layer 'Input0'): is for sparse Input layers"),
    ([{"N": 5, "DataSet": "in"}, {"N": 5, "DataSet": "out", "Normalize": "L2"}],
     "Layers[1].Normalize (layer 'Output1'): 'Normalize' is not allowed on an Output layer"),
    ([{"N": 5, "DataSet": "in"}, {"N": 3, "WeightInit": {"FrequencyBias": True}}, {"N": 5, "DataSet": "out"}],
     "Layers[1].WeightInit.FrequencyBias (layer 'Hidden1'): is for Output layers"),
    ([{"N": 5, "DataSet": "in"}, {"N": 5, "DataSet": "out", "Activation": "Tanh",
                                  "WeightInit": {"FrequencyBias": True}}],
     "Layers[1].WeightInit.FrequencyBias (layer 'Output1'): is defined for Sigmoid (log-odds), SoftMax "
     "(log-frequencies) and Linear (means) outputs; this layer's Activation is Tanh"),
    ([{"N": 10, "DataSet": "in", "Sparse": True}, {"N": 4, "ZeroDiagonal": True}, {"N": 10, "DataSet": "out"}],
     "Layers[1].ZeroDiagonal (layer 'Hidden1'): holds the diagonal of a square matrix at zero, but no source has "
     "this layer's width (4 units; sources: 'Input0' 10)"),
    ([{"N": 5, "DataSet": "in", "ZeroDiagonal": True}, {"N": 5, "DataSet": "out"}],
     "Layers[0].ZeroDiagonal (layer 'Input0'): 'ZeroDiagonal' is not allowed on an Input layer"),
    ([{"N": 5, "DataSet": "in", "Sparse": True}, {"N": 5, "Source": "Input0"},
      {"N": 5, "DataSet": "out", "Source": ["Input0", "Hidden1"], "ZeroDiagonal": True,
       "SharedWeights": {"InputLayer": "Hidden1", "SourceInputLayer": "Input0", "SourceOutputLayer": "Hidden1"}}],
     "Layers[2].ZeroDiagonal (layer 'Output2'): the matrix from 'Hidden1' is another pair's (SharedWeights)"),
])
def test_misplaced_recipe_keys_say_where_and_why(layers, message):
    with pytest.raises(ConfigError) as info:
        config(layers)
    assert message in str(info.value)


def test_zero_diagonal_with_auto_widths_is_checked_when_the_network_is_built():
    from destiny.nn.network import Network

    cfg = net(output_extra={"ZeroDiagonal": True})  # both "auto": the JSON does not say
    Network.from_config(cfg, {"in": (12,), "out": (12,)})
    with pytest.raises(ConfigError) as info:
        Network.from_config(cfg, {"in": (12,), "out": (13,)}, source="ease.json")
    assert str(info.value).startswith("ease.json: Layers[1].ZeroDiagonal (layer 'Out'): holds the diagonal")
    assert "(13 units; sources: 'In' 12)" in str(info.value)


def test_defaults_are_dsstnes():
    cfg = net(hidden={"N": 4}, Denoising={"p": 0.2})
    assert cfg.denoising.rescale is True  # DSSTNE divides kept values by 1 − p (its _denoising_q)
    assert cfg.layers[0].normalize is None
    assert not cfg.layers[1].zero_diagonal and not cfg.layers[2].weight_init.frequency_bias


def test_extensions_at_their_defaults_are_not_written():
    """What Destiny writes for a DSSTNE description has no key DSSTNE's parser would reject."""
    cfg = net(output_extra={"WeightInit": {"Scheme": "Gaussian", "Scale": 0.01, "Bias": -5}},
              Denoising={"p": 0.2})
    text = dumps_config(cfg)
    for key in ("Rescale", "FrequencyBias", "Normalize", "ZeroDiagonal"):
        assert key not in text
    document = json.loads(text)
    assert document["Denoising"] == {"p": 0.2}
    assert document["Layers"][1]["WeightInit"] == {"Scheme": "Gaussian", "Scale": 0.01, "Bias": -5.0}


def test_extensions_round_trip():
    cfg = net({"Normalize": "L2"}, {"Activation": "Linear", "ZeroDiagonal": True,
                                    "WeightInit": {"FrequencyBias": True}},
              Denoising={"p": 0.5, "Rescale": False}, ErrorFunction="L2")
    document = json.loads(dumps_config(cfg))
    assert document["Denoising"] == {"p": 0.5, "Rescale": False}
    assert document["Layers"][0]["Normalize"] == "L2"
    assert document["Layers"][1]["ZeroDiagonal"] is True and document["Layers"][1]["WeightInit"]["FrequencyBias"]
    assert loads_config(dumps_config(cfg)) == cfg


def test_the_ease_example_checks(capsys):
    assert main(["check", str(EXAMPLES / "ease.json"), "--width", "input=1000", "--width", "output=1000"]) == 0
    captured = capsys.readouterr()
    assert "Parameters: 1,001,000" in captured.out and "warning" not in captured.err
    assert main(["check", str(EXAMPLES / "ease.json"), "--width", "input=1000", "--width", "output=999"]) == 2
    assert "Layers[1].ZeroDiagonal (layer 'Output'): holds the diagonal" in capsys.readouterr().err


WARNING = ("Layers[2] (layer 'Output'): a sparse Sigmoid output of 17,632 units starts at bias 0, so every output "
           "starts at probability 0.5; on real data this halves recommendation quality (measured on Last.fm: NDCG@100 "
           "0.175 against 0.385 with a negative output bias). Start the biases from the items' frequencies with "
           "\"WeightInit\": {\"FrequencyBias\": true}, or give a negative \"Bias\" such as -5")


def test_check_warns_about_a_wide_sigmoid_output_at_bias_zero(capsys):
    args = ["check", str(EXAMPLES / "autoencoder.json"), "--input-width", "17632", "--output-width", "17632"]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert captured.err == f"destiny: warning: {WARNING}\n"
    assert "Parameters:" in captured.out
    assert main(args) == 0  # every time, not once a process
    assert WARNING in capsys.readouterr().err


def test_check_warns_when_the_width_is_not_known(capsys):
    assert main(["check", str(EXAMPLES / "autoencoder.json")]) == 0
    assert "a sparse Sigmoid output of \"auto\" units (if its dataset is wider than 1,000) starts at bias 0" in \
        capsys.readouterr().err


@pytest.mark.parametrize("change", [
    {"WeightInit": {"FrequencyBias": True}},
    {"WeightInit": {"Bias": -5}},
    {"Activation": "SoftMax"},
    {"Sparse": False},
], ids=["frequency", "negative-bias", "softmax", "dense"])
def test_no_warning_for_outputs_that_start_well(tmp_path, capsys, change):
    document = json.loads((EXAMPLES / "autoencoder.json").read_text())
    document["Layers"][2].update(change)
    path = tmp_path / "net.json"
    path.write_text(json.dumps(document))
    assert main(["check", str(path), "--input-width", "17632", "--output-width", "17632"]) == 0
    assert "warning" not in capsys.readouterr().err


def test_no_warning_for_a_narrow_output(capsys):
    assert main(["check", str(EXAMPLES / "autoencoder.json"), "--input-width", "500", "--output-width", "500"]) == 0
    assert "warning" not in capsys.readouterr().err
