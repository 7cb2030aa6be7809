"""destiny.tune: the search, its result, its determinism, its budget and its errors."""

from __future__ import annotations

import io
import sys
import time

import pytest

import destiny
from destiny.errors import UsageError
from destiny.tune.space import Choice, Float, Int

from .conftest import GPU, MULTI_GPU, TINY_SPACE, TINY_START, fingerprint, split

optuna = pytest.importorskip("optuna")


def _tune(data, **kwargs):
    options = {"budget_s": 120, "device": "cpu", "n_trials": 4, "max_epochs": 6, "patience": 2, "space": TINY_SPACE,
               "start": TINY_START, "progress": False, **kwargs}
    return destiny.tune(data[0], data[1], **options)


@pytest.fixture(scope="module")
def tuned(tiny_split):
    return _tune(tiny_split)


def test_the_result(tuned, tiny_split):
    train, validation = tiny_split
    assert isinstance(tuned, destiny.Recommender) and destiny.tune.tune is not destiny.tune
    trials = tuned.trials_
    assert [t["number"] for t in trials] == [0, 1, 2, 3]
    # the first trials are each recipe's defaults, in the table's order
    assert [t["recipe"] for t in trials[:3]] == ["mult_dae", "mult_vae", "ease_network"]  # space.START's order
    assert trials[0]["params"] == {k: d.default for k, d in TINY_SPACE["mult_dae"].items()}
    complete = [t for t in trials if t["state"] == "COMPLETE"]
    best = max(complete, key=lambda t: t["value"])
    assert tuned.best_trial_ == best["number"] and tuned.best_score_ == best["value"]
    for t in trials:
        assert t["seconds"] > 0 and t["device"] == "cpu" and 1 <= t["epochs"] <= 6
        assert set(t) >= {"number", "params", "recipe", "best_epoch", "metrics", "seconds", "state"}
    assert set(best["metrics"]) >= {"ndcg@100", "precision@10"}
    assert best["metrics"]["ndcg@100"] == tuned.best_score_
    # the Recommender's own parameters are best_params_, epochs the best epoch
    params = tuned.best_params_
    assert tuned.get_params() == params and params["epochs"] == best["best_epoch"] == tuned.best_epoch_
    assert isinstance(params["config"], dict) and params["device"] == "cpu" and params["seed"] == 0
    assert len(tuned.study_.trials) == 4
    # its validation metric is the one the trial reported, and a refit repeats the network
    scores = tuned.evaluate(validation, train, k=[10, 100])
    assert scores[100]["ndcg"] == pytest.approx(tuned.best_score_, abs=1e-9)
    again = destiny.Recommender(**params).fit(train)
    assert fingerprint(again) == fingerprint(tuned)


def test_closed_form_trials_train_no_epoch_and_refit_the_same(tiny_split):
    """The table's ease_network: closed-form EASE/EDLAE (epochs 0), validated as epoch 0; its
    best_params_ (epochs 0) repeat it on the same data."""
    from destiny.tune.space import SPACE

    train, _ = tiny_split
    model = _tune(tiny_split, space={"ease_network": SPACE["ease_network"]}, start=None, n_trials=3)
    assert [t["epochs"] for t in model.trials_] == [0, 0, 0]
    assert all(t["state"] == "COMPLETE" and t["best_epoch"] == 0 and t["metrics"] for t in model.trials_)
    assert model.best_params_["epochs"] == 0 and model.best_epoch_ == 0
    assert model.trials_[0]["params"]["ease_lam"] == SPACE["ease_network"]["ease_lam"].default
    again = destiny.Recommender(**model.best_params_).fit(train)
    assert fingerprint(again) == fingerprint(model)


