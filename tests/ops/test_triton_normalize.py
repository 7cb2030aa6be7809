"""Row normalisation of sparse batches (``Normalize``: "L2" / "L1") and the rescale switch of
denoising: the fused kernels against their references (``reference.normalize_rows_ref``,
``denoise_ref``), padded batches, empty examples and zero values."""

from __future__ import annotations

import math

import pytest
import torch

from destiny.ops import functional as F
from destiny.ops import reference as ref
from destiny.ops.sparse import SparseBatch
from tests.helpers import random_batch
from tests.ops.kernel_check import assert_close, cast
from tests.ops.test_triton_sparse_linear import padded

NORMS = ["L2", "L1"]


def batch_on(device, batch, features, per_row, *, values, seed, dtype=torch.float32) -> SparseBatch:
    b = random_batch(batch, features, per_row, values=values, seed=seed, dtype=dtype)
    if values:  # signed values, and an example whose values are all 0 (norm 0: zeros, not NaN)
        b.values = b.values * torch.where(torch.arange(b.nnz) % 3 == 0, -1.0, 1.0).to(dtype)
        if b.batch_size > 1:
            b.values[int(b.offsets[1]):int(b.offsets[2])] = 0.0
    return cast(b, None, device)


@pytest.mark.parametrize("norm", NORMS)
def test_reference_is_the_definition(norm):
    """Tiny exact case: rows [3, 4], [], [2] (values) and their indicator twins."""
    b = SparseBatch(torch.tensor([0, 2, 2, 3]), torch.tensor([1, 4, 0]), torch.tensor([3.0, -4.0, 2.0]), 5)
    out = ref.normalize_rows_ref(b, norm)
    expected = [0.6, -0.8, 1.0] if norm == "L2" else [3 / 7, -4 / 7, 1.0]
    assert torch.allclose(out.values, torch.tensor(expected))
    assert out.indices is b.indices and out.offsets is b.offsets
    ones = ref.normalize_rows_ref(SparseBatch(b.offsets, b.indices, None, 5), norm)
    half = 1 / math.sqrt(2) if norm == "L2" else 0.5
    assert torch.allclose(ones.values, torch.tensor([half, half, 1.0]))
    dense = out.to_dense(torch.float64)
    size = dense.norm(dim=1) if norm == "L2" else dense.abs().sum(1)
    assert torch.allclose(size, torch.tensor([1.0, 0.0, 1.0], dtype=torch.float64))


def test_reference_keeps_padding_zero_and_the_batch_padded():
    b = random_batch(7, 40, 6, values=True, seed=1, dtype=torch.float32)
    p = padded(b, b.nnz + 13)
    out = ref.normalize_rows_ref(p, "L2")
    assert out.padded and out.nnz == p.nnz
    assert torch.equal(out.values[:b.nnz], ref.normalize_rows_ref(b, "L2").values)
    assert not out.values[b.nnz:].any()


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("values", [False, True], ids=["indicator", "values"])
@pytest.mark.parametrize("shape", [(1, 5, 3), (23, 300, 20), (9, 1000, 400)], ids=str)  # rows past BLOCK slots
def test_kernel_matches_the_reference(device, norm, values, shape):
    b = batch_on(device, *shape, values=values, seed=sum(shape))
    truth = ref.normalize_rows_ref(cast(b, torch.float64), norm).values
    for batch in (b, padded(b, b.nnz + 37)):
        with F.kernels(True):
            out = F.normalize_rows(batch, norm)
        assert out.values.dtype == torch.float32 and out.padded == batch.padded
        assert out.indices is batch.indices and out.offsets is batch.offsets
        assert torch.isfinite(out.values).all()
        assert_close(out.values[:b.nnz], truth, torch.float32, ref.normalize_rows_ref(b, norm).values,
                     f"normalize {norm}")
        assert not out.values[b.nnz:].any()


def test_kernel_handles_an_empty_batch_and_empty_examples(device):
    empty = cast(SparseBatch(torch.zeros(4, dtype=torch.int64), torch.zeros(0, dtype=torch.int64), None, 9), None,
                 device)
    with F.kernels(True):
        out = F.normalize_rows(empty, "L2")
        pad = F.normalize_rows(padded(empty, 5), "L1")
    assert out.values.numel() == 0
    assert pad.values.shape == (5,) and not pad.values.any()


