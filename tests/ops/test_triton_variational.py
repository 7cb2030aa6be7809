"""The ε of Variational layers on the kernel (ops/triton/normal.py) against its spec
``ops.random.normal_at``, and a Mult-VAE's training step on the static path: its device seeds and
device update counter (β's annealing) give what the exact step gives."""

from __future__ import annotations

import pytest
import torch

from destiny.ops import functional as F
from destiny.ops.random import normal_at, stream_seed
from tests.helpers import config
from tests.ops.kernel_check import assert_close
from tests.ops.test_triton_trainer import fit

SIZES = [1, 5, 4097, 10_007]  # never a multiple of the block
SEEDS = [0, 1, 2**31 + 7, stream_seed(12134, "variational", 3, 17, "Latent")]  # 1 is specialised by Triton


def same(kernel: torch.Tensor, reference: torch.Tensor) -> None:
    """Bitwise on CPU (the interpreter's float64 log and cos are NumPy's); on a GPU libdevice's
    may differ in the last float64 bit, so rarely in the last float32 bit."""
    if kernel.device.type == "cpu":
        assert torch.equal(kernel, reference)
    else:
        torch.testing.assert_close(kernel, reference, rtol=3e-7, atol=3e-7)


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("seed", SEEDS, ids=lambda s: f"seed{s}")
def test_the_normal_kernel_is_the_reference(device, n, seed):
    from destiny.ops.triton.normal import standard_normal

    expected = normal_at(seed, torch.arange(n, device=device))
    same(standard_normal(n, seed, device), expected)
    same(standard_normal(n, torch.tensor(seed, device=device), device), expected)  # the seed read on the device


def test_the_layer_draws_the_same_epsilon_on_both_paths(device):
    from destiny.nn.variational import standard_normal

    seed = torch.tensor(SEEDS[-1], device=device)
    with F.kernels(True):
        kernel = standard_normal((33, 7), seed, device)
    with F.kernels(False):
        reference = standard_normal((33, 7), seed, device)
    assert kernel.shape == (33, 7)
    same(kernel, reference)


def vae(seed=3):
    from destiny.nn.network import Network

    cfg = config([
        {"Name": "in", "N": "auto", "DataSet": "in", "Sparse": True},
        {"Name": "enc", "N": 16, "Activation": "Tanh", "pDropout": 0.2},
        {"Name": "z", "N": 4, "Activation": "Linear", "Variational": True},
        {"Name": "dec", "N": 16, "Activation": "Tanh"},
        {"Name": "out", "N": "auto", "DataSet": "out", "Sparse": True, "Activation": "SoftMax"},
    ], ErrorFunction="Multinomial", KL={"Beta": 0.2, "AnnealSteps": 5})
    return Network.from_config(cfg, {"in": (40,), "out": (40,)}, seed=seed)


def test_the_static_step_on_the_references_is_bitwise_the_exact_step():
    """Padded batches, the ε seed and the update count read from the device buffer, on the
    references: bitwise the exact step's weights and errors (β anneals over these steps)."""
    _, w_exact, e_exact = fit("cpu", force=False, static=False, net=vae())
    trainer, w_static, e_static = fit("cpu", force=False, static=True, net=vae())
    assert e_exact == e_static
    assert all(torch.equal(a, b) for a, b in zip(w_exact, w_static))
    assert trainer.runner(trainer._runner[0]).static and trainer.optimizer.steps == 2 * 4


def test_the_static_step_on_the_kernels_equals_the_reference_step(device):
    _, w_ref, e_ref = fit(device, force=False, static=False, net=vae())
    _, w_k, e_k = fit(device, force=True, static=True, net=vae())
    assert e_k == pytest.approx(e_ref, rel=1e-5)
    for a, b in zip(w_k, w_ref):
        assert_close(a, b.double(), torch.float32, what="weights after training")


@pytest.mark.gpu
def test_cuda_graph_replays_of_a_mult_vae_equal_its_eager_steps_bitwise():
    """β anneals over the first 5 updates and ε changes every step: a replay that read a stale
    update count or seed would differ from the eager steps."""
    torch.manual_seed(0)
    eager, w_eager, e_eager = fit("cuda", force=True, static=True, net=vae(), epochs=3, graphs=False)
    graphs, w_graph, e_graph = fit("cuda", force=True, static=True, net=vae(), epochs=3, graphs=True)
    status = graphs.graph_status()
    assert status["why_not"] is None and status["captures"] == 1 and status["replays"] == 3 * 3 - 1, status
    assert e_eager == e_graph
    assert all(torch.equal(a, b) for a, b in zip(w_eager, w_graph))
