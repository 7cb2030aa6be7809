"""Destiny: deep learning on large sparse data, a modern successor of Amazon DSSTNE.

    import destiny
    model = destiny.Recommender().fit(user_items, validation=held_out)  # scipy CSR, users × items
    config = destiny.load_config("network.json")                # DSSTNE's JSON
    model = destiny.tune(train, validation, budget_s=300)       # recipes searched with Optuna
    network = destiny.Network.from_config(config, {"input": (27278,), "output": (27278,)})
    destiny.Trainer(network, "adam").fit({"input": train, "output": train}, epochs=10)

Names are imported on first use, so ``import destiny`` (and the ``destiny`` command) stay quick.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "Recommender": "destiny.recommender",
    "Network": "destiny.nn.network",
    "Trainer": "destiny.train.trainer",
    "load_config": "destiny.config",
    "loads_config": "destiny.config",
    "NetworkConfig": "destiny.config",
    "SparseDataset": "destiny.data",
    "DenseDataset": "destiny.data",
    "read_netcdf": "destiny.data",
    "write_netcdf": "destiny.data",
    "load_network": "destiny.train.checkpoint",
    "to_torch": "destiny.interop",
    "to_onnx": "destiny.interop",
    "from_torch_mlp": "destiny.interop",
    "save_network": "destiny.train.checkpoint",
}

# modules imported on first use: destiny.recipes (DSSTNE JSON of the field's autoencoders) and
# destiny.tune, a callable package: destiny.tune(train, validation, budget_s=…) searches them
_SUBMODULES = ("recipes", "tune")

__all__ = sorted(_EXPORTS) + list(_SUBMODULES) + ["__version__"]


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f"destiny.{name}")
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'destiny' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
