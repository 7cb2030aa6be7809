"""`destiny encode`: a layer's activations for every sample, to .npy or a NetCDF dense dataset."""

from __future__ import annotations

import numpy as np
import torch

from destiny.cli.main import main
from destiny.data import DenseDataset, read_index, read_netcdf
from destiny.ops.sparse import SparseBatch
from tests.predict.helpers import autoencoder_files


def test_npy_and_netcdf_hold_the_hidden_activations(tmp_path):
    paths, rows, labels, net = autoencoder_files(tmp_path)
    base = ["encode", "-n", str(paths["net"]), "-i", str(paths["index"]), "-r", str(paths["input"]), "-b", "5",
            "--quiet"]
    assert main([*base, "-o", str(tmp_path / "e.npy"), "--samples-out", str(tmp_path / "rows")]) == 0
    assert main([*base, "-o", str(tmp_path / "e.nc")]) == 0
    offsets = torch.tensor(np.concatenate([[0], np.cumsum([len(r) for r in rows])]))
    x = SparseBatch(offsets, torch.tensor(np.concatenate(rows), dtype=torch.int64), None, len(labels))
    want = net.predict({"Input": x}, ["Hidden"])["Hidden"].numpy()  # the last Hidden layer by default
    np.testing.assert_array_equal(np.load(tmp_path / "e.npy"), want)
    (dense,) = read_netcdf(tmp_path / "e.nc")
    assert isinstance(dense, DenseDataset) and dense.name == "Hidden"
    np.testing.assert_array_equal(dense.data, want)
    assert read_index(tmp_path / "rows") == {f"u{j}": j for j in range(len(rows))}


def test_the_output_layer_can_be_encoded(tmp_path):
    paths, rows, labels, net = autoencoder_files(tmp_path)
    assert main(["encode", "-n", str(paths["net"]), "-i", str(paths["index"]), "-r", str(paths["input"]),
                 "--layer", "Output", "-o", str(tmp_path / "o.npy"), "--quiet"]) == 0
    out = np.load(tmp_path / "o.npy")
    assert out.shape == (len(rows), len(labels)) and (out >= 0).all() and (out <= 1).all()
