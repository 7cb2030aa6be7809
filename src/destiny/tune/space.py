"""The search space of ``destiny.tune``: one table of recipes and their ranges.

``SPACE`` maps a recipe (``destiny.recipes``) to its parameters, each a range (``Float``,
``Int``) or a set of values (``Choice``) with the value its first trial uses (``default``).
A trial first picks a recipe, then samples that recipe's parameters only (a conditional,
define-by-run space; Optuna names them ``recipe.param`` so that recipes never share a
distribution). Change a range here, or pass ``space=`` to ``destiny.tune``.

What a parameter name sets:

- ``alpha``, ``batch_size``, ``lam``, ``optimizer``: ``destiny.Recommender``'s arguments;
- ``lam_n``: the L2 ``lam`` in EASE's units, λ' = n_users · lam (so one range fits every data
  set: ``lam = lam_n / n_users``);
- ``ease_lam``: EASE's λ' of a closed-form start (``WeightInit.ClosedForm``), in the units of the
  raw 0/1 data, so that one range fits every recipe: a recipe that reads L2-normalised rows
  (``ease_hybrid``) gets ``closed_form`` = ease_lam × n_users / n_interactions (the ratio of the
  two Gram matrices' traces), ``ease_network`` gets it as it is; without ``lam_n`` the L2 ``lam``
  of training is then closed_form / n_users, the same penalty, so that training starts at the
  minimum of its own objective's item-to-item part;
- ``epochs``: the Recommender's ``epochs`` (``ease_network``'s single choice 0: the closed form,
  no gradient steps);
- ``anneal_epochs``: the KL annealing of ``mult_vae`` in epochs (``anneal_steps`` = anneal_epochs
  × the updates an epoch, ⌈n_users / batch_size⌉);
- anything else: a keyword argument of the recipe's builder (``hidden``, ``dropout``, ``beta``, …).

``START`` lists the points tried first, in order (``study.enqueue_trial``): each recipe's
defaults, best first. Measured winners go there (or into the defaults) as they come in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from destiny.errors import UsageError


@dataclass(frozen=True)
class Float:
    """A float in [low, high] (log: sampled on a log scale)."""

    low: float
    high: float
    default: float
    log: bool = False

    def suggest(self, trial, name: str) -> float:
        return trial.suggest_float(name, self.low, self.high, log=self.log)


@dataclass(frozen=True)
class Int:
    """An integer in [low, high] (log: sampled on a log scale)."""

    low: int
    high: int
    default: int
    log: bool = False

    def suggest(self, trial, name: str) -> int:
        return trial.suggest_int(name, self.low, self.high, log=self.log)


@dataclass(frozen=True)
class Choice:
    """One of ``options``."""

    options: tuple
    default: Any

    def suggest(self, trial, name: str):
        return trial.suggest_categorical(name, list(self.options))


Dist = Float | Int | Choice


@dataclass(frozen=True)
class Best:
    """A START value decided when its trial starts: parameter ``param`` of the best complete
    trial of ``recipe`` so far (the parameter's own default while there is none), times
    ``scale``, clipped to the range of the parameter it fills. ``Best(r, p, 2.0)`` and
    ``Best(r, p, 0.5)`` bracket the best value so far: a line search by start points."""

    recipe: str
    param: str
    scale: float = 1.0

ALPHA = Float(1e-4, 1e-2, 1e-3, log=True)
BATCH = Choice((128, 256, 512, 1024), 512)

# recipe → parameter → range. The defaults are the papers' settings (Liang et al. 2018 for
# Mult-DAE/VAE, Steck 2019 for EASE) and issue 18's plain-PyTorch autoencoder.
SPACE: dict[str, dict[str, Dist]] = {
    "mult_vae": {
        "hidden": Int(200, 1000, 600, log=True),
        "latent": Int(50, 400, 200, log=True),
        "dropout": Float(0.2, 0.8, 0.5),
        "beta": Float(0.05, 1.0, 0.2, log=True),
        "anneal_epochs": Float(5.0, 200.0, 40.0, log=True),
        "alpha": ALPHA,
        "batch_size": BATCH,
    },
    "mult_dae": {
        "hidden": Int(200, 1000, 600, log=True),
        "dropout": Float(0.2, 0.8, 0.5),
        "lam": Float(1e-6, 1e-1, 1e-2, log=True),
        "alpha": ALPHA,
        "batch_size": BATCH,
    },
    "sigmoid_autoencoder": {
        "hidden": Int(128, 1024, 512, log=True),
        "denoising": Float(0.0, 0.5, 0.2),
        "alpha": ALPHA,
        "batch_size": BATCH,
    },
    "ease_network": {  # closed-form EASE (EDLAE with dropout): seconds a trial
        "ease_lam": Float(1.0, 10_000.0, 300.0, log=True),
        "dropout": Float(0.0, 0.6, 0.0),
        "epochs": Choice((0,), 0),
    },
    "ease_hybrid": {  # the closed form of the normalised input, then a tanh correction trained from it
        "ease_lam": Float(1.0, 10_000.0, 300.0, log=True),
        "hidden": Int(200, 1000, 600, log=True),
        "dropout": Float(0.0, 0.6, 0.25),
        "alpha": Float(1e-5, 3e-3, 1e-4, log=True),
        "batch_size": BATCH,
    },
    "hybrid": {
        "loss": Choice(("Multinomial", "L2"), "Multinomial"),
        "hidden": Int(200, 1000, 600, log=True),
        "dropout": Float(0.1, 0.8, 0.5),
        "lam_n": Float(1e-2, 1e3, 1.0, log=True),
        "alpha": ALPHA,
        "batch_size": BATCH,
    },
}

# Closed-form EASE first: seconds a trial, and a floor the median pruner holds later trials to.
# Measured on validation splits (one H100, 2026-12-07; NDCG@100 of tuned closed-form EASE in
# brackets): the L2 hybrid at dropout 0.25 won MovieLens-1M (.305 [.302]), the multinomial
# hybrid Last.fm (.262 [.243]) and tied CiteULike (.225 [.225]); Mult-DAE came next on each.
START: list[dict[str, Any]] = [
    {"recipe": "ease_network"},  # λ 300, then a decade either side: EASE's best λ
    {"recipe": "ease_network", "ease_lam": 30.0},  # measured 20 (CiteULike) to 780 (MovieLens-1M)
    {"recipe": "ease_network", "ease_lam": 1000.0},
    # then a line search around the best λ so far, to within a factor 1.4 (closed forms are cheap, and
    # EASE's validation score moves by .001 between λ 275 and 300 on ml-latest-small):
    {"recipe": "ease_network", "ease_lam": Best("ease_network", "ease_lam", 0.5)},
    {"recipe": "ease_network", "ease_lam": Best("ease_network", "ease_lam", 2.0)},
    {"recipe": "ease_network", "ease_lam": Best("ease_network", "ease_lam", 0.7)},
    {"recipe": "ease_network", "ease_lam": Best("ease_network", "ease_lam", 1.4)},
    # EDLAE: dropout's own penalty (p/(1−p)·diag XᵀX) lets λ fall; then λ again at the best dropout.
    # Measured (CPU, test NDCG@100 refit): ml-latest-small EASE λ 275 .4059, λ 150 p .25 .4075;
    # MovieLens-1M EASE λ 780 .4725, λ 600 p .5 .4742
    {"recipe": "ease_network", "ease_lam": Best("ease_network", "ease_lam", 0.6), "dropout": 0.25},
    {"recipe": "ease_network", "ease_lam": Best("ease_network", "ease_lam", 1.0), "dropout": 0.5},
    {"recipe": "ease_network", "ease_lam": Best("ease_network", "ease_lam", 0.7),
     "dropout": Best("ease_network", "dropout")},
    {"recipe": "ease_network", "ease_lam": Best("ease_network", "ease_lam", 1.4),
     "dropout": Best("ease_network", "dropout")},
    {"recipe": "ease_hybrid", "ease_lam": Best("ease_network", "ease_lam")},
    {"recipe": "hybrid", "loss": "L2", "dropout": 0.25},
    {"recipe": "hybrid"},
    {"recipe": "mult_dae"},
    {"recipe": "mult_vae"},
    {"recipe": "sigmoid_autoencoder"},
]
"""Points tried first: a recipe and any of its parameters (the rest at their defaults)."""

FIT_KEYS = ("alpha", "batch_size", "epochs", "lam", "optimizer")  # Recommender's arguments
FIXED = {"optimizer": "adam"}  # every trial's Recommender arguments that are not searched
ITEM_MATRIX = ("ease_network", "ease_hybrid", "hybrid")  # recipes holding an items × items matrix
NORMALIZED = ("ease_hybrid",)  # recipes whose closed form reads L2-normalised rows (ease_lam's rule)


@dataclass(frozen=True)
class Plan:
    """One trial's choices: the recipe, the sampled values (by the table's names), the network
    (DSSTNE JSON dict) and the other ``Recommender`` arguments."""

    recipe: str
    values: dict
    config: dict
    fit: dict


def check_space(space: Mapping[str, Mapping[str, Dist]]) -> None:
    """UsageError for an unknown recipe, a default outside its range or an empty range."""
    from destiny.recipes import RECIPES

    for recipe, params in space.items():
        if recipe not in RECIPES:
            raise UsageError(f"the search space names recipe {recipe!r}; the recipes are {', '.join(RECIPES)}")
        for name, dist in params.items():
            where = f"space[{recipe!r}][{name!r}]"
            if isinstance(dist, Choice):
                if dist.default not in dist.options:
                    raise UsageError(f"{where}: the default {dist.default!r} is not one of {dist.options}")
            elif not isinstance(dist, (Float, Int)):
                raise UsageError(f"{where} must be a Float, Int or Choice of destiny.tune.space; got {dist!r}")
            elif not dist.low <= dist.default <= dist.high or (dist.log and dist.low <= 0):
                raise UsageError(f"{where}: need low ≤ default ≤ high (and low > 0 on a log scale); got {dist}")


def suggest(trial, space: Mapping[str, Mapping[str, Dist]], recipes: Sequence[str], n_users: int,
            n_interactions: int | None = None) -> Plan:
    """The Plan of an Optuna trial: a recipe among ``recipes``, then its parameters."""
    recipe = trial.suggest_categorical("recipe", list(recipes))
    values = {name: dist.suggest(trial, f"{recipe}.{name}") for name, dist in space[recipe].items()}
    return realize(recipe, values, n_users, n_interactions)


def realize(recipe: str, values: Mapping[str, Any], n_users: int, n_interactions: int | None = None) -> Plan:
    """The network and Recommender arguments of a recipe's values (the module docstring's rules;
    n_interactions: the training data's nonzeros, for ``ease_lam`` on normalised rows)."""
    from destiny.recipes import recipe as build

    fit, kwargs = dict(FIXED), {}
    for name, value in values.items():
        if name in FIT_KEYS:
            fit[name] = value
        elif name == "lam_n":
            fit["lam"] = float(value) / max(n_users, 1)
        elif name == "ease_lam":
            ratio = max(n_users, 1) / max(n_interactions or n_users, 1) if recipe in NORMALIZED else 1.0
            kwargs["closed_form"] = float(value) * ratio
        elif name != "anneal_epochs":
            kwargs[name] = value
    if "closed_form" in kwargs and "lam" not in fit:
        fit["lam"] = kwargs["closed_form"] / max(n_users, 1)
    if "anneal_epochs" in values:
        per_epoch = math.ceil(n_users / int(fit.get("batch_size", 256)))
        kwargs["anneal_steps"] = max(1, round(float(values["anneal_epochs"]) * per_epoch))
    return Plan(recipe, dict(values), build(recipe, **kwargs), fit)


