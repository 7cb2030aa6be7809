"""destiny.tune.trial: one trial is Recommender.fit with a deadline and a pruner, and its best
epoch is repeatable by a plain fit of that many epochs."""

from __future__ import annotations

import time

import pytest

import destiny
from destiny.recommender import _as_dataset
from destiny.tune.space import SPACE, realize
from destiny.tune.trial import fit_trial

from .conftest import DEVICES, fingerprint

SMALL = {"mult_vae": {"hidden": 16, "latent": 8, "anneal_epochs": 2.0},
         "mult_dae": {"hidden": 16}, "hybrid": {"hidden": 16}, "sigmoid_autoencoder": {"hidden": 16},
         "ease_network": {}, "ease_hybrid": {"hidden": 16}}


def _params(recipe: str, n_users: int, epochs: int, patience: int | None = 2, device: str = "cpu",
            **values) -> dict:
    defaults = {k: d.default for k, d in SPACE[recipe].items()}
    plan = realize(recipe, {**defaults, **SMALL[recipe], "batch_size": 64, **values}, n_users)
    return {**plan.fit, "config": plan.config, "epochs": epochs, "patience": patience, "device": device, "seed": 5,
            "progress": False, "refit": False}


def _data(split):
    train = _as_dataset(split[0], "train")
    return train, _as_dataset(split[1], "validation", width=train.n_features)


def test_a_trial_is_recommender_fit(tiny_split):
    """Without a deadline or pruning, fit_trial trains what Recommender.fit(validation=) trains."""
    train, validation = _data(tiny_split)
    params = _params("mult_dae", train.n_examples, epochs=4, patience=None)
    model, outcome = fit_trial(params, train, validation, number=0, recipe="mult_dae", values={}, time_left=1e9)
    plain = destiny.Recommender(**params).fit(tiny_split[0], validation=tiny_split[1])
    assert fingerprint(model) == fingerprint(plain) and model.best_epoch_ == plain.best_epoch_
    assert [h["metrics"] for h in model.history_] == [h["metrics"] for h in plain.history_]
    assert {h["validation_error"] for h in model.history_} == {None}  # not computed: nothing follows it
    assert outcome.state == "COMPLETE" and outcome.stopped == "epochs" and outcome.epochs == 4
    assert outcome.value == max(h["metrics"]["ndcg@100"] for h in plain.history_)
    assert outcome.metrics == plain.history_[plain.best_epoch_ - 1]["metrics"]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("recipe", sorted(SMALL))
def test_the_best_epoch_is_repeatable(recipe, device, tiny_split):
    """Recommender(epochs=best epoch).fit(train) gives the trial's network: nothing in training
    (KL annealing, schedules, noise streams, on the GPU the captured step) depends on the most
    epochs the trial could train, nor on the validations between its epochs."""
    train, validation = _data(tiny_split)
    params = _params(recipe, train.n_examples, epochs=12, patience=1, device=device, alpha=0.02)
    model, outcome = fit_trial(params, train, validation, number=0, recipe=recipe, values={}, time_left=1e9)
    assert outcome.state == "COMPLETE" and model.best_epoch_ == outcome.best_epoch
    again = destiny.Recommender(**{**params, "epochs": outcome.best_epoch}).fit(tiny_split[0])
    assert fingerprint(again) == fingerprint(model)


def test_the_deadline(tiny_split):
    train, validation = _data(tiny_split)
    params = _params("mult_dae", train.n_examples, epochs=100_000, patience=None)
    # no time at all: the run's first trial still finishes its first epoch and keeps it
    model, outcome = fit_trial(params, train, validation, number=0, recipe="mult_dae", values={}, time_left=0.0,
                               finish_first_epoch=True)
    assert (outcome.state, outcome.stopped, outcome.epochs, outcome.best_epoch) == ("COMPLETE", "budget", 1, 1)
    assert model.best_epoch_ == 1
    # a later trial with no time is dropped within its first epoch
    model, outcome = fit_trial(params, train, validation, number=1, recipe="mult_dae", values={}, time_left=0.0)
    assert model is None and (outcome.state, outcome.stopped, outcome.epochs) == ("PRUNED", "budget", 0)
    # a second of time: stopped in time, with its best epoch so far
    start = time.monotonic()
    model, outcome = fit_trial(params, train, validation, number=2, recipe="mult_dae", values={}, time_left=1.0)
    assert time.monotonic() - start < 1.5
    assert outcome.stopped == "budget" and 1 <= outcome.epochs < 100_000
    if outcome.state == "COMPLETE":
        assert model.best_epoch_ == outcome.best_epoch <= outcome.epochs


def test_pruning_stops_a_trial(tiny_split):
    train, validation = _data(tiny_split)
    params = _params("mult_dae", train.n_examples, epochs=10, patience=None)
    seen = []

    def report(epoch, value):
        seen.append((epoch, value))
        return epoch == 3

    model, outcome = fit_trial(params, train, validation, number=0, recipe="mult_dae", values={"hidden": 16},
                               time_left=1e9, report=report)
    assert model is None and [e for e, _ in seen] == [1, 2, 3]
    assert (outcome.state, outcome.stopped, outcome.epochs) == ("PRUNED", "pruned", 3)
    assert outcome.value == max(v for _, v in seen)


def test_a_failing_trial_is_a_result(tiny_split):
    train, validation = _data(tiny_split)
    params = {**_params("mult_dae", train.n_examples, epochs=3), "batch_size": 0}
    model, outcome = fit_trial(params, train, validation, number=7, recipe="mult_dae", values={}, time_left=1e9)
    assert model is None and (outcome.state, outcome.stopped) == ("FAIL", "error")
    assert "UsageError" in outcome.error and "batch size" in outcome.error
