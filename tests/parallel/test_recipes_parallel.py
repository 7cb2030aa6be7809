"""The recipe keys on N processes equal one process (torchrun --nproc-per-node 2 and 3, gloo):
Normalize and Denoising without Rescale read the whole input on every process; ZeroDiagonal
holds the diagonal of each process's block at its offset (r0 − c0: nonzero after the first
rank), so the gathered matrices keep a zero diagonal; FrequencyBias gives each process its slice
of the biases (bitwise the one-process biases). Trained weights agree within float64 rounding
(``test_model_parallel``'s docstring says why not bitwise)."""

from __future__ import annotations

import numpy as np
import pytest

from destiny.parallel import World
from tests.parallel.launch import REPO, torchrun
from tests.parallel.recipes_cases import ITEMS, run_all

WORLDS = [2, 3]


@pytest.fixture(scope="module")
def one() -> dict:
    return run_all(World.single())


@pytest.fixture(scope="module", params=WORLDS, ids=lambda n: f"{n}proc")
def many(request, tmp_path_factory) -> tuple[int, dict, str]:
    n = request.param
    workdir = tmp_path_factory.mktemp(f"recipes{n}")
    torchrun(n, str(REPO / "tests" / "parallel" / "run_recipes.py"), str(workdir))
    return n, dict(np.load(workdir / f"recipes_{n}.npz")), str(workdir)


def held(prefix: str) -> list[str]:
    return [f"{prefix}.weights.w{i}" for i in (1, 3)]  # H1 → H2 (13 × 13) and Input → Output (23 × 23)


def test_the_one_process_run_holds_its_diagonals_and_learns(one):
    for key in held("trained"):
        w = one[key]
        assert w.shape[0] == w.shape[1] and not np.diag(w).any(), key
    assert one["trained.errors"][-1] < one["trained.errors"][0]
    assert list(one["trained.diagonals"]) == [0, 0]


def test_start_is_bitwise_the_one_process_start(one, many):
    """Initial weights (slices of the one-process draw, diagonals zeroed at their offsets) and
    the frequency biases (each process's slice)."""
    _, got, _ = many
    for key in (k for k in one if k.startswith("start.") and not k.endswith("fingerprint")):
        assert np.array_equal(got[key], one[key]), key
    assert str(got["start.fingerprint"]) == str(one["start.fingerprint"])


def test_a_closed_form_start_is_bitwise_the_one_process_start(one, many):
    """Each process solves the whole matrix (the same host data, the same CPU ops) and keeps
    its block: the gathered start equals the one-process solve bit for bit."""
    _, got, _ = many
    keys = [k for k in one if k.startswith("closed_start.")]
    square = one["closed_start.weights.w2"]  # Input → Output (23 × 23)
    assert square.shape == (23, 23) and not np.diag(square).any() and np.abs(square).sum() > 0
    assert not one["closed_start.weights.w1"].any()  # H → Output starts at zero
    for key in keys:
        assert np.array_equal(got[key], one[key]), key


def test_blocks_after_the_first_hold_the_diagonal_at_an_offset(many):
    n, _, workdir = many
    offsets = [np.load(f"{workdir}/recipes_offsets_{n}_{rank}.npy") for rank in range(n)]
    assert list(offsets[0]) == [0, 0]
    assert all((o < 0).all() for o in offsets[1:])  # −c0: the block starts right of the diagonal's start


def test_training_matches_one_process_and_keeps_the_diagonals_zero(one, many):
    n, got, _ = many
    for key in held("trained"):
        assert not np.diag(got[key]).any(), (key, n)
    for key in (k for k in one if k.startswith("trained.") and not k.endswith(("fingerprint", "diagonals"))):
        if key.endswith(".errors"):
            np.testing.assert_allclose(got[key], one[key], rtol=1e-6, err_msg=key)
        else:
            np.testing.assert_allclose(got[key], one[key], rtol=1e-9, atol=1e-12, err_msg=f"{key} on {n}")
    assert ITEMS == got["trained.weights.w3"].shape[0]
