"""``destiny.tune``: search recipes and hyper-parameters on a validation split, with Optuna.

    model = destiny.tune(train, validation, budget_s=300, device="cuda", seed=0)
    model.best_params_        # Recommender's arguments: config (DSSTNE JSON), epochs, alpha, …
    model.trials_             # one dict a trial: number, recipe, params, best epoch, metrics, seconds, state
    again = destiny.Recommender(**model.best_params_).fit(train)   # the same network again

``train`` and ``validation`` are users × items (scipy sparse or SparseDataset); validation
holds held-out items of the same users. Every trial picks a recipe (``destiny.recipes``) and
its settings from the table ``destiny.tune.space.SPACE`` (Optuna's TPE sampler, seeded,
conditional on the recipe), trains a ``Recommender`` on ``train`` with early stopping on the
validation NDCG@100 (``monitor``) and keeps its best epoch. Optuna's MedianPruner stops trials
whose validation NDCG falls below the median of earlier trials at the same epoch. The first
trials are each recipe's defaults (``space.START``), so a short budget still tries the papers'
settings.

Returns the best trial's fitted ``destiny.Recommender`` (its network trained on ``train``,
restored to its best epoch), whose parameters are set to:

- ``best_params_``: keyword arguments of ``Recommender`` (``config`` a DSSTNE JSON dict,
  ``epochs`` the best epoch, …) such that ``Recommender(**best_params_).fit(train)`` trains
  the same network again (same weights on the same device: the trial's validation changes
  nothing in training, and the search space holds no schedule that depends on the run's
  length);
- ``best_score_`` (its validation metric) and ``best_trial_`` (its number); ``chosen_by_``: why
  it won (the highest score, or a closed form within ``prefer_closed_form`` standard errors of
  it: the one-standard-error rule);
- ``trials_``: one dict a trial (``destiny.tune.trial.Outcome``);
- ``study_``: the Optuna study.

Budget: no trial starts once ``budget_s`` is spent; a running trial stops at the end of an
epoch when the next one would not end in time, or within an epoch at the deadline (keeping
its best validated epoch so far), so the call returns within about one batch of the budget.
The exception: the first epoch of the first trial always runs, whatever the budget.

Determinism: the sampler and every network are seeded by ``seed``; with the same seed, data
and device and the same trials completed, the result is the same to the bit (cap the count
with ``n_trials`` and give a budget that does not run out). A wall-clock budget alone can
complete a different number of trials on a busier machine, and so find another winner.

Several devices (``device=["cuda:0", "cuda:1"]``, or "cuda" on a host with several GPUs):
one worker process a device, one trial a worker at a time (``destiny.tune.parallel``); the
study stays in this process (Optuna's ask and tell). Which trial ends first depends on timing,
so a parallel search is not repeatable; each of its trials is.

``destiny.tune`` is this package, callable: ``destiny.tune(...)`` is ``destiny.tune.tune(...)``.
Needs Optuna: ``pip install 'destiny[tune]'``.
"""

from __future__ import annotations

import sys
import types

from destiny.tune.search import tune
from destiny.tune.space import SPACE, START, Choice, Float, Int
from destiny.tune.trial import Outcome

__all__ = ["Choice", "Float", "Int", "Outcome", "SPACE", "START", "tune"]


class _CallableModule(types.ModuleType):
    """This package, callable as its ``tune`` function (``destiny.tune(...)``)."""

    def __call__(self, *args, **kwargs):
        return tune(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
