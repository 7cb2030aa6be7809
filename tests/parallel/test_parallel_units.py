"""The pieces of model parallelism in one process: DSSTNE's shard bounds, the split rule and
plan (tied weights included), every collective the identity at world size 1, launchers'
environment variables, initial weights and dropout masks drawn shard by shard equal to the
slices of the whole, sparse batches restricted to a feature range."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from destiny.config import WeightInit, WeightInitScheme
from destiny.config.shapes import WeightSpec
from destiny.nn.init import init_weight
from destiny.ops import functional as F
from destiny.ops import reference as ref
from destiny.ops.random import normal_at, uniform, uniform_at, uniform_range
from destiny.ops.sparse import SparseRows
from destiny.parallel import (INPUT, OUTPUT, World, all_bounds, all_gather_stack, all_reduce, gather_to_root,
                              gather_units, launch_env, plan_matrices, reduce_scatter_units, shard_bounds,
                              shard_sizes, split_rule, sum_float)
from tests.helpers import sparse_dataset


@given(st.integers(0, 10**12), st.integers(1, 4096))
def test_shards_cover_the_units_once_in_order_and_differ_by_at_most_one(n, world):
    bounds = all_bounds(n, world)
    assert bounds[0][0] == 0 and bounds[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
    sizes = shard_sizes(n, world)
    assert sum(sizes) == n and max(sizes) - min(sizes) <= 1
    assert all(shard_bounds(n, world, r) == (n * r // world, n * (r + 1) // world) for r in (0, world - 1))


def test_shard_bounds_rejects_a_rank_outside_the_world():
    with pytest.raises(ValueError, match="rank 3"):
        shard_bounds(10, 3, 3)


def test_dsstnes_split_rule():
    assert split_rule(27278, 1536) == INPUT  # MovieLens' input layer: reduce-scatter
    assert split_rule(1536, 1536) == OUTPUT  # square: all-gather
    assert split_rule(1536, 27278) == OUTPUT
    assert split_rule(30, 20) == INPUT and split_rule(30, 21) == OUTPUT  # 3·out > 2·in


def test_a_matrix_reading_a_data_layer_is_split_by_output_columns_unless_tied():
    seed_input = WeightSpec(0, "Input", "H1", (27278, 1536), 1536)
    hidden = WeightSpec(1, "H1", "H2", (1536, 64), 64)
    plan = plan_matrices([seed_input, hidden], 4, 2, data_layers={"Input"})
    assert plan[0].mode == OUTPUT and plan[0].rows == (0, 27278) and plan[0].cols == shard_bounds(1536, 4, 2)
    assert plan[1].mode == INPUT  # a hidden matrix keeps DSSTNE's rule
    assert plan_matrices([seed_input], 4, 2)[0].mode == INPUT  # not said to be data: the rule
    enc = WeightSpec(0, "Input", "Code", (1000, 256), 256)
    dec = WeightSpec(1, "Code", "Output", (256, 1000), 1000, shared_from=("Input", "Code"), transposed=True)
    tied = plan_matrices([enc, dec], 3, 1, data_layers={"Input"})  # the decoder's 1000 outputs decide
    assert tied[0].mode == INPUT and tied[1].mode == OUTPUT


def test_tied_weights_take_the_conjugate_split_so_ranks_hold_the_same_rows():
    enc = WeightSpec(0, "in", "code", (1000, 256), 256)
    dec = WeightSpec(1, "code", "out", (256, 1000), 1000, shared_from=("in", "code"), transposed=True)
    for rank in range(3):
        plan = plan_matrices([enc, dec], 3, rank)
        assert plan[0].mode == INPUT and plan[1].mode == OUTPUT
        assert plan[0].rows == plan[1].cols == shard_bounds(1000, 3, rank)
        assert plan[1].bias == shard_bounds(1000, 3, rank) and plan[0].bias == shard_bounds(256, 3, rank)
    square = WeightSpec(0, "a", "b", (10, 10), 10)
    mirror = WeightSpec(1, "b", "c", (10, 10), 10, shared_from=("a", "b"), transposed=True)
    plan = plan_matrices([square, mirror], 2, 1)  # both "output" by the rule: the tied one flips
    assert (plan[0].mode, plan[1].mode) == (OUTPUT, INPUT) and plan[0].cols == plan[1].rows


def test_collectives_are_the_identity_in_one_process():
    world = World.single()
    x = torch.randn(3, 5, requires_grad=True)
    assert gather_units(x, world, 5) is x and reduce_scatter_units(x, world, 5) is x and all_reduce(x, world) is x
    assert torch.equal(all_gather_stack(x, world)[0], x) and sum_float(2.5, world) == 2.5
    assert np.array_equal(gather_to_root(x, world, 1, 5), x.detach().numpy())
    assert world.bounds(7) == (0, 7) and world.is_root and not world.parallel


@pytest.mark.parametrize("env,expected", [
    ({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"}, (3, 4, 1, "torchrun")),
    ({"OMPI_COMM_WORLD_RANK": "2", "OMPI_COMM_WORLD_SIZE": "8", "OMPI_COMM_WORLD_LOCAL_RANK": "2"},
     (2, 8, 2, "Open MPI")),
    ({"PMI_RANK": "5", "PMI_SIZE": "6", "MPI_LOCALRANKID": "1"}, (5, 6, 1, "MPICH/PMI")),
])
def test_launchers_are_read_from_their_variables(monkeypatch, env, expected):
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE",
                "OMPI_COMM_WORLD_LOCAL_RANK", "PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID", "PMI_LOCAL_RANK",
                "SLURM_LOCALID"):
        monkeypatch.delenv(var, raising=False)
    assert launch_env() is None
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    got = launch_env()
    assert (got.rank, got.size, got.local_rank, got.launcher) == expected


def test_uniform_at_and_uniform_range_are_the_stream_elementwise():
    whole = uniform(77, 1001)
    assert torch.equal(uniform_at(77, torch.arange(1001)), whole)
    for start, n in [(0, 5), (3, 10), (998, 3), (401, 0)]:
        assert torch.equal(uniform_range(77, start, n), whole[start:start + n])
    z = normal_at(5, torch.arange(200_000))
    assert abs(float(z.mean())) < 0.01 and abs(float(z.std()) - 1) < 0.01


@pytest.mark.parametrize("scheme", list(WeightInitScheme), ids=lambda s: s.json)
def test_a_shard_of_the_initial_weights_is_the_slice_of_the_whole(scheme):
    spec = WeightInit(scheme=scheme, scale=0.7)
    whole = init_weight((53, 29), spec, 53, 29, 7, "w3")
    for rows, cols in [((0, 53), (10, 19)), ((17, 40), (0, 29)), ((52, 53), (28, 29)), ((5, 5), (0, 29))]:
        part = init_weight((53, 29), spec, 53, 29, 7, "w3", rows=rows, cols=cols)
        assert torch.equal(part, whole[rows[0]:rows[1], cols[0]:cols[1]])
    assert not torch.equal(whole, init_weight((53, 29), spec, 53, 29, 8, "w3")) or scheme == WeightInitScheme.CONSTANT


def test_initial_weights_follow_the_schemes_distributions():
    xavier = init_weight((400, 300), WeightInit(), 400, 300, 1, "w0")
    bound = np.sqrt(6.0 / 700)
    assert float(xavier.abs().max()) <= bound and float(xavier.abs().max()) > 0.99 * bound
    gauss = init_weight((400, 300), WeightInit(WeightInitScheme.GAUSSIAN, 0.5), 400, 300, 1, "w0")
    assert abs(float(gauss.std()) - 0.5) < 0.01 and abs(float(gauss.mean())) < 0.01


@pytest.mark.parametrize("p", [0.37, 0.9])
def test_a_dropout_shard_draws_its_slice_of_the_whole_layers_mask(p):
    x = torch.randn(37, 101, dtype=torch.float64)
    whole = ref.dropout_ref(x, p, 12345)
    saturation = -1.7581
    alpha = ref.alpha_dropout_ref(x, p, 99, saturation)
    for lo, hi in [(0, 33), (33, 67), (67, 101), (5, 6), (0, 101)]:
        assert torch.equal(ref.dropout_ref(x[:, lo:hi], p, 12345, lo, 101), whole[:, lo:hi])
        assert torch.equal(F.dropout(x[:, lo:hi], p, 12345, lo, 101), whole[:, lo:hi])
        assert torch.equal(ref.alpha_dropout_ref(x[:, lo:hi], p, 99, saturation, lo, 101), alpha[:, lo:hi])


def test_a_batch_restricted_to_a_feature_range_padded_or_not():
    rng = np.random.default_rng(0)
    rows = [np.sort(rng.choice(47, size=rng.integers(0, 9), replace=False)) for _ in range(13)]
    data = SparseRows(sparse_dataset(rows, 47, [rng.uniform(0.1, 1, len(r)) for r in rows]))
    examples = torch.tensor([3, 1, 4, 1, 5, 9, 2, 6])
    exact, padded = data.take(examples), data.take(examples, capacity=64)
    dense = exact.to_dense()
    for lo, hi in [(0, 15), (15, 31), (31, 47), (20, 21), (0, 47)]:
        a, b = exact.columns(lo, hi), padded.columns(lo, hi)
        assert a.n_features == b.n_features == hi - lo and b.padded and b.nnz == 64
        assert torch.equal(a.to_dense(), dense[:, lo:hi]) and torch.equal(b.to_dense(), dense[:, lo:hi])
        real = b.unpadded()
        assert torch.equal(real.indices, a.indices) and torch.equal(real.offsets, a.offsets)
        assert bool((b.rows()[a.nnz:] == 8).all()) and bool((b.indices[a.nnz:] == hi - lo).all())


def test_one_process_network_is_unchanged_by_the_world_argument():
    from tests.parallel.cases import mixed

    a, b = mixed(None), mixed(World.single())
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert a.sharding("weights.w0") == (1, 29) and a.sharding("weights.w1") == (1, 29)  # data: by columns
    assert a.sharding("weights.w2") == (0, 29)  # 29 → 11: by input rows
    assert a.sharding("weights.w5") == (1, 47)
    assert a.sharding("biases.b5") == (0, 47) and a.n_parameters() == sum(p.numel() for p in a.parameters())


def _kernel_device() -> str | None:
    from destiny.backend import HAS_CUDA, HAS_TRITON, TRITON_INTERPRET

    if not HAS_TRITON:
        return None
    return "cpu" if TRITON_INTERPRET else ("cuda" if HAS_CUDA else None)


@pytest.mark.skipif(_kernel_device() is None, reason="needs Triton: a CUDA GPU, or TRITON_INTERPRET=1 on CPU")
@pytest.mark.parametrize("seed_on_device", [False, True], ids=["int-seed", "device-seed"])
def test_the_dropout_kernel_draws_a_shards_slice_of_the_mask(seed_on_device):
    device = _kernel_device()
    x = torch.randn(37, 101, device=device).requires_grad_()
    seed = 2**40 + 3
    whole = ref.dropout_ref(x.detach(), 0.37, seed)
    alpha = ref.alpha_dropout_ref(x.detach(), 0.2, seed, -1.7581)
    for lo, hi in [(0, 33), (33, 67), (67, 101), (5, 6)]:
        part = x[:, lo:hi].detach().contiguous().requires_grad_()
        s = torch.tensor(seed, device=device) if seed_on_device else seed
        with F.kernels(True):
            y = F.dropout(part, 0.37, s, lo, 101)
            y.backward(torch.ones_like(y))
            a = F.alpha_dropout(part.detach(), 0.2, s, -1.7581, lo, 101)
        assert torch.equal(y.detach(), whole[:, lo:hi])
        assert torch.equal(part.grad != 0, whole[:, lo:hi] != 0)
        assert torch.allclose(a, alpha[:, lo:hi], rtol=1e-6, atol=1e-6)