def start_points(space: Mapping[str, Mapping[str, Dist]], recipes: Sequence[str],
                 start: Sequence[Mapping[str, Any]] = START) -> list[dict[str, Any]]:
    """Optuna parameter dicts (``recipe.param`` names) of the START points among ``recipes``:
    each point's values over its recipe's defaults."""
    points = []
    for point in start:
        recipe = point["recipe"]
        if recipe not in recipes:
            continue
        values = {name: dist.default for name, dist in space[recipe].items()}
        unknown = sorted(set(point) - set(values) - {"recipe"})
        if unknown:
            raise UsageError(f"start point {dict(point)} sets {', '.join(unknown)}, which the space of {recipe} does "
                             f"not have (it has {', '.join(values)})")
        for name, value in point.items():
            if isinstance(value, Best) and (value.recipe not in space or value.param not in space[value.recipe]):
                raise UsageError(f"start point {dict(point)}: {name} takes {value}, but the space has no parameter "
                                 f"{value.param!r} of recipe {value.recipe!r}")
        values.update({k: v for k, v in point.items() if k != "recipe"})
        points.append({"recipe": recipe, **{f"{recipe}.{k}": v for k, v in values.items()}})
    return points


def resolve_point(point: Mapping[str, Any], space: Mapping[str, Mapping[str, Dist]],
                  best_params: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """A start point (``start_points``) with its ``Best`` values filled in from ``best_params``
    (recipe → the values of its best complete trial so far)."""
    out = {}
    for key, value in point.items():
        if isinstance(value, Best):
            recipe, name = key.split(".", 1)
            dist = space[recipe][name]
            found = best_params.get(value.recipe, {}).get(value.param)
            scale = value.scale
            value = dist.default if found is None else found
            if isinstance(dist, (Float, Int)):
                value = type(dist.default)(min(max(value * scale, dist.low), dist.high))
        out[key] = value
    return out


def item_matrix_bytes(n_items: int, trains: bool = True) -> int:
    """Memory an items × items matrix takes while training with Adam: weights, gradient, two
    moments and the best epoch's copy (5 × 4 bytes an entry); without training (a closed
    form), the weights and the solve's two float32 matrices (3 × 4 bytes)."""
    return (20 if trains else 12) * n_items * n_items


def closed_form_only(params: Mapping[str, Dist]) -> bool:
    """Whether a recipe's space trains no epoch (``epochs`` fixed at 0: a closed form)."""
    epochs = params.get("epochs")
    return isinstance(epochs, Choice) and tuple(epochs.options) == (0,)


def available(recipes: Sequence[str], n_items: int, memory: int | None,
              space: Mapping[str, Mapping[str, Dist]] | None = None) -> tuple[list[str], list[str]]:
    """(recipes that fit, reasons for those left out): the items × items recipes need
    ``item_matrix_bytes`` within ``memory`` (None: no limit)."""
    space = SPACE if space is None else space
    kept, dropped = [], []
    for recipe in recipes:
        need = item_matrix_bytes(n_items, not closed_form_only(space.get(recipe, {})))
        if recipe in ITEM_MATRIX and memory is not None and need > memory:
            dropped.append(f"{recipe} (its {n_items:,} × {n_items:,} matrix needs about {need / 2**30:.1f} GiB "
                           f"to train, more than the {memory / 2**30:.1f} GiB available)")
        else:
            kept.append(recipe)
    return kept, dropped


def describe(values: Mapping[str, Any]) -> str:
    """A short text of a trial's values: "hidden 600, dropout 0.5, alpha 0.001"."""
    def fmt(v):
        return f"{v:.3g}" if isinstance(v, float) else str(v)

    return ", ".join(f"{k} {fmt(v)}" for k, v in values.items())
