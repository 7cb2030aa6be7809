"""Training curves in TensorBoard (destiny.train.tensorboard): `destiny train --tensorboard DIR`
and `Recommender.fit(tensorboard=DIR)` write event files holding each epoch's training and
validation loss, ranking metrics and learning rate; without the tensorboard package, an error
that names its install (exit 2 from the command line)."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from destiny.cli.main import main
from destiny.data import SparseDataset, write_netcdf
from destiny.errors import ResourceError
from tests.hardening.helpers import train_args, write_problem

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402


def scalars(directory) -> dict[str, list[tuple[int, float]]]:
    """Tag → [(step, value)] of the event files in ``directory`` (not its subdirectories)."""
    events = EventAccumulator(str(directory))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def _held_out(directory, users: int = 200, items: int = 64) -> None:
    rng = np.random.default_rng(3)
    counts = rng.integers(1, 4, users)
    indices = np.concatenate([rng.choice(items, c, replace=False) for c in counts]).astype(np.int32)
    write_netcdf(directory / "held.nc", SparseDataset("output", (items,), np.concatenate([[0], np.cumsum(counts)]),
                                                      indices))


def test_train_writes_losses_metrics_and_learning_rate(tmp_path, capsys):
    write_problem(tmp_path)
    _held_out(tmp_path)
    board = tmp_path / "runs" / "first"
    assert main(train_args(tmp_path, "net.nc", "-e", "3", "--validation", str(tmp_path / "held.nc"),
                           "--monitor", "ndcg@10", "--tensorboard", str(board))) == 0
    found = scalars(board)
    assert [step for step, _ in found["loss/training"]] == [1, 2, 3]
    assert [step for step, _ in found["loss/validation"]] == [1, 2, 3]
    assert [step for step, _ in found["metrics/ndcg@10"]] == [1, 2, 3]
    assert {"metrics/precision@10", "learning_rate", "examples_per_second"} <= set(found)
    assert found["learning_rate"][0][1] == pytest.approx(0.01)
    out = capsys.readouterr().out
    errors = [float(line.split("training error ")[1].split()[0].rstrip(",")) for line in out.splitlines()
              if line.startswith("Epoch")]
    assert [value for _, value in found["loss/training"]] == pytest.approx(errors, rel=1e-5)


def test_recommender_fit_writes_the_selection_run_and_the_refit(tmp_path):
    import scipy.sparse as sp

    from destiny import Recommender

    rng = np.random.default_rng(0)
    train = sp.random(60, 40, density=0.15, format="csr", random_state=rng, dtype=np.float32)
    held = sp.random(60, 40, density=0.05, format="csr", random_state=rng, dtype=np.float32)
    train.data[:], held.data[:] = 1, 1
    model = Recommender(epochs=3, batch_size=20, device="cpu", patience=None, refit=True)
    model.fit(train, validation=held, tensorboard=tmp_path / "tb")
    selection = scalars(tmp_path / "tb")
    assert [step for step, _ in selection["metrics/ndcg@100"]] == [1, 2, 3]
    assert [value for _, value in selection["loss/training"]] == pytest.approx(
        [e["training_error"] for e in model.history_], rel=1e-5)
    assert len(scalars(tmp_path / "tb" / "refit")["loss/training"]) == model.best_epoch_


def test_without_tensorboard_the_error_names_the_install(tmp_path, capsys, monkeypatch):
    from destiny import Recommender

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails as when not installed
    write_problem(tmp_path)
    assert main(train_args(tmp_path, "net.nc", "-e", "1", "--tensorboard", str(tmp_path / "tb"))) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install destiny[tensorboard]" in err
    assert not (tmp_path / "net.nc").exists() and not (tmp_path / "tb").exists()
    import scipy.sparse as sp

    with pytest.raises(ResourceError, match=r"pip install destiny\[tensorboard\]"):
        Recommender(epochs=1, device="cpu").fit(sp.identity(5, format="csr"), tensorboard=tmp_path / "tb")


def test_a_file_in_the_way(tmp_path, capsys):
    write_problem(tmp_path)
    (tmp_path / "tb").write_text("not a directory")
    assert main(train_args(tmp_path, "net.nc", "-e", "1", "--tensorboard", str(tmp_path / "tb"))) == 2
    assert f"--tensorboard {tmp_path / 'tb'} is a file; give a directory" in capsys.readouterr().err