@pytest.mark.parametrize("values", [False, True], ids=["indicator", "values"])
def test_denoise_without_rescale_keeps_the_mask_and_the_values(device, values):
    """Rescale false: the same slots dropped as with the default (the stream is unchanged),
    kept values as they were; kernel bitwise the reference."""
    b = batch_on(device, 31, 300, 20, values=values, seed=4)
    for batch in (b, padded(b, b.nnz + 21)):
        for seed in (7, 2**40 + 3):
            scaled = ref.denoise_ref(batch, 0.3, seed)
            plain = ref.denoise_ref(batch, 0.3, seed, rescale=False)
            with F.kernels(True):
                k_plain = F.denoise(batch, 0.3, torch.tensor(seed, device=device), rescale=False)
                k_scaled = F.denoise(batch, 0.3, seed)
            assert torch.equal(k_plain.values, plain.values) and torch.equal(k_scaled.values, scaled.values)
            assert torch.equal(plain.values != 0, scaled.values != 0)
            kept = plain.values != 0
            original = batch.values_or_ones(torch.float32)
            assert torch.equal(plain.values[kept], original[kept])
            assert torch.equal(scaled.values[kept], original[kept] * (1.0 / 0.7))


def test_normalise_then_denoise_is_mult_vae_input_dropout(device):
    """Mult-VAE's input: x/‖x‖ then dropout with 1/(1 − p); dense reference against the sparse ops."""
    b = batch_on(device, 12, 60, 10, values=False, seed=8)
    with F.kernels(True):
        x = F.denoise(F.normalize_rows(b, "L2"), 0.5, 11)
    dense = b.to_dense()
    dense = dense / dense.norm(dim=1, keepdim=True).clamp(min=1e-30)
    keep = ref.denoise_ref(b, 0.5, 11).values != 0
    mask = SparseBatch(b.offsets, b.indices, keep.float(), b.n_features).to_dense()
    assert torch.allclose(x.to_dense(), dense * mask * 2.0, rtol=1e-6, atol=1e-7)


def test_a_recipe_network_trains_the_same_on_the_kernels(device):
    """Normalize, Denoising without Rescale, ZeroDiagonal and FrequencyBias through the static
    step on the kernels (padded batches, device seeds) against the exact step on the references."""
    from destiny.nn.network import Network
    from destiny.train.optimizers import Hyperparameters
    from destiny.train.trainer import Trainer
    from tests.helpers import clustered_dataset, config

    def fit(force: bool, static: bool):
        cfg = config([
            {"Name": "In", "N": "auto", "DataSet": "in", "Sparse": True, "Normalize": "L2"},
            {"Name": "H", "N": 12, "Activation": "Relu", "WeightInit": {"Scheme": "Gaussian", "Scale": 0.1}},
            {"Name": "Out", "N": "auto", "DataSet": "in", "Sparse": True, "Source": ["H", "In"],
             "Activation": "Sigmoid", "ZeroDiagonal": True,
             "WeightInit": {"Scheme": "Gaussian", "Scale": 0.1, "FrequencyBias": True}},
        ], ErrorFunction="CrossEntropy", Denoising={"p": 0.3, "Rescale": False})
        net = Network.from_config(cfg, {"in": (40,)}, seed=3)
        data = clustered_dataset(100, 40, seed=2)
        with F.kernels(force):
            trainer = Trainer(net, "adam", Hyperparameters(alpha=0.01), batch_size=32, progress=False,
                              device=device, static_shapes=static, cuda_graphs=False)
            errors = [r.training_error for r in trainer.fit({"in": data}, 2)]
        return net, errors

    ref_net, ref_errors = fit(False, False)
    k_net, k_errors = fit(True, True)
    assert k_errors == pytest.approx(ref_errors, rel=1e-5)
    for (name, a), b in zip(k_net.named_parameters(), ref_net.parameters()):
        assert_close(a, b.double(), torch.float32, what=name)
    assert not k_net.weights[k_net.diagonals[0][0]].diagonal().any()


COMPILE = '''
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
import destiny.ops.triton.normalize as nm

for val, out, values, l2 in [("*fp32", "*fp32", True, True), ("*fp32", "*fp32", False, False),
                             ("*fp64", "*fp64", True, False), ("*fp32", "*fp64", False, True)]:
    types = {"val_ptr": val, "out_ptr": out, "off_ptr": "*i64"}
    consts = dict(L2=l2, HAS_VALUES=values, BLOCK=nm.BLOCK)
    sig = {n: ("constexpr" if n in consts else types[n]) for n in nm.normalize_kernel.arg_names}
    attrs = {(nm.normalize_kernel.arg_names.index(n),): [["tt.divisibility", 16]] for n in types}
    src = ASTSource(nm.normalize_kernel, sig, constexprs=consts, attrs=attrs)
    assert triton.compile(src, target=GPUTarget("cuda", 90, 32), options={"num_warps": 4}).asm["cubin"]
print("compiled")
'''


def test_the_kernel_compiles_for_sm90():
    """As tests/ops/test_triton_compile.py: the compiler (no GPU needed) catches what the
    interpreter does not (the loop over bounds read from memory, the types across it)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from destiny.backend import HAS_TRITON

    if not HAS_TRITON:
        pytest.skip("Triton is not importable")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parents[2] / "src"), env.get("PYTHONPATH", "")])
    run = subprocess.run([sys.executable, "-c", COMPILE], env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0 and "compiled" in run.stdout, run.stderr[-4000:]
