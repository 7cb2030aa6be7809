"""N processes train and predict like one (torchrun --nproc-per-node 2 and 3, gloo on CPU).

What is compared with one process (``cases.run_all`` in this process), and how closely:

- bitwise: the collectives (forward and gradient of every pair; both sides sum in rank order),
  the initial weights (every rank draws its slice of the one-process matrices), files (a
  network saved on N loads on 1 as the same arrays and fingerprint; a one-process file loaded
  on N gathers back to itself), the same run repeated (fingerprints), a run stopped, saved
  and resumed on N against the uninterrupted one on N;
- within tolerance: weights after training, activations and top-K scores. A matrix split by
  input rows sums its partial products over the ranks (p₀ + p₁) + p₂, where one process's
  GEMM or gather-sum adds the same terms in another order; floating-point addition is not
  associative, so the results differ in the last bits and those differences travel through
  the following steps. float64 runs agree to ~1e-16 absolute (asserted: rtol 1e-9, atol
  1e-12); float32 runs to a few ulp (asserted: rtol 1e-5, atol 1e-6, a hundred times what is
  seen, far below what a wrong mask, slice or gradient gives: 1e-2). The reported training
  errors: rtol 1e-6, because each step's loss is kept in float32 (as in one process) and the
  ranks' parts are summed after that rounding;
- exactly the same items in the top-K lists.
"""

from __future__ import annotations

import numpy as np
import pytest

from destiny.io.network_file import read_network
from destiny.parallel import World
from tests.parallel.cases import run_all
from tests.parallel.launch import REPO, torchrun

WORLDS = [2, 3]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("parallel")


@pytest.fixture(scope="module")
def one(workdir) -> dict:
    """One process's results (writes the one-process network file the N-process runs load)."""
    return run_all(World.single(), str(workdir))


_runs: dict = {}


@pytest.fixture(params=WORLDS, ids=lambda n: f"{n}proc", scope="module")
def many(request, one, workdir) -> tuple[int, dict]:
    n = request.param
    if n not in _runs:
        torchrun(n, str(REPO / "tests" / "parallel" / "run_cases.py"), str(workdir), str(workdir / "mixed64_1.nc"))
        _runs[n] = dict(np.load(workdir / f"results_{n}.npz"))
    return n, _runs[n]


def keys(results: dict, prefix: str) -> list[str]:
    return sorted(k for k in results if k.startswith(prefix + ".") and not k.endswith("fingerprint"))


def test_shutdown_releases_graphs_that_captured_collectives_on_every_rank(many, workdir):
    n, _ = many
    assert all((workdir / f"released_{n}_{rank}").read_text() == "released" for rank in range(n))


def test_collective_pairs_are_exact(many):
    _, got = many
    assert got["collectives.errors"].shape[1] == 10
    assert not got["collectives.errors"].any()


@pytest.mark.parametrize("prefix", ["init64", "tiedinit"])
def test_initial_weights_are_slices_of_the_one_process_weights(one, many, prefix):
    _, got = many
    for key in keys(one, prefix):
        assert np.array_equal(one[key], got[key]), key
    assert str(one[f"{prefix}.fingerprint"]) == str(got[f"{prefix}.fingerprint"])


@pytest.mark.parametrize("prefix", ["mixed64", "tied"])
def test_float64_training_matches_one_process(one, many, prefix):
    n, got = many
    for key in keys(one, prefix):
        if key.endswith(".errors"):
            np.testing.assert_allclose(got[key], one[key], rtol=1e-6, err_msg=key)
        elif not key.endswith(("top_scores", "top_items", "predict")):
            np.testing.assert_allclose(got[key], one[key], rtol=1e-9, atol=1e-12, err_msg=f"{key} on {n}")
    assert one[f"{prefix}.errors"][-1] < one[f"{prefix}.errors"][0]


def test_float32_training_is_within_tolerance(one, many):
    n, got = many
    for key in keys(one, "mixed32"):
        if key.endswith(".errors"):
            np.testing.assert_allclose(got[key], one[key], rtol=1e-6, err_msg=key)
        elif not key.endswith("run_fingerprints"):
            np.testing.assert_allclose(got[key], one[key], rtol=1e-5, atol=1e-6, err_msg=f"{key} on {n}")


def test_runs_repeat_bitwise_and_resuming_is_exact(many):
    _, got = many
    first, second = got["mixed32.run_fingerprints"]
    assert first == second == str(got["mixed32.fingerprint"])
    assert str(got["resumed32.fingerprint"]) == str(got["mixed32.fingerprint"])


@pytest.mark.parametrize("prefix", ["mixed64", "tied", "loaded"])
def test_top_k_items_are_the_same_and_scores_agree(one, many, prefix):
    n, got = many
    assert np.array_equal(got[f"{prefix}.top_items"], one[f"{prefix}.top_items"]), n
    np.testing.assert_allclose(got[f"{prefix}.top_scores"], one[f"{prefix}.top_scores"], rtol=1e-6, atol=1e-7)


def test_predicted_activations_are_whole_and_agree(one, many):
    _, got = many
    assert got["mixed64.predict"].shape == one["mixed64.predict"].shape
    np.testing.assert_allclose(got["mixed64.predict"], one["mixed64.predict"], rtol=1e-12, atol=1e-14)


def test_a_file_saved_on_n_loads_on_one(many, workdir):
    n, got = many
    nf = read_network(workdir / f"mixed64_{n}.nc")
    assert nf.info["fingerprint"] == str(got["mixed64.fingerprint"])
    for i, w in enumerate(nf.weights):
        assert np.array_equal(w.weights, got[f"mixed64.weights.w{i}"].astype(np.float32))
        assert np.array_equal(w.bias, got[f"mixed64.biases.b{i}"].astype(np.float32))


def test_a_file_saved_on_one_loads_on_n(one, many):
    _, got = many
    for key in keys(one, "loaded"):
        if not key.endswith(("top_scores", "top_items")):
            assert np.array_equal(one[key], got[key]), key
    assert str(got["loaded.fingerprint"]) == str(one["loaded.fingerprint"]) == str(one["mixed64.fingerprint"])


def test_ranking_validation_and_early_stopping_match_one_process(one, many):
    """The validator ranks each rank's items and merges the lists: the same metrics as one
    process; early stopping then takes the same decisions and restores the same epoch."""
    n, got = many
    np.testing.assert_allclose(got["mixed64.validation"], one["mixed64.validation"], rtol=1e-12, atol=1e-15)
    assert 0 < one["mixed64.validation"][0] < 1
    np.testing.assert_allclose(got["stopped.metrics"], one["stopped.metrics"], rtol=1e-9)
    assert int(got["stopped.best_epoch"]) == int(one["stopped.best_epoch"])
    for key in keys(one, "stopped"):
        if key not in ("stopped.metrics", "stopped.best_epoch"):
            np.testing.assert_allclose(got[key], one[key], rtol=1e-9, atol=1e-12, err_msg=f"{key} on {n}")
