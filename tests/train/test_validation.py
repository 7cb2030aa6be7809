"""Validation-driven training: ranking metrics while training (``RankingValidator``) equal
``ranking_metrics`` of ``recommend_batch``; early stopping stops at the right epoch, restores
the best epoch's weights, and repeats bitwise; validating does not change what is trained."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from destiny.errors import DataError, UsageError
from destiny.nn.network import Network
from destiny.predict.api import recommend_batch
from destiny.predict.metrics import ranking_metrics
from destiny.train.optimizers import Hyperparameters
from destiny.train.stopping import EarlyStopping
from destiny.train.trainer import Trainer
from destiny.train.validation import RankingValidator, metric_name, parse_metric
from tests.helpers import config, sparse_dataset

USERS, ITEMS = 53, 37
METRICS = ["ndcg@5", "recall@5", "recall_min@5", "p@3", "map@5", "hit_rate@4", "ndcg@40", "recall@40"]


def split(seed: int = 0, users: int = USERS, items: int = ITEMS):
    """(input rows, held-out rows): distinct items; some users with no input, some with no held-out items."""
    rng = np.random.default_rng(seed)
    rows = [np.sort(rng.choice(items, size=rng.integers(0, 9), replace=False)) for _ in range(users)]
    held = [np.sort(rng.choice(np.setdiff1d(np.arange(items), r), size=rng.integers(0, 5), replace=False))
            for r in rows]
    return sparse_dataset(rows, items), sparse_dataset(held, items)


def network(activation: str = "Sigmoid", dtype=torch.float32, seed: int = 3, hidden: int = 9, dropout: float = 0.0):
    error = "ScaledMarginalCrossEntropy" if activation in ("Sigmoid", "SoftMax") else "L2"
    if activation == "SoftMax":
        error = "CrossEntropy"
    cfg = config([{"Name": "Input", "N": "auto", "DataSet": "in", "Sparse": True},
                  {"Name": "H", "N": hidden, "Activation": "Tanh", "pDropout": dropout},
                  {"Name": "Output", "Kind": "Output", "N": "auto", "DataSet": "out", "Sparse": True,
                   "Activation": activation}], ErrorFunction=error)
    return Network.from_config(cfg, {"in": (ITEMS,), "out": (ITEMS,)}, seed=seed, dtype=dtype)


def expected(net, train, held, names) -> dict:
    """The metrics by ``ranking_metrics`` on ``recommend_batch`` (exact top-K, seen items removed)."""
    recs = recommend_batch(net, {"in": train}, 40, method="exact")
    out = {}
    for name in names:
        kind, k = parse_metric(name)
        out[metric_name(name)] = ranking_metrics(recs.items, held.offsets, held.indices, k=k).as_dict()[kind]
    return out


def check_equal(got: dict, want: dict) -> None:
    assert list(got) == list(want)
    for name in want:  # the same ranked items; only the order of float64 additions differs
        assert got[name] == pytest.approx(want[name], rel=1e-12, abs=1e-15), name


@pytest.mark.parametrize("batch_size,chunk_elements", [(None, None), (7, 70), (16, 16 * 36)])
@pytest.mark.parametrize("activation,dtype", [("Sigmoid", torch.float32), ("SoftMax", torch.float32),
                                              ("Relu", torch.float32), ("Sigmoid", torch.float64)])
def test_metrics_equal_ranking_metrics(batch_size, chunk_elements, activation, dtype):
    train, held = split()
    net = network(activation, dtype)
    v = RankingValidator({"in": train}, held, metrics=METRICS, batch_size=batch_size, chunk_elements=chunk_elements)
    assert v.users_skipped > 0 and len(v.users) + v.users_skipped == USERS  # users without held-out items
    got = v.validate(net)
    check_equal(got, expected(net, train, held, METRICS))
    assert 0 < got["ndcg@40"] < 1


@pytest.mark.parametrize("batch_size,chunk_elements", [(None, None), (7, 70)])
def test_standard_errors_are_those_of_the_per_user_values(batch_size, chunk_elements):
    """Each metric's standard error of the mean over the scored users: per-user values from
    ``ranking_metrics`` on one user at a time, then std(ddof=1)/√n."""
    train, held = split()
    net = network()
    v = RankingValidator({"in": train}, held, metrics=METRICS, batch_size=batch_size, chunk_elements=chunk_elements)
    v.validate(net)
    recs = recommend_batch(net, {"in": train}, 40, method="exact")
    for name in METRICS:
        kind, k = parse_metric(name)
        values = []
        for u in v.users:  # user u alone: its held-out items as a one-row matrix
            lo, hi = held.offsets[u], held.offsets[u + 1]
            one = ranking_metrics(recs.items[u:u + 1], np.array([0, hi - lo]), held.indices[lo:hi], k=k)
            values.append(one.as_dict()[kind])
        want = np.std(values, ddof=1) / np.sqrt(len(values))
        assert v.standard_errors[metric_name(name)] == pytest.approx(want, rel=1e-9, abs=1e-15), name


@pytest.mark.parametrize("activation", ["Sigmoid", "Relu"])
def test_ties_are_ranked_by_the_lower_item_index(activation):
    """Weights on a coarse grid make many equal scores (ReLU's zeros too): rows where topk's
    pick among equal values is ambiguous are redone exactly, and the numbers still agree."""
    train, held = split(seed=4)
    net = network(activation)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_((p * 2).round() / 2)
    names = METRICS[:6]  # K ≤ 5 < a chunk of 10 columns: topk picks inside each chunk
    v = RankingValidator({"in": train}, held, metrics=names, batch_size=8, chunk_elements=8 * 10)
    got = v.validate(net)
    assert v.redone > 0
    check_equal(got, expected(net, train, held, names))


def test_scipy_inputs_no_seen_filter_and_users_without_held_out_items():
    import scipy.sparse as sp

    train, held = split(seed=5)
    net = network()
    m = sp.csr_matrix((np.ones(len(held.indices)), held.indices, held.offsets), shape=(USERS, ITEMS))
    v = RankingValidator(train, m, metrics=["ndcg@10"], seen=False)
    recs = recommend_batch(net, {"in": train}, 10, filter_seen=False, method="exact")
    want = ranking_metrics(recs.items, held.offsets, held.indices, k=10).ndcg
    assert v.validate(net)["ndcg@10"] == pytest.approx(want, rel=1e-12)
    empty = sparse_dataset([[] for _ in range(USERS)], ITEMS)
    assert np.isnan(RankingValidator(train, empty, metrics=["p@3"]).validate(net)["precision@3"])


def test_bad_metrics_and_data_are_clear_errors():
    assert parse_metric("NDCG@100") == ("ndcg", 100) and metric_name("p@10") == "precision@10"
    assert metric_name("loss") == "validation_error"
    for bad, match in [("ndgc@10", "unknown ranking metric"), ("ndcg", "unknown ranking metric"),
                       ("ndcg@0", "positive integer"), ("recall@-3", "positive integer"), ("p@x", "positive integer")]:
        with pytest.raises(UsageError, match=match):
            parse_metric(bad)
    train, held = split()
    with pytest.raises(UsageError, match="positive number of epochs"):
        RankingValidator(train, held, every=0)
    short = sparse_dataset([[1]] * 5, ITEMS)
    with pytest.raises(DataError, match="one held-out row per input row"):
        RankingValidator({"in": train}, short).validate(network())
    with pytest.raises(UsageError, match="patience"):
        EarlyStopping("ndcg@10", patience=-1)
    with pytest.raises(UsageError, match="does not compute"):
        Trainer(network(), validator=RankingValidator(train, held, metrics=["p@3"]), monitor="ndcg@10", progress=False)


# -- early stopping -----------------------------------------------------------------------------


class Scripted:
    """A validator whose numbers are a script (one per validation)."""

    def __init__(self, values, every: int = 1):
        self.values, self.every, self.metrics, self.seconds, self.calls = list(values), every, ["ndcg@10"], 0.0, 0

    def due(self, epoch: int) -> bool:
        return epoch % self.every == 0

    def validate(self, network, precision=None) -> dict:
        self.calls += 1
        return {"ndcg@10": self.values.pop(0)}


def state_hash(net) -> str:
    h = hashlib.sha256()
    for name, t in sorted(net.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def fit(validator, epochs: int, patience=None, restore_best=True, dropout=0.2, **kwargs):
    train, _ = split(seed=1)
    net = network(dropout=dropout)
    hashes = {}
    trainer = Trainer(net, "adam", Hyperparameters(alpha=0.01), batch_size=16, progress=False, validator=validator,
                      patience=patience, restore_best=restore_best, **kwargs)
    trainer.callbacks.append(lambda result, tr: hashes.__setitem__(result.epoch, state_hash(tr.network)))
    results = trainer.fit({"in": train, "out": train}, epochs)
    return trainer, results, hashes


def test_stops_after_patience_validations_without_improvement_and_restores_the_best():
    trainer, results, hashes = fit(Scripted([0.1, 0.3, 0.2, 0.3, 0.29, 0.5, 0.6]), epochs=7, patience=3)
    assert [r.epoch for r in results] == [1, 2, 3, 4, 5]  # 0.3 at 2, then three without a strict improvement
    assert trainer.best_epoch == 2 and trainer.stopping.should_stop and trainer.epoch == 5
    assert [r.best_epoch for r in results] == [1, 2, 2, 2, 2]
    assert [r.metrics["ndcg@10"] for r in results] == [0.1, 0.3, 0.2, 0.3, 0.29]
    assert state_hash(trainer.network) == hashes[2] != hashes[5]  # epoch 2's parameters and buffers


def test_validates_every_n_epochs_and_after_the_last_and_reaching_epochs_restores_too():
    validator = Scripted([0.5, 0.2, 0.4], every=2)
    trainer, results, hashes = fit(validator, epochs=5, patience=5)
    assert [r.metrics for r in results] == [{}, {"ndcg@10": 0.5}, {}, {"ndcg@10": 0.2}, {"ndcg@10": 0.4}]
    assert validator.calls == 3 and not trainer.stopping.should_stop and len(results) == 5
    assert trainer.best_epoch == 2 and state_hash(trainer.network) == hashes[2]
    kept, _, last = fit(Scripted([0.5, 0.2, 0.4], every=2), epochs=5, restore_best=False)
    assert kept.best_epoch == 2 and state_hash(kept.network) == last[5]


def test_monitor_the_validation_loss():
    train, held = split(seed=1)
    net = network(dropout=0.2)
    trainer = Trainer(net, "adam", Hyperparameters(alpha=0.05), batch_size=16, progress=False,
                      monitor="validation_error", patience=1)
    results = trainer.fit({"in": train, "out": train}, 30, {"in": train, "out": held})
    losses = [r.validation_error for r in results]
    assert trainer.best_epoch == 1 + int(np.argmin(losses)) and len(results) < 30
    assert losses[-1] >= min(losses)
    with pytest.raises(UsageError, match="needs validation data"):
        trainer.fit({"in": train, "out": train}, 1)


def test_validation_does_not_change_training_and_runs_repeat_bitwise():
    """A run with a real validator (nothing restored) trains the same weights as one without,
    and two early-stopped runs give the same weights and numbers, to the bit."""
    train, held = split(seed=1)
    plain, _, plain_hashes = fit(None, epochs=4)
    validator = RankingValidator({"in": train}, held, metrics=["ndcg@10", "p@5"])
    watched, results, hashes = fit(validator, epochs=4, restore_best=False)
    assert hashes == plain_hashes and all(r.metrics for r in results)
    runs = []
    for _ in range(2):
        validator = RankingValidator({"in": train}, held, metrics=["ndcg@10", "p@5"])
        trainer, results, _ = fit(validator, epochs=6, patience=1)
        runs.append((state_hash(trainer.network), [r.metrics for r in results], trainer.best_epoch,
                     [r.training_error for r in results]))
    assert runs[0] == runs[1]


def test_best_weights_are_on_the_host_when_the_device_lacks_room(monkeypatch):
    from destiny.train import stopping

    net = network()
    weights = stopping.BestWeights()
    weights.snapshot(net)
    assert weights.where == "device" and all(t.device.type == "cpu" for t in weights.tensors.values())
    before = state_hash(net)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(1.0)
    weights.restore(net)
    assert state_hash(net) == before


def test_static_shapes_give_the_same_numbers():
    """Padded input batches of one capacity (the GPU's sync-free path), here on the references."""
    train, held = split(seed=6)
    net = network()
    exact = RankingValidator({"in": train}, held, metrics=METRICS, batch_size=9, static_shapes=False)
    padded = RankingValidator({"in": train}, held, metrics=METRICS, batch_size=9, static_shapes=True)
    assert padded.validate(net) == exact.validate(net)
    assert padded._bound.capacity and exact._bound.capacity is None
