"""The Python API of issue 10 from `import destiny`: load_config, Network.from_config / load /
save, Trainer with callbacks and history, network.predict / recommend / encode."""

from __future__ import annotations

import json

import numpy as np
import scipy.sparse as sp
import torch

import destiny
from destiny.data import from_scipy
from tests.helpers import clustered_dataset

CONFIG = {"ErrorFunction": "ScaledMarginalCrossEntropy",
          "ScaledMarginalCrossEntropy": {"oneTarget": 1.0, "zeroTarget": 0.0},
          "Layers": [{"Name": "Input", "N": "auto", "DataSet": "input", "Sparse": True},
                     {"Name": "Hidden", "N": 12, "Activation": "Relu"},
                     {"Name": "Output", "N": "auto", "DataSet": "output", "Sparse": True}]}


def matrix(users: int = 80, items: int = 30) -> sp.csr_matrix:
    d = clustered_dataset(users, items, seed=4)
    return sp.csr_matrix((np.ones(len(d.indices), np.float32), d.indices, d.offsets), shape=(users, items))


def test_the_whole_python_api(tmp_path):
    (tmp_path / "net.json").write_text(json.dumps(CONFIG))
    config = destiny.load_config(tmp_path / "net.json")
    x = matrix()
    data = from_scipy(x, name="input")
    network = destiny.Network.from_config(config, {"input": data.dims, "output": data.dims}, seed=7)
    seen = []
    trainer = destiny.Trainer(network, "adam", batch_size=16, progress=False,
                              callbacks=[lambda result, tr: seen.append(result.epoch)])
    trainer.fit({"input": data, "output": data.replace(name="output")}, epochs=2)
    assert seen == [1, 2] and [r.epoch for r in trainer.history] == [1, 2]

    scores = network.predict(x)["Output"]
    assert scores.shape == (80, 30)
    recs = network.recommend(x, k=5)
    assert recs.items.shape == (80, 5)
    assert not any(set(recs.items[u]) & set(x[u].indices) for u in range(80))  # seen items removed

    codes = network.encode(x)  # the last Hidden layer by default
    assert codes.shape == (80, 12) and codes.dtype == np.float32
    np.testing.assert_allclose(codes, network.predict(x, ["Hidden"])["Hidden"].numpy(), rtol=1e-6)
    np.testing.assert_allclose(network.encode(x, "Output", batch_size=7), scores.numpy(), rtol=1e-6)

    fingerprint = network.save(tmp_path / "net.nc")
    loaded = destiny.Network.load(tmp_path / "net.nc")
    assert isinstance(loaded, destiny.Network)
    assert destiny.save_network(loaded, tmp_path / "again.nc") == fingerprint  # the same weights
    torch.testing.assert_close(loaded.predict(x)["Output"], scores, rtol=0, atol=0)
