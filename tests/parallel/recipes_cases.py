"""The recipe keys over N processes (``test_recipes_parallel``): one function for any world,
run in one process (pytest) and under ``torchrun --nproc-per-node N`` on gloo
(``run_recipes.py``), returning the same named arrays on rank 0.

The network: Input (23 sparse, Normalize L2, Denoising 0.2 without Rescale) → H1 (13) → H2 (13,
ZeroDiagonal from H1) → Output (23 sparse, Sigmoid, ZeroDiagonal from Input, FrequencyBias).
Widths 13 and 23 split unevenly over 2 and 3; every square matrix is split by output columns,
so a process's block of it starts at column c0 > 0 on the ranks after the first and holds the
diagonal at offset −c0 (``nn/itemitem.py``); the output's biases are each process's slice of
the frequencies. A second network starts from a closed form (``WeightInit.ClosedForm``)."""

from __future__ import annotations

import warnings

import numpy as np
import torch

from destiny.errors import ConfigWarning
from destiny.parallel import World
from destiny.train.optimizers import Hyperparameters
from destiny.train.trainer import Trainer
from tests.helpers import config, sparse_dataset
from tests.parallel.cases import arrays_of

ITEMS, EXAMPLES, BATCH = 23, 50, 16


def data() -> dict:
    rng = np.random.default_rng(11)
    rows = [np.sort(rng.choice(ITEMS, size=rng.integers(1, 9), replace=False)) for _ in range(EXAMPLES)]
    return {"in": sparse_dataset(rows, ITEMS)}


def network(world: World):
    from destiny.nn.network import Network

    cfg = config([
        {"Name": "Input", "N": "auto", "DataSet": "in", "Sparse": True, "Normalize": "L2"},
        {"Name": "H1", "N": 13, "Activation": "Tanh"},
        {"Name": "H2", "N": 13, "Activation": "Tanh", "ZeroDiagonal": True, "pDropout": 0.1},
        {"Name": "Output", "N": "auto", "DataSet": "in", "Sparse": True, "Source": ["H2", "Input"],
         "Activation": "Sigmoid", "ZeroDiagonal": True, "WeightInit": {"FrequencyBias": True}},
    ], ErrorFunction="CrossEntropy", Denoising={"p": 0.2, "Rescale": False})
    return Network.from_config(cfg, {"in": (ITEMS,)}, seed=8, dtype=torch.float64, world=world)


def closed_form_network(world: World):
    """Input (Normalize L2) → H (7 tanh) and Input → Output (Linear, ZeroDiagonal, ClosedForm 2.0;
    the L2 error; Denoising 0.2 without Rescale): the hybrid started at its closed form."""
    from destiny.nn.network import Network

    cfg = config([
        {"Name": "Input", "N": "auto", "DataSet": "in", "Sparse": True, "Normalize": "L2"},
        {"Name": "H", "N": 7, "Activation": "Tanh"},
        {"Name": "Output", "N": "auto", "DataSet": "in", "Sparse": True, "Source": ["H", "Input"],
         "Activation": "Linear", "ZeroDiagonal": True, "WeightInit": {"ClosedForm": 2.0}},
    ], ErrorFunction="L2", Denoising={"p": 0.2, "Rescale": False})
    return Network.from_config(cfg, {"in": (ITEMS,)}, seed=8, dtype=torch.float64, world=world)


def run_all(world: World) -> dict:
    out: dict = {}
    net = network(world)
    trainer = Trainer(net, "momentum", Hyperparameters(alpha=0.1, lam=0.001), batch_size=BATCH, progress=False,
                      seed=4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConfigWarning)
        trainer.fit(data(), 0)  # the start of training: the frequency biases, nothing trained
    arrays_of(net, "start", out)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConfigWarning)
        results = trainer.fit(data(), 2)
    out["trained.errors"] = np.asarray([r.training_error for r in results])
    arrays_of(net, "trained", out)
    out["trained.diagonals"] = np.asarray([offset for _, offset in net.diagonals])
    closed = closed_form_network(world)
    Trainer(closed, "sgd", Hyperparameters(alpha=0.01), batch_size=BATCH, progress=False, seed=4).fit(data(), 0)
    arrays_of(closed, "closed_start", out)  # every process solves the whole matrix and keeps its block
    return out if world.is_root else {}
