"""destiny.tune.space: the table, its checks and how sampled values become a Recommender."""

from __future__ import annotations

import pytest

from destiny.config import config_from_json
from destiny.errors import UsageError
from destiny.tune import space
from destiny.tune.space import Choice, Float, Int


def test_the_table_is_valid_and_every_default_builds():
    space.check_space(space.SPACE)
    for recipe, params in space.SPACE.items():
        plan = space.realize(recipe, {k: d.default for k, d in params.items()}, n_users=6040)
        config_from_json(plan.config, source=recipe)
        if space.closed_form_only(params):  # the closed form alone: no learning rate, no batches
            assert plan.fit["epochs"] == 0 and "alpha" not in plan.fit
            continue
        assert plan.fit["optimizer"] == "adam" and plan.fit["alpha"] > 0 and plan.fit["batch_size"] >= 128
    recipes = [p["recipe"] for p in space.START]
    assert set(recipes) == set(space.SPACE)  # every recipe tried early
    assert len({repr(sorted(p.items())) for p in space.START}) == len(space.START)  # no point twice


def test_derived_parameters():
    plan = space.realize("ease_network", {"lam_n": 500.0, "alpha": 0.01, "batch_size": 256}, n_users=1000)
    assert plan.fit == {"optimizer": "adam", "lam": 0.5, "alpha": 0.01, "batch_size": 256}
    plan = space.realize("ease_network", {"ease_lam": 300.0, "dropout": 0.1, "epochs": 0}, n_users=1000,
                         n_interactions=50_000)
    assert plan.config["Layers"][1]["WeightInit"]["ClosedForm"] == 300.0  # raw rows: EASE's λ as it is
    assert plan.fit == {"optimizer": "adam", "epochs": 0, "lam": 0.3}
    plan = space.realize("ease_hybrid", {"ease_lam": 300.0, "hidden": 50, "alpha": 1e-4}, n_users=1000,
                         n_interactions=50_000)  # 50 items a user: the normalised rows' Gram is 50 × smaller
    assert plan.config["Layers"][2]["WeightInit"]["ClosedForm"] == pytest.approx(6.0)
    assert plan.fit["lam"] == pytest.approx(0.006)  # the same penalty in training
    plan = space.realize("mult_vae", {"hidden": 100, "latent": 20, "anneal_epochs": 2.5, "batch_size": 500},
                         n_users=1001)  # 3 updates an epoch
    assert plan.config["KL"]["AnnealSteps"] == 8 and plan.fit["batch_size"] == 500
    assert plan.config["Layers"][2]["N"] == 20 and "anneal_epochs" not in plan.fit


def test_start_points_fill_in_defaults():
    table = {"mult_dae": {"hidden": Int(10, 100, 50), "alpha": Float(1e-4, 1e-2, 1e-3, log=True)},
             "ease_network": {"lam_n": Float(1.0, 10.0, 2.0)}}
    points = space.start_points(table, ["mult_dae"], [{"recipe": "ease_network"}, {"recipe": "mult_dae", "hidden": 20},
                                                      {"recipe": "mult_dae"}])
    assert points == [{"recipe": "mult_dae", "mult_dae.hidden": 20, "mult_dae.alpha": 1e-3},
                      {"recipe": "mult_dae", "mult_dae.hidden": 50, "mult_dae.alpha": 1e-3}]


def test_best_start_values_come_from_the_best_trial_so_far():
    table = {"mult_dae": {"hidden": Int(10, 100, 50)}, "ease_network": {"ease_lam": Float(1.0, 1000.0, 300.0)}}
    [point] = space.start_points(table, ["mult_dae"], [{"recipe": "mult_dae",
                                                        "hidden": space.Best("ease_network", "ease_lam")}])
    assert space.resolve_point(point, table, {}) == {"recipe": "mult_dae", "mult_dae.hidden": 50}  # none yet: default
    best = {"ease_network": {"ease_lam": 30.0}}
    assert space.resolve_point(point, table, best)["mult_dae.hidden"] == 30  # an Int for an Int
    assert space.resolve_point(point, table, {"ease_network": {"ease_lam": 999.0}})["mult_dae.hidden"] == 100
    [half] = space.start_points(table, ["ease_network"], [{"recipe": "ease_network",
                                                           "ease_lam": space.Best("ease_network", "ease_lam", 0.5)}])
    assert space.resolve_point(half, table, best)["ease_network.ease_lam"] == 15.0  # a line search's step
    assert space.resolve_point(half, table, {"ease_network": {"ease_lam": 1.5}})["ease_network.ease_lam"] == 1.0
    with pytest.raises(UsageError, match="no parameter 'lam'"):
        space.start_points(table, ["mult_dae"], [{"recipe": "mult_dae", "hidden": space.Best("ease_network", "lam")}])


@pytest.mark.parametrize("table, match", [
    ({"vae": {}}, "recipe 'vae'"),
    ({"mult_dae": {"hidden": Int(10, 100, 500)}}, r"space\['mult_dae'\]\['hidden'\]"),
    ({"mult_dae": {"alpha": Float(0.0, 1.0, 0.5, log=True)}}, "log scale"),
    ({"mult_dae": {"batch_size": Choice((64, 128), 100)}}, "not one of"),
    ({"mult_dae": {"hidden": (10, 100)}}, "Float, Int or Choice"),
])
def test_bad_tables(table, match):
    with pytest.raises(UsageError, match=match):
        space.check_space(table)


def test_item_matrix_recipes_need_their_memory():
    kept, dropped = space.available(["mult_vae", "ease_network", "hybrid"], 10_000, memory=2**30)
    assert kept == ["mult_vae"] and len(dropped) == 2
    assert "1.1 GiB" in dropped[0] and "1.9 GiB" in dropped[1]  # 12 bytes × 10,000² (a closed form), 20 (trained)
    assert space.available(["ease_network"], 10_000, memory=None) == (["ease_network"], [])
