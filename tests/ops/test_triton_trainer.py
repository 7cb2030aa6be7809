"""The Trainer's static-shape step (padded batches, device seeds and scalars, the folded loss
gradient) on the kernels, and its CUDA graphs: a captured step replays exactly what the eager
step computes."""

from __future__ import annotations

import pytest
import torch

from destiny.ops import functional as F
from destiny.train.fingerprint import fingerprint_arrays
from destiny.train.optimizers import Hyperparameters
from destiny.train.trainer import Trainer
from tests.helpers import clustered_dataset
from tests.ops.kernel_check import assert_close
from tests.train.test_trainer import autoencoder


def fit(device, *, force: bool, static: bool, optimizer="adam", epochs=2, graphs=False, batch=32, users=100,
        net=None, **hyper):
    """Train the denoising, dropout autoencoder; returns (trainer, weights, training errors)."""
    net = net or autoencoder(40, seed=3, dropout=0.3, denoise=0.1)
    data = clustered_dataset(users, 40, seed=2)
    with F.kernels(force):
        trainer = Trainer(net, optimizer, Hyperparameters(alpha=0.01, **hyper), batch_size=batch, progress=False,
                          device=device, static_shapes=static, cuda_graphs=graphs)
        results = trainer.fit({"in": data, "out": data}, epochs)
    return trainer, [p.detach().clone() for p in net.parameters()], [r.training_error for r in results]


def test_static_shapes_on_the_references_change_nothing():
    """Padded batches, device seeds and the folded gradient seed, run on the references: the
    weights are bitwise those of the exact-batch step (100 users, batch 32: a partial batch)."""
    _, w_exact, e_exact = fit("cpu", force=False, static=False, optimizer="momentum", lam=0.001)
    _, w_static, e_static = fit("cpu", force=False, static=True, optimizer="momentum", lam=0.001)
    assert e_exact == e_static
    assert all(torch.equal(a, b) for a, b in zip(w_exact, w_static))


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_the_static_step_on_the_kernels_equals_the_reference_step(device, optimizer):
    """The whole static step on the kernels (take, denoise, sparse_linear and its row-sparse
    gradient, dropout with device seeds, the fused loss with the folded seed, the optimizer with
    device scalars) against the exact step on the references."""
    _, w_ref, e_ref = fit(device, force=False, static=False, optimizer=optimizer)
    trainer, w_k, e_k = fit(device, force=True, static=True, optimizer=optimizer)
    assert e_k == pytest.approx(e_ref, rel=1e-5)
    for a, b in zip(w_k, w_ref):
        assert_close(a, b.double(), torch.float32, what="weights after training")
    runner = trainer.runner(trainer._runner[0])
    assert runner.static and set(runner.capacity.values()) == {4096}
    assert trainer.graph_status()["replays"] == 0 and trainer.optimizer.steps == 2 * 4


def test_step_and_step_examples_take_host_examples(device):
    import numpy as np

    from destiny.train.binding import Binding

    net = autoencoder(40, seed=3)
    data = clustered_dataset(64, 40, seed=2)
    with F.kernels(True):
        trainer = Trainer(net, "sgd", batch_size=16, progress=False, device=device, static_shapes=True,
                          cuda_graphs=False)
        binding = Binding(net, {"in": data, "out": data}, device=torch.device(device))
        loss = trainer.step(binding, torch.arange(16), 1, 0)
        trainer.step_examples(binding, np.arange(16, 32))
        trainer.step_examples(binding, [40, 41, 42])  # another batch size: eager, its own buffers
    runner = trainer.runner(binding)
    assert float(loss) > 0 and float(runner.loss_sum) > float(loss)
    assert trainer.optimizer.steps == 3 and runner.stats["eager"] == 3


def _graph_fit(**kwargs):
    torch.manual_seed(0)
    return fit("cuda", force=True, static=True, **kwargs)


@pytest.mark.gpu
@pytest.mark.parametrize("optimizer", ["momentum", "adam", "sgd"])
def test_cuda_graph_replays_equal_the_eager_steps_bitwise(optimizer):
    """Every full batch after the first replays a captured graph; the weights, optimizer state
    and errors equal those of the same steps run eagerly, bit for bit (the last, partial batch
    of each epoch runs eagerly in both)."""
    eager, w_eager, e_eager = _graph_fit(optimizer=optimizer, epochs=3, graphs=False, lam=0.001)
    graphs, w_graph, e_graph = _graph_fit(optimizer=optimizer, epochs=3, graphs=True, lam=0.001)
    status = graphs.graph_status()
    assert status["why_not"] is None and status["captures"] == 1 and status["replays"] == 3 * 3 - 1, status
    assert eager.graph_status()["replays"] == 0
    assert e_eager == e_graph
    assert all(torch.equal(a, b) for a, b in zip(w_eager, w_graph))
    for name, state in eager.optimizer.state.items():
        for key, value in state.items():
            assert torch.equal(value, graphs.optimizer.state[name][key]), (name, key)
    assert eager.optimizer.steps == graphs.optimizer.steps == 3 * 4


@pytest.mark.gpu
def test_a_larger_capacity_recaptures_and_a_whole_fit_repeats_its_fingerprint():
    def run():
        net = autoencoder(40, seed=5, dropout=0.2, denoise=0.2)
        data = clustered_dataset(200, 40, seed=4)
        trainer = Trainer(net, "momentum", Hyperparameters(alpha=0.02), batch_size=64, progress=False,
                          device="cuda")
        trainer.fit({"in": data, "out": data}, 2)
        binding = trainer._runner[0]
        runner = trainer.runner(binding)
        runner.capacity = {k: v + 4096 for k, v in runner.capacity.items()}  # as if a bigger batch came
        trainer.fit({"in": data, "out": data}, 1)
        return fingerprint_arrays(p.detach().cpu().numpy() for p in net.parameters()), trainer

    (a, ta), (b, _) = run(), run()
    assert a == b
    assert ta.graph_status()["replays"] > 0 and ta.graph_status()["why_not"] is None


@pytest.mark.gpu
def test_batch_norm_networks_train_eagerly_and_say_why():
    from tests.helpers import config
    from destiny.nn.network import Network

    cfg = config([{"Name": "in", "N": "auto", "DataSet": "in", "Sparse": True},
                  {"Name": "h", "N": 16, "Activation": "Relu", "BatchNormalization": True},
                  {"Name": "out", "N": "auto", "DataSet": "out", "Sparse": True, "Activation": "Sigmoid"}],
                 ErrorFunction="CrossEntropy")
    net = Network.from_config(cfg, {"in": (40,), "out": (40,)}, seed=1)
    data = clustered_dataset(100, 40, seed=2)
    trainer = Trainer(net, "sgd", batch_size=32, progress=False, device="cuda")
    trainer.fit({"in": data, "out": data}, 1)
    status = trainer.graph_status()
    assert status["replays"] == 0 and "BatchNormalization" in status["why_not"]