def test_the_table_s_start_line_searches_the_closed_form_and_starts_ease_hybrid_from_the_best(tiny_split):
    """START: closed forms at λ 300, 30, 1000, then steps around the best point so far (λ, then
    dropout, then λ at the best dropout), each resolved from the trials before it and skipped
    when already tried; then ease_hybrid at the best closed form's λ."""
    from destiny.tune.space import SPACE, START, resolve_point, start_points

    space = {k: SPACE[k] for k in ("ease_network", "ease_hybrid")}
    model = _tune(tiny_split, space=space, start=START, n_trials=14, max_epochs=2)
    n = next(i for i, t in enumerate(model.trials_) if t["recipe"] != "ease_network")
    closed = model.trials_[:n]
    assert [t["params"]["ease_lam"] for t in closed[:3]] == [300.0, 30.0, 1000.0]
    assert {t["params"]["dropout"] for t in closed} >= {0.0, 0.25, 0.5}  # EASE and EDLAE

    def best(trials):  # the best so far (ties: the later trial)
        return max(enumerate(trials), key=lambda it: (it[1]["value"], it[0]))[1]["params"]

    points = [p for p in start_points(space, list(space), START) if p["recipe"] == "ease_network"]
    i = 0
    for point in points:  # each step from the best before it, unless that point was tried
        want = resolve_point(point, space, {"ease_network": best(closed[:i])} if i else {})
        want = {k.split(".", 1)[1]: v for k, v in want.items() if k != "recipe"}
        if any(t["params"] == want for t in closed[:i]):
            continue
        assert closed[i]["params"] == pytest.approx(want)
        i += 1
    assert n == i >= 9
    assert model.trials_[n]["recipe"] == "ease_hybrid"
    assert model.trials_[n]["params"]["ease_lam"] == best(closed)["ease_lam"]


def test_the_one_standard_error_rule_prefers_a_close_closed_form(tiny_split):
    """A trained trial that leads a closed form by less than one standard error loses to it
    (the closed form rebuilt: its validation score is the trial's); a larger lead, or the rule
    off, keeps the trained one."""
    from types import SimpleNamespace

    from destiny.recommender import _as_dataset
    from destiny.tune.search import _prefer_closed_form
    from destiny.tune.space import SPACE, realize
    from destiny.tune.trial import Outcome

    train, validation = (_as_dataset(x, "x") for x in tiny_split)
    plan = realize("ease_network", {"ease_lam": 30.0, "dropout": 0.0, "epochs": 0}, train.n_examples)
    closed = {**plan.fit, "config": plan.config, "device": "cpu", "seed": 0, "progress": False, "refit": False}
    value = _tune(tiny_split, space={"ease_network": SPACE["ease_network"]}, n_trials=1,
                  start=[{"recipe": "ease_network", "ease_lam": 30.0}]).best_score_

    def run(lead: float, se: float):
        trained = Outcome(1, "mult_dae", {}, state="COMPLETE", best_epoch=7, value=value + lead, standard_error=se)
        closed_form = Outcome(0, "ease_network", {}, state="COMPLETE", best_epoch=0, value=value,
                              standard_error=se)
        return SimpleNamespace(common={"monitor": "ndcg@100", "device": "cpu"}, outcomes=[closed_form, trained],
                               best=(value + lead, 1), params={0: closed, 1: {}}, train=train, validation=validation)

    winner = object()
    near = run(0.004, 0.01)
    model = _prefer_closed_form(near, winner, 1.0)
    assert model is not winner and near.best == (value, 0) and "within 1 standard error" in near.chosen_by
    assert model.best_epoch_ == 0 and model.evaluate(tiny_split[1], tiny_split[0], k=[100])[100]["ndcg"] == \
        pytest.approx(value, abs=1e-9)
    assert _prefer_closed_form(run(0.02, 0.01), winner, 1.0) is winner
    assert _prefer_closed_form(run(0.004, 0.01), winner, None) is winner


def test_same_seed_same_result(tuned, tiny_split):
    other = _tune(tiny_split)
    assert other.best_params_ == tuned.best_params_ and fingerprint(other) == fingerprint(tuned)
    assert [(t["params"], t["value"], t["best_epoch"]) for t in other.trials_] == \
        [(t["params"], t["value"], t["best_epoch"]) for t in tuned.trials_]


def test_another_seed_samples_other_settings(tuned, tiny_split):
    other = _tune(tiny_split, seed=1, n_trials=5, start=[])
    assert [t["params"] for t in other.trials_] != [t["params"] for t in tuned.trials_]


