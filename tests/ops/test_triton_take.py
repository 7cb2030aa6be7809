"""The padded batch gather (``SparseRows.take(examples, capacity)``): the kernel against the
torch version, both against the exact batch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from destiny.ops import functional as F
from destiny.ops.sparse import SparseRows
from tests.helpers import sparse_dataset


def dataset(device, values: bool, seed: int = 0, examples: int = 60, features: int = 500):
    rng = np.random.default_rng(seed)
    rows = [np.sort(rng.choice(features, size=rng.integers(0, 300), replace=False)) for _ in range(examples)]
    vals = [rng.uniform(0.5, 2.0, size=len(r)) for r in rows] if values else None
    return SparseRows(sparse_dataset(rows, features, vals), device)


@pytest.mark.parametrize("values", [False, True], ids=["indicator", "values"])
def test_the_kernel_equals_the_torch_gather_and_the_exact_batch(device, values):
    """Examples longer than a block (up to 299 nonzeros), empty ones, repeats; capacity with
    padding, and capacity exactly the batch's nonzeros."""
    data = dataset(device, values)
    examples = torch.tensor([5, 0, 59, 5, 17, 33, 2], device=device)
    exact = data.take(examples)
    for capacity in (exact.nnz, exact.nnz + 1, exact.nnz + 300):
        batches = []
        for force in (False, True):
            with F.kernels(force):
                batches.append(data.take(examples, capacity=capacity))
        torch_gather, kernel = batches
        for name in ("offsets", "indices", "values"):
            a, b = getattr(torch_gather, name), getattr(kernel, name)
            assert (a is None and b is None) or torch.equal(a, b), name
        assert torch.equal(torch_gather.rows(), kernel.rows())
        u = kernel.unpadded()
        assert torch.equal(u.indices, exact.indices) and torch.equal(u.offsets, exact.offsets)
        assert values == (u.values is not None) and (not values or torch.equal(u.values, exact.values))
        assert torch.equal(kernel.rows()[: exact.nnz], exact.rows())
        pad = capacity - exact.nnz
        assert torch.equal(kernel.indices[exact.nnz:].cpu(), torch.full((pad,), 500))
        assert torch.equal(kernel.rows()[exact.nnz:].cpu(), torch.full((pad,), 7))


def test_empty_examples_and_an_int32_dataset(device):
    data = SparseRows(sparse_dataset([[], [3, 1], [], []], 4), device)
    assert data.indices.dtype == torch.int32
    for force in (False, True):
        with F.kernels(force):
            b = data.take(torch.tensor([0, 2, 3], device=device), capacity=5)
            c = data.take(torch.tensor([1, 0], device=device), capacity=2)
        assert torch.equal(b.indices.cpu(), torch.full((5,), 4)) and torch.equal(b.rows().cpu(), torch.full((5,), 3))
        assert torch.equal(c.indices.cpu(), torch.tensor([3, 1])) and torch.equal(c.rows().cpu(), torch.tensor([0, 0]))
        assert b.indices.dtype == torch.int64 and b.padded


def test_capacity_planning_counts_every_batch_of_an_order():
    from types import SimpleNamespace

    from destiny.train.binding import Binding
    from destiny.train.step import round_capacity

    data = sparse_dataset([[0] * n for n in (3, 1, 4, 1, 5, 9, 2)], 10)
    layer = SimpleNamespace(name="in", dataset="d")
    net = SimpleNamespace(input_layers=lambda: [layer], output_layers=lambda: [], dtype=torch.float32,
                          units={"in": 10})
    binding = Binding(net, {"d": data}, device=torch.device("cpu"), with_targets=False)
    assert binding.max_batch_nnz(np.array([6, 5, 4, 3, 2, 1, 0]), 3) == {"in": 2 + 9 + 5}
    assert binding.max_batch_nnz(np.arange(7), 2) == {"in": 5 + 9}
    assert round_capacity(0) == 4096 and round_capacity(4096) == 4096 and round_capacity(4097) == 8192
