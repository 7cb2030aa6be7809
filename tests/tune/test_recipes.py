"""destiny.recipes: every recipe is valid DSSTNE JSON (with Destiny's keys) and trains."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

import destiny
from destiny import recipes
from destiny.config import Activation, ErrorFunction, config_from_json
from destiny.errors import UsageError

REPO = Path(__file__).resolve().parents[2]
SMALL = {"mult_dae": {"hidden": 12}, "mult_vae": {"hidden": 12, "latent": 6, "anneal_steps": 10},
         "ease_network": {}, "ease_hybrid": {"hidden": 12}, "hybrid": {"hidden": 12},
         "sigmoid_autoencoder": {"hidden": 12}}


@pytest.mark.parametrize("name", sorted(recipes.RECIPES))
def test_every_recipe_is_valid_json(name):
    doc = recipes.recipe(name)
    config = config_from_json(json.loads(json.dumps(doc)), source=name)  # plain JSON types only
    inputs, outputs = config.input_layers, config.output_layers
    assert [l.dataset for l in inputs] == ["input"] and [l.dataset for l in outputs] == ["output"]
    assert inputs[0].sparse and outputs[0].sparse
    assert outputs[0].weight_init.frequency_bias  # every recipe starts its output biases from item frequencies


def test_the_recipes_keys():
    vae = config_from_json(recipes.mult_vae(hidden=300, latent=100, dropout=0.4, beta=0.3, anneal_steps=1234))
    assert vae.layer("Input").normalize == "L2"
    assert (vae.denoising.p, vae.denoising.rescale) == (0.4, True)
    assert vae.layer("Latent").variational and vae.layer("Latent").n == 100
    assert (vae.kl.beta, vae.kl.anneal_steps) == (0.3, 1234)
    assert vae.error_function == ErrorFunction.MULTINOMIAL
    assert vae.layer("Output").activation == Activation.SOFTMAX
    dae = config_from_json(recipes.mult_dae(hidden=64, layers=2, weight_decay=0.01))
    assert [l.n for l in dae.layers if l.kind.json == "Hidden"] == [64, 64] and dae.weight_decay == 0.01
    ease = config_from_json(recipes.ease_network(dropout=0.25))
    out = ease.layer("Output")
    assert out.zero_diagonal and out.activation == Activation.LINEAR and ease.error_function == ErrorFunction.L2
    assert ease.denoising.p == 0.25 and out.weight_init.scale == 0.0
    hybrid = config_from_json(recipes.hybrid(hidden=32))
    assert hybrid.layer("Output").sources == ("Hidden1", "Input") and hybrid.layer("Output").zero_diagonal
    assert hybrid.layer("Output").activation == Activation.SOFTMAX and hybrid.error_function.json == "Multinomial"
    l2 = config_from_json(recipes.hybrid(hidden=32, dropout=0.25, loss="L2"))
    assert l2.layer("Output").activation == Activation.LINEAR and l2.error_function == ErrorFunction.L2
    assert l2.layer("Output").zero_diagonal and l2.denoising.p == 0.25
    with pytest.raises(UsageError, match="loss must be"):
        recipes.hybrid(loss="BCE")
    classic = config_from_json(recipes.sigmoid_autoencoder(hidden=256, denoising=0.3))
    assert classic.layer("Hidden1").activation == Activation.SIGMOID and classic.denoising.p == 0.3
    assert classic.error_function == ErrorFunction.CROSS_ENTROPY


def test_mult_vae_is_the_example_network():
    """examples/configs/mult-vae.json is mult_vae() with its comments."""
    example = json.loads((REPO / "examples/configs/mult-vae.json").read_text())
    mine = recipes.mult_vae()
    for doc in (example, mine):
        doc.pop("Comment")
    assert config_from_json(mine) == config_from_json(example)


@pytest.mark.parametrize("bad", [{"hidden": 0}, {"hidden": 2.5}, {"dropout": 1.0}, {"dropout": -0.1}])
def test_bad_arguments(bad):
    with pytest.raises(UsageError, match="recipes.mult_dae"):
        recipes.mult_dae(**bad)
    with pytest.raises(UsageError, match="unknown recipe 'vae'"):
        recipes.recipe("vae")


@pytest.mark.parametrize("name", sorted(recipes.RECIPES))
def test_every_recipe_trains_an_epoch(name, tiny_split):
    train, validation = tiny_split
    model = destiny.Recommender(recipes.recipe(name, **SMALL[name]), epochs=1, batch_size=64, optimizer="adam",
                                device="cpu", seed=3).fit(train, validation=validation)
    (epoch,) = model.history_
    assert math.isfinite(epoch["training_error"]) and epoch["training_error"] > 0
    assert 0.0 < epoch["metrics"]["ndcg@100"] <= 1.0
    net = model.network_
    items = train.shape[1]
    shapes = {(s.input_layer, s.output_layer): tuple(net.weight(s).shape) for s in net.specs}
    if name == "mult_vae":  # the variational layer's matrix holds the means and the log-variances
        assert shapes[("Encoder", "Latent")] == (12, 12)
    if name in ("ease_network", "hybrid"):  # the item-to-item matrix: square, its diagonal zero after training
        w = net.weight(next(s for s in net.specs if s.input_layer == "Input" and s.output_layer == "Output"))
        assert tuple(w.shape) == (items, items)
        assert np.count_nonzero(np.diag(w.detach().numpy())) == 0 and np.count_nonzero(w.detach().numpy()) > 0
    ids, _ = model.recommend(0, train[0], N=5)
    assert len(set(ids.tolist()) & set(train[0].indices.tolist())) == 0
