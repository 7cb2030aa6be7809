"""A network with the recipe keys saves to DSSTNE's network file layout and loads back the same:
the config (kept in Destiny's copy of the JSON, which DSSTNE ignores), the weights, the held
diagonal, and its predictions (Normalize applies after loading too)."""

from __future__ import annotations

import numpy as np
import torch

from destiny.io.network_file import read_network
from destiny.nn.network import Network
from destiny.train.checkpoint import load_network
from destiny.train.optimizers import Hyperparameters
from destiny.train.trainer import Trainer
from tests.helpers import clustered_dataset, config


def recipe_network():
    cfg = config([
        {"Name": "In", "N": "auto", "DataSet": "in", "Sparse": True, "Normalize": "L2"},
        {"Name": "H", "N": 8, "Activation": "Tanh"},
        {"Name": "Out", "N": "auto", "DataSet": "in", "Sparse": True, "Source": ["H", "In"], "Activation": "Sigmoid",
         "ZeroDiagonal": True, "WeightInit": {"Scheme": "Gaussian", "Scale": 0.1, "FrequencyBias": True}},
    ], ErrorFunction="CrossEntropy", Denoising={"p": 0.25, "Rescale": False})
    return Network.from_config(cfg, {"in": (30,)}, seed=6)


def test_recipe_keys_survive_a_save_and_a_load(tmp_path):
    net = recipe_network()
    data = clustered_dataset(60, 30, seed=4)
    Trainer(net, "adam", Hyperparameters(alpha=0.01), batch_size=16, progress=False).fit({"in": data}, 2)
    path = tmp_path / "recipes.nc"
    fingerprint = net.save(path)
    nf = read_network(path)
    assert nf.config == net.config and nf.info["fingerprint"] == fingerprint
    assert nf.config.layers[0].normalize == "L2" and not nf.config.denoising.rescale
    assert nf.config.layer("Out").zero_diagonal and nf.config.layer("Out").weight_init.frequency_bias
    loaded = load_network(path)
    for name, tensor in net.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
    assert loaded.diagonals == net.diagonals and not loaded.fresh
    square = dict(loaded.diagonals)
    assert all(not loaded.weights[key].diagonal().any() for key in square)
    inputs = {"in": data}
    np.testing.assert_array_equal(loaded.predict(inputs)["Out"].numpy(), net.predict(inputs)["Out"].numpy())
    assert loaded.save(tmp_path / "again.nc") == fingerprint


def test_export_to_plain_pytorch_normalises_inputs_as_the_network():
    """to_torch's module normalises dense and sparse (indicator or analog) rows as Normalize
    does, empty rows included, and computes predict's outputs."""
    import scipy.sparse as sp

    from destiny.interop import to_torch

    net = recipe_network()
    rng = np.random.default_rng(4)
    x = sp.csr_matrix((rng.random((12, 30)) < 0.3).astype(np.float32))
    x[3] = 0  # an empty row stays zero
    x.eliminate_zeros()
    want = net.predict(x)["Out"]
    module = to_torch(net)
    with torch.no_grad():
        dense = module(torch.as_tensor(x.toarray()))
        sparse = module((torch.as_tensor(x.indices), torch.as_tensor(x.indptr)))
        analog = module((torch.as_tensor(x.indices), torch.as_tensor(x.indptr), torch.full((x.nnz,), 2.5)))
    torch.testing.assert_close(dense, want, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(sparse, want, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(analog, want, rtol=1e-5, atol=1e-6)  # L2 rows: a constant value is the same row


def test_export_of_a_variational_network_computes_the_mean_path():
    import scipy.sparse as sp

    from destiny import recipes
    from destiny.config import config_from_json
    from destiny.interop import to_torch

    cfg = config_from_json(recipes.mult_vae(hidden=16, latent=4))
    net = Network.from_config(cfg, {"input": (30,), "output": (30,)}, seed=3)
    x = sp.csr_matrix((np.random.default_rng(2).random((10, 30)) < 0.3).astype(np.float32))
    module = to_torch(net)
    with torch.no_grad():
        got = module((torch.as_tensor(x.indices), torch.as_tensor(x.indptr)))
    torch.testing.assert_close(got, net.predict(x)["Output"], rtol=1e-5, atol=1e-6)
