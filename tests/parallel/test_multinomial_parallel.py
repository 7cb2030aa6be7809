"""N processes (torchrun, gloo on CPU) train a SoftMax + Multinomial output split by columns, with
WeightDecay and a Cosine schedule, as one process does: the loss before training, each epoch's
error and rate, and the trained weights agree to float64 rounding (a split sums the
log-sum-exp's parts in another order: rtol 1e-9, atol 1e-12; the epochs' errors, summed from
float32 step losses, rtol 1e-6: as test_model_parallel)."""

from __future__ import annotations

import numpy as np
import pytest

from destiny.parallel import World
from tests.parallel.launch import REPO, torchrun
from tests.parallel.multinomial_case import run


@pytest.fixture(scope="module")
def one() -> dict:
    return run(World.single())


@pytest.mark.parametrize("n", [2, 3])
def test_a_split_multinomial_output_trains_as_one_process(one, n, tmp_path):
    torchrun(n, str(REPO / "tests" / "parallel" / "multinomial_case.py"), str(tmp_path))
    got = dict(np.load(tmp_path / f"multinomial_{n}.npz"))
    assert sorted(got) == sorted(one)
    np.testing.assert_allclose(got["rates"], one["rates"], rtol=0, atol=0)
    assert one["errors"][-1] < one["initial_error"]  # it learns
    np.testing.assert_allclose(got["errors"], one["errors"], rtol=1e-6)  # each step's loss is kept in float32
    for key in one:
        if key != "errors":
            np.testing.assert_allclose(got[key], one[key], rtol=1e-9, atol=1e-12, err_msg=f"{key} on {n} processes")