def test_the_budget(tiny_split):
    """A budget of 3 s with trials that could train for minutes: the call returns in time,
    the last trial stopped by the budget with its best epoch so far."""
    _tune(tiny_split, n_trials=1, max_epochs=1)  # imports and first calls out of the timing
    start = time.monotonic()
    model = _tune(tiny_split, budget_s=3.0, n_trials=None, max_epochs=10_000, patience=None)
    elapsed = time.monotonic() - start
    assert elapsed < 3.0 + 1.5  # one batch or one validation past the deadline at most
    assert model.trials_[-1]["stopped"] == "budget"
    assert all(t["stopped"] in ("budget", "pruned") for t in model.trials_)
    assert model.best_epoch_ >= 1 and model.best_params_["epochs"] == model.best_epoch_


class _PruneLater(optuna.pruners.BasePruner):
    """Prunes every trial but the first at its third epoch."""

    def prune(self, study, trial) -> bool:
        return trial.number > 0 and trial.last_step is not None and trial.last_step >= 3


def test_pruned_and_failed_trials(tiny_split):
    space = {**TINY_SPACE, "sigmoid_autoencoder": {"hidden": Int(8, 16, 8), "batch_size": Choice((0,), 0)}}
    model = _tune(tiny_split, n_trials=4, space=space, max_epochs=8, patience=None, pruner=_PruneLater(),
                  start=[*TINY_START, {"recipe": "sigmoid_autoencoder"}])
    states = [(t["recipe"], t["state"], t["stopped"], t["epochs"]) for t in model.trials_]
    assert states[0] == ("mult_dae", "COMPLETE", "epochs", 8)
    assert states[1] == ("mult_vae", "PRUNED", "pruned", 3) and states[2] == ("ease_network", "PRUNED", "pruned", 3)
    assert states[3] == ("sigmoid_autoencoder", "FAIL", "error", 0) and "batch size" in model.trials_[3]["error"]
    assert model.best_trial_ == 0
    assert [t.state.name for t in model.study_.trials] == ["COMPLETE", "PRUNED", "PRUNED", "FAIL"]


def test_a_device_left_unusable_ends_the_search(tiny_split, monkeypatch):
    """A CUDA error that poisons the process (every later call fails the same way): the search
    stops at that trial, returning the best so far with a warning, or a ResourceError when
    there is none (here the device's state is simulated: the failed trial's probe says so)."""
    import destiny.tune.trial as trial_module
    from destiny.errors import ResourceError

    monkeypatch.setattr(trial_module, "device_broken", lambda device: "AcceleratorError: CUDA error: unknown error")
    space = {**TINY_SPACE, "sigmoid_autoencoder": {"hidden": Int(8, 16, 8), "batch_size": Choice((0,), 0)}}
    bad = {"recipe": "sigmoid_autoencoder"}
    with pytest.warns(UserWarning, match="stopped early: trial 1 .sigmoid_autoencoder. left cpu unusable"):
        model = _tune(tiny_split, n_trials=4, space=space, start=[TINY_START[0], bad, TINY_START[1]])
    assert [t["recipe"] for t in model.trials_] == ["mult_dae", "sigmoid_autoencoder"]
    assert model.trials_[1]["device_error"].startswith("AcceleratorError") and model.best_trial_ == 0
    with pytest.raises(ResourceError, match="fresh process"):
        _tune(tiny_split, n_trials=4, space=space, start=[bad, TINY_START[0]])


def test_the_default_pruner_is_the_median_pruner(tuned):
    assert isinstance(tuned.study_.pruner, optuna.pruners.MedianPruner)
    assert isinstance(tuned.study_.sampler, optuna.samplers.TPESampler)


def test_the_live_table(tiny_split):
    from rich.console import Console

    from destiny.tune.table import TrialTable

    stream = io.StringIO()
    with TrialTable(True, console=Console(file=stream, width=160, force_terminal=False)) as table:
        run = _tune(tiny_split, n_trials=2)
        for t in run.trials_:
            table.start(t["number"], t["recipe"], t["params"], "cpu")
            table.epoch(t["number"], 1, 0.1)
        for t in run.trials_:
            from destiny.tune.trial import Outcome

            table.finish(Outcome(**t))
    text = stream.getvalue()
    for word in ("trial", "recipe", "ndcg@100", "P@10", "best", "mult_vae", "mult_dae", "H 16", "α 3e-03", "p .5"):
        assert word in text
    assert f"{run.best_score_:.4f}" in text


