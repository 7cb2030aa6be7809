"""Tiny synthetic splits and a small search space for the tuning tests (CPU, seconds)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from destiny.tune.space import Choice, Float, Int

GPU = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
MULTI_GPU = pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA GPUs")
DEVICES = ["cpu", pytest.param("cuda", marks=[pytest.mark.gpu, GPU])]

# every recipe, with widths and epochs small enough for a CPU test
TINY_SPACE = {
    "mult_vae": {"hidden": Int(8, 32, 16), "latent": Int(4, 16, 8), "dropout": Float(0.2, 0.6, 0.5),
                 "anneal_epochs": Float(1.0, 10.0, 3.0), "alpha": Float(1e-3, 1e-2, 3e-3, log=True),
                 "batch_size": Choice((64, 128), 64)},
    "mult_dae": {"hidden": Int(8, 32, 16), "dropout": Float(0.2, 0.6, 0.5),
                 "alpha": Float(1e-3, 1e-2, 3e-3, log=True), "batch_size": Choice((64, 128), 64)},
    "ease_network": {"lam_n": Float(1.0, 1000.0, 100.0, log=True), "alpha": Float(1e-3, 3e-2, 1e-2, log=True),
                     "batch_size": Choice((64, 128), 64)},
}
TINY_START = [{"recipe": "mult_dae"}, {"recipe": "mult_vae"}, {"recipe": "ease_network"}]


def split(users: int = 300, items: int = 200, seed: int = 1, share: float = 0.2):
    """(train, validation) scipy CSR of synthetic users: ``share`` of each user's items held out."""
    from destiny.data.interop import to_scipy
    from destiny.data.synth import synthesize

    x = to_scipy(synthesize(users, items, seed=seed, mean_items=12, topics=4)).tocsr()
    rows, cols = x.nonzero()
    held = np.random.default_rng(seed).random(len(rows)) < share
    ones = np.ones(len(rows), np.float32)
    train = sp.csr_matrix((ones[~held], (rows[~held], cols[~held])), shape=x.shape)
    validation = sp.csr_matrix((ones[held], (rows[held], cols[held])), shape=x.shape)
    return train, validation


@pytest.fixture(scope="session")
def tiny_split():
    return split()


def fingerprint(model) -> str:
    from destiny.train.checkpoint import network_to_file

    return network_to_file(model.network_).info["fingerprint"]
