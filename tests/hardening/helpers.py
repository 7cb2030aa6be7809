"""A small training problem on disk for the hardening tests: datasets, config, command lines."""

from __future__ import annotations

import json

from destiny.data import SparseDataset, write_netcdf
from tests.helpers import clustered_dataset

CONFIG = {"Version": 0.8, "ErrorFunction": "ScaledMarginalCrossEntropy",
          "Layers": [{"Name": "Input", "N": "auto", "DataSet": "input", "Sparse": True},
                     {"Name": "Hidden", "N": 32, "Activation": "Relu", "pDropout": 0.2},
                     {"Name": "Output", "N": "auto", "DataSet": "output", "Sparse": True}]}


def write_problem(directory, users: int = 200, items: int = 64) -> None:
    """input.nc, output.nc (one clustered dataset under both names) and net.json."""
    d = clustered_dataset(users, items, seed=1)
    for name in ("input", "output"):
        write_netcdf(directory / f"{name}.nc", SparseDataset(name, (items,), d.offsets, d.indices))
    (directory / "net.json").write_text(json.dumps(CONFIG))


def train_args(directory, network: str, *extra: str) -> list[str]:
    """A `destiny train` command line on the problem (Adam, batch 8, quiet)."""
    return ["train", "-c", str(directory / "net.json"), "-i", str(directory / "input.nc"),
            "-o", str(directory / "output.nc"), "-n", str(directory / network), "-b", "8",
            "--optimizer", "adam", "--alpha", "0.01", "--quiet", *extra]