@pytest.mark.parametrize("kwargs, match", [
    ({"budget_s": 0}, "budget_s must be a positive"),
    ({"budget_s": float("nan")}, "budget_s must be a positive"),
    ({"n_trials": 0}, "n_trials must be a positive"),
    ({"max_epochs": 0}, "max_epochs must be a positive"),
    ({"recipes": ["hybrid"]}, "recipe 'hybrid' is not in the search space"),
    ({"space": {"mult_dae": {"hidden": Float(1.0, 2.0, 3.0)}}}, "low ≤ default ≤ high"),
    ({"start": [{"recipe": "mult_dae", "hiden": 30}]}, "sets hiden, which the space of mult_dae does not have"),
    ({"monitor": "ndcg"}, "unknown ranking metric 'ndcg'"),
    ({"trial_budget_s": -1}, "trial_budget_s must be a positive"),
])
def test_bad_arguments(kwargs, match, tiny_split):
    with pytest.raises(UsageError, match=match):
        _tune(tiny_split, **kwargs)


def test_bad_data(tiny_split):
    train, validation = tiny_split
    with pytest.raises(UsageError, match="validation has 299 rows but train 300"):
        destiny.tune(train, validation[:299], budget_s=5)
    wider = split(users=300, items=250)[1]
    with pytest.raises(UsageError, match="250 item columns but train 200"):
        destiny.tune(train, wider, budget_s=5)
    with pytest.raises(UsageError, match="give validation="):
        destiny.tune(train, None, budget_s=5)
    with pytest.raises(UsageError, match="holds no items"):
        destiny.tune(train, validation * 0, budget_s=5)


def test_without_optuna(tiny_split, monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)
    with pytest.raises(UsageError, match=r"pip install 'destiny\[tune\]'"):
        _tune(tiny_split)


@pytest.mark.slow
def test_two_devices_run_trials_in_parallel(tiny_split):
    """Two worker processes on the CPU stand for two GPUs: every trial runs on one of them,
    the study sees them all, and the winner (trained in a worker, written, loaded back) is
    repeated by a plain fit."""
    model = _tune(tiny_split, device=["cpu", "cpu"], n_trials=4)
    assert sorted(t["number"] for t in model.trials_) == [0, 1, 2, 3]
    assert all(t["state"] in ("COMPLETE", "PRUNED") for t in model.trials_)
    assert len(model.study_.trials) == 4 and model.best_params_["device"] == "cpu"
    assert model.history_ and model.best_epoch_ == model.best_params_["epochs"]
    again = destiny.Recommender(**model.best_params_).fit(tiny_split[0])
    assert fingerprint(again) == fingerprint(model)
    assert model.evaluate(tiny_split[1], tiny_split[0], k=100)[100]["ndcg"] == pytest.approx(model.best_score_)


@pytest.mark.gpu
@GPU
def test_on_the_gpu(tiny_split):
    """On a GPU (CUDA graphs, fused kernels): the same seed gives the same search, and the
    winner's refit repeats its network."""
    first, second = _tune(tiny_split, device="cuda"), _tune(tiny_split, device="cuda")
    assert first.best_params_ == second.best_params_ and first.best_params_["device"] == "cuda"
    assert fingerprint(first) == fingerprint(second)
    again = destiny.Recommender(**first.best_params_).fit(tiny_split[0])
    assert fingerprint(again) == fingerprint(first)


@pytest.mark.multigpu
@MULTI_GPU
def test_one_trial_a_gpu(tiny_split):
    model = _tune(tiny_split, device="cuda", n_trials=6)
    assert {t["device"] for t in model.trials_} >= {"cuda:0", "cuda:1"}
    again = destiny.Recommender(**model.best_params_).fit(tiny_split[0])
    assert fingerprint(again) == fingerprint(model)
