"""The ranking validator on the kernel path (padded batches through the fused sparse kernels,
no host sync a batch): the numbers of ``ranking_metrics`` on the reference recommendations.
On CPU under ``TRITON_INTERPRET=1``, on CUDA GPUs as they are (tests/ops/conftest.py)."""

from __future__ import annotations

import pytest

from destiny.ops import functional as F
from destiny.train.validation import RankingValidator
from tests.train.test_validation import METRICS, check_equal, expected, network, split


@pytest.mark.parametrize("activation", ["Sigmoid", "Relu"])
def test_validation_on_the_kernels_equals_ranking_metrics(device, activation):
    """Also under the Trainer's deterministic mode, which on CUDA rejects ops without a
    deterministic kernel (a floating-point cumsum, for one)."""
    import torch

    from destiny.train.determinism import make_deterministic

    make_deterministic(torch.device(device))
    train, held = split(seed=7)
    net = network(activation)
    with F.kernels(True):
        net = net.to(device)
        want = expected(net, train, held, METRICS)  # recommend_batch (exact batches) on the same kernels
        v = RankingValidator({"in": train}, held, metrics=METRICS, batch_size=16, chunk_elements=16 * 12)
        got = v.validate(net)
    assert v._bound.capacity  # padded batches of one capacity
    check_equal(got, want)
