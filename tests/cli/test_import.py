"""``destiny import``: an ONNX model, or weights with their JSON, become a network file (and its
JSON) written whole; what cannot be imported exits 2 with one line naming the file and the node
or key, and leaves no output behind."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
import torch

from destiny.cli.main import main
from destiny.config import load_config
from destiny.interop import to_onnx
from destiny.io.network_file import read_network
from destiny.train.checkpoint import network_to_file
from destiny.train.fingerprint import fingerprint_file
from tests.api.test_import import RECOMMENDER_JSON, recommender
from tests.api.test_interop import build

needs_onnx = pytest.mark.skipif(importlib.util.find_spec("onnx") is None, reason="onnx is not installed "
                                "(pip install destiny[onnx])")


def _fails(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


@needs_onnx
def test_onnx_model_becomes_a_network_file_and_its_json(tmp_path, capsys):
    net = build("skips-softmax")
    model = to_onnx(net, tmp_path / "net.onnx")
    out, config = tmp_path / "imported.nc", tmp_path / "imported.json"
    assert main(["import", str(model), "-o", str(out), "--config-out", str(config),
                 "--error-function", "ScaledMarginalCrossEntropy"]) == 0
    printed = capsys.readouterr().out
    imported = read_network(out)
    assert fingerprint_file(imported) == fingerprint_file(network_to_file(net))
    assert f"fingerprint {fingerprint_file(imported)}" in printed and "Input: Input 40 sparse" in printed
    assert load_config(config) == imported.config
    assert imported.config.error_function.json == "ScaledMarginalCrossEntropy"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["imported.json", "imported.nc", "net.onnx"]


def test_state_dict_with_its_json(tmp_path, capsys):
    model, config = recommender(tmp_path)
    torch.save(model.state_dict(), tmp_path / "w.pt")
    assert main(["import", str(tmp_path / "w.pt"), "-c", str(config), "-o", str(tmp_path / "w.nc")]) == 0
    nf = read_network(tmp_path / "w.nc")
    assert nf.dims["Input"] == (40,) and nf.config.layer("H1").batch_norm
    np.testing.assert_array_equal(nf.weights[0].weights, model.H1.weight.detach().numpy().T)  # (in, out)


@needs_onnx
def test_unmappable_onnx_exits_2_naming_node_op_and_need(tmp_path, capsys):
    from tests.api.test_import import _unmappable

    import onnx

    model, named, words = _unmappable("LogSoftmax")
    onnx.save(model, tmp_path / "m.onnx")
    err = _fails(capsys, ["import", str(tmp_path / "m.onnx"), "-o", str(tmp_path / "m.nc")])
    assert err.startswith(f"destiny import: error: {tmp_path / 'm.onnx'}: node {named} cannot be mapped")
    assert "Destiny would need" in err
    assert not (tmp_path / "m.nc").exists()


def test_bad_inputs_exit_2_with_one_line(tmp_path, capsys):
    model, config = recommender(tmp_path)
    weights = model.state_dict()
    torch.save(weights, tmp_path / "w.pt")
    (tmp_path / "junk.onnx").write_bytes(b"\x08\x07junk that is no protobuf model \xff\xff")
    torch.save(dict(weights, **{"extra.weight": torch.zeros(2, 2)}), tmp_path / "extra.pt")
    wide = dict(RECOMMENDER_JSON, Layers=[dict(layer) for layer in RECOMMENDER_JSON["Layers"]])
    wide["Layers"][1]["N"] = 17
    (tmp_path / "wide.json").write_text(json.dumps(wide))
    out = str(tmp_path / "out.nc")
    cases = [
        (["import", str(tmp_path / "junk.onnx"), "-o", out], "junk.onnx: not an ONNX model, a PyTorch state dict or "
         "a safetensors file"),
        (["import", str(config), "-o", out], "net.json: is JSON text"),
        (["import", str(tmp_path / "w.pt"), "-o", out], "w.pt holds weights only (a PyTorch state dict): give "
         "--config"),
        (["import", str(tmp_path / "extra.pt"), "-c", str(config), "-o", out], "extra.pt: key 'extra.weight' "
         "matches no layer"),
        (["import", str(tmp_path / "w.pt"), "-c", str(tmp_path / "wide.json"), "-o", out], "w.pt: key 'H1.weight' "
         "is (16, 40) but Input → H1 needs (17, 40)"),
        (["import", str(tmp_path / "w.pt"), "-c", str(config), "-o", str(tmp_path / "w.pt")], "-o "
         f"{tmp_path / 'w.pt'} is the same file as MODEL"),
        (["import", str(tmp_path / "missing.onnx"), "-o", out], "missing.onnx"),
    ]
    for argv, words in cases:
        err = _fails(capsys, argv)
        assert err.startswith("destiny import: error: ") and words in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["extra.pt", "junk.onnx", "net.json", "w.pt", "wide.json"]


def test_a_failed_import_leaves_the_existing_outputs_alone(tmp_path, capsys):
    model, config = recommender(tmp_path)
    torch.save(dict(model.state_dict(), **{"extra.weight": torch.zeros(2, 2)}), tmp_path / "extra.pt")
    (tmp_path / "out.nc").write_bytes(b"old network")
    (tmp_path / "out.json").write_text("old config")
    _fails(capsys, ["import", str(tmp_path / "extra.pt"), "-c", str(config), "-o", str(tmp_path / "out.nc"),
                    "--config-out", str(tmp_path / "out.json")])
    assert (tmp_path / "out.nc").read_bytes() == b"old network" and (tmp_path / "out.json").read_text() == "old config"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["extra.pt", "net.json", "out.json", "out.nc"]
