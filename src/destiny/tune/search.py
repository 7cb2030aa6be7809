"""``destiny.tune``: an Optuna search over recipes and their settings on a validation split,
within a wall-clock budget. See the package docstring (``destiny/tune/__init__.py``)."""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from typing import Any, Mapping, Sequence

from destiny.errors import UsageError
from destiny.tune.space import SPACE, START, available, check_space, resolve_point, start_points, suggest
from destiny.tune.table import TrialTable
from destiny.tune.trial import Outcome, fit_trial, free_memory


def _optuna():
    try:
        import optuna
    except ImportError:
        raise UsageError("destiny.tune searches with Optuna, which is not installed: pip install "
                         "'destiny[tune]' (or pip install optuna)") from None
    return optuna


class Clock:
    """The budget: seconds left until ``budget_s`` after the start (monotonic clock)."""

    def __init__(self, budget_s: float):
        self.start = time.monotonic()
        self.end = self.start + budget_s

    def left(self) -> float:
        return self.end - time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.start


def tune(train, validation, *, budget_s: float, device: str | Sequence[str] | None = None, seed: int = 0,
         n_trials: int | None = None, recipes: Sequence[str] | None = None,
         space: Mapping[str, Mapping] | None = None, start: Sequence[Mapping[str, Any]] | None = None,
         max_epochs: int = 200, patience: int | None = 10, monitor: str = "ndcg@100",
         trial_budget_s: float | None = None, pruner: Any = True, precision: str = "fp32",
         progress: bool | None = None, prefer_closed_form: float | None = 1.0):
    """Search recipes and hyper-parameters on the validation split; returns the best trial's
    fitted ``destiny.Recommender`` (see the package docstring for the attributes it gains).

    train, validation: users × items (scipy sparse or SparseDataset); validation holds held-out
    items of the same users, one row each in the same order. budget_s: wall-clock seconds for
    the whole call. device: "cpu", "cuda", "cuda:N", "auto"/None, or a list of devices (one
    trial a device, in parallel; "cuda" with several GPUs means all of them). seed: the
    sampler's and every network's seed. n_trials: the most trials to start. recipes: the
    recipes to search (default: every recipe of ``space``, the items × items ones only where
    their matrix fits in memory). space: recipe → parameter → range (default
    ``destiny.tune.space.SPACE``). start: points tried first (default ``space.START``: each
    recipe's defaults). max_epochs, patience, monitor: each trial's epochs at most, its
    validations without improvement before stopping, and the metric maximised. trial_budget_s:
    the most seconds a trial may take (default: what is left of the budget). prefer_closed_form:
    the one-standard-error rule — the best closed form (a trial whose best epoch is 0: nothing
    chosen on validation but its parameters) is returned instead of a better trained trial when
    it scores within this many standard errors (over the validation users) of that trial; None
    or 0: the highest score wins. pruner: True
    (Optuna's MedianPruner on the monitored metric), False (none) or an Optuna pruner.
    precision: every trial's matrix precision. progress: None or True: the live table on a
    terminal, a line a trial elsewhere (a log, a notebook: ``destiny.tune.table``); False: nothing.
    """
    optuna = _optuna()
    clock = Clock(_positive(budget_s, "budget_s"))
    from destiny.recommender import _as_dataset

    if n_trials is not None and (isinstance(n_trials, bool) or int(n_trials) != n_trials or n_trials < 1):
        raise UsageError(f"n_trials must be a positive integer (or None: as many as the budget allows); got {n_trials!r}")
    if isinstance(max_epochs, bool) or int(max_epochs) != max_epochs or max_epochs < 1:
        raise UsageError(f"max_epochs must be a positive integer; got {max_epochs!r}")
    data = _as_dataset(train, "train")
    held = _held_out(validation, data)
    devices = resolve_devices(device)
    space = SPACE if space is None else space
    check_space(space)
    chosen = list(space) if recipes is None else list(recipes)
    for name in chosen:
        if name not in space:
            raise UsageError(f"recipe {name!r} is not in the search space; it has {', '.join(space)}")
    chosen, dropped = available(chosen, data.n_features, None if recipes is not None else _memory(devices[0]), space)
    if dropped:
        warnings.warn("destiny.tune leaves out " + "; ".join(dropped), stacklevel=2)
    if not chosen:
        raise UsageError("no recipe left to search: give recipes= (or a space=) with at least one")
    if trial_budget_s is not None:
        _positive(trial_budget_s, "trial_budget_s")
    from destiny.train.validation import metric_name

    metric_name(monitor)  # UsageError naming the metrics when unknown
    common = {"device": devices[0], "seed": seed, "precision": precision, "progress": False, "monitor": monitor,
              "patience": patience, "validate_every": 1, "epochs": int(max_epochs),
              "refit": False}  # the returned model is the trial's, fitted on train; best_params_ refit it
    with _quiet_optuna(optuna):
        study = _study(optuna, seed, pruner)
        points = start_points(space, chosen, START if start is None else start)
    run = Run(study, space, chosen, data, held, common, clock, n_trials, trial_budget_s,
              TrialTable(progress, monitor), points)
    with _quiet_optuna(optuna), run.table:
        if len(devices) > 1:
            from destiny.tune.parallel import run_parallel

            best = run_parallel(run, devices)
        else:
            best = run.sequential()
    if prefer_closed_form is not None and not isinstance(prefer_closed_form, bool) and prefer_closed_form < 0:
        raise UsageError(f"prefer_closed_form must be a number of standard errors ≥ 0 (or None); "
                         f"got {prefer_closed_form!r}")
    return _result(run, _prefer_closed_form(run, best, prefer_closed_form), device, devices)


class Run:
    """The state of one search: the study, the space, the data, the budget and the trials."""

    def __init__(self, study, space, recipes, train, validation, common, clock, n_trials, trial_budget_s, table,
                 start=()):
        self.study, self.space, self.recipes = study, space, recipes
        self.start = list(start)  # start points not yet enqueued (each when the trial before it has begun)
        self.train, self.validation, self.common, self.clock = train, validation, common, clock
        self.n_trials, self.trial_budget_s, self.table = n_trials, trial_budget_s, table
        self.outcomes: list[Outcome] = []
        self.started = 0
        self.best: tuple[float, int] | None = None  # (value, trial number) of the best complete trial
        self.params: dict[int, dict] = {}  # trial number → its Recommender arguments
        self.chosen_by: str | None = None  # why the returned trial won, when not by the highest score

    def can_start(self) -> bool:
        """Another trial may start: under n_trials, with budget left, and — once a trial has
        a model — enough left for the quickest first validated epoch seen so far (a trial
        that cannot reach one would be dropped at the deadline)."""
        if self.n_trials is not None and self.started >= self.n_trials:
            return False
        left = self.clock.left()
        firsts = [o.first_epoch_seconds for o in self.outcomes if o.first_epoch_seconds is not None]
        return left > 0 and (self.best is None or not firsts or left >= min(firsts))

    def time_left(self) -> float:
        left = self.clock.left()
        return left if self.trial_budget_s is None else min(left, self.trial_budget_s)

    def ask(self, device: str):
        """(Optuna trial, Plan, Recommender arguments) of the next trial, on ``device``."""
        best = {}
        if self.start:
            for o in sorted((o for o in self.outcomes if o.state == "COMPLETE"), key=lambda o: o.value):
                best[o.recipe] = o.params
        while self.start:  # the next start point not yet tried, its Best values from the trials so far
            point = resolve_point(self.start.pop(0), self.space, best)
            if all(t.params != point for t in self.study.trials):
                self.study.enqueue_trial(point)
                break
        trial = self.study.ask()
        plan = suggest(trial, self.space, self.recipes, self.train.n_examples, len(self.train.indices))
        self.started += 1
        self.table.start(trial.number, plan.recipe, plan.values, device)
        params = {**self.common, **plan.fit, "config": plan.config, "device": device}
        self.params[trial.number] = params
        return trial, plan, params

    def tell(self, trial, outcome: Outcome) -> bool:
        """Record a finished trial in the study and the table; True when it is the best so far."""
        from optuna.trial import TrialState

        if outcome.state == "COMPLETE":
            self.study.tell(trial, outcome.value)
        else:
            self.study.tell(trial, state=TrialState.PRUNED if outcome.state == "PRUNED" else TrialState.FAIL)
        self.outcomes.append(outcome)
        self.table.finish(outcome)
        better = outcome.state == "COMPLETE" and (self.best is None or outcome.value > self.best[0])
        if better:
            self.best = (outcome.value, outcome.number)
        return better

    def reporter(self, trial):
        """``report(epoch, value)`` of a trial run in this process: Optuna's report and prune."""
        def report(epoch: int, value: float) -> bool:
            self.table.epoch(trial.number, epoch, value)
            trial.report(value, epoch)
            return trial.should_prune()

        return report

    def sequential(self):
        """Trials one after another on this process's device; returns the best fitted Recommender."""
        device = self.common["device"]
        best_model = None
        while self.can_start() or (best_model is None and self.started == 0):
            trial, plan, params = self.ask(device)
            model, outcome = fit_trial(params, self.train, self.validation, number=trial.number,
                                       recipe=plan.recipe, values=plan.values, time_left=self.time_left(),
                                       report=self.reporter(trial), finish_first_epoch=best_model is None)
            if self.tell(trial, outcome):
                best_model = model
                best_model.network_.to("cpu")  # parked in host memory while other trials use the device
            del model
            if outcome.device_error:
                return self._device_failed(outcome, best_model)
            free_memory(device)
        if best_model is not None:
            best_model.network_.to(device)
        return best_model

    def _device_failed(self, outcome: Outcome, best_model):
        """End the search after a trial left the device unusable (``trial.device_broken``): the
        best model so far stays in host memory, with a warning; none so far is a ResourceError."""
        from destiny.errors import ResourceError

        why = (f"trial {outcome.number} ({outcome.recipe}) left {outcome.device} unusable ({outcome.device_error}; "
               f"the trial's error: {(outcome.error or '').splitlines()[0]}); no later trial could run in this process")
        if best_model is None:
            raise ResourceError(f"destiny.tune stopped: {why}. Run it again in a fresh process (on a GPU that no "
                                "other process fills)")
        warnings.warn(f"destiny.tune stopped early: {why}. It returns the best of the {len(self.outcomes)} trials "
                      "so far, left on the CPU (model.network_.to(device) once the device works again)", stacklevel=3)
        return best_model


def _prefer_closed_form(run: Run, model, within: float | None):
    """The one-standard-error rule (``tune``'s prefer_closed_form): the model to return. Trained
    trials pick their epoch — and the search its winner — on the same noisy validation users,
    so a small lead over a closed form is weak evidence: on ml-latest-small (610 users) the
    trained winner led closed-form EASE by .0008 on validation and trailed it by .013 on test.
    A closed form chosen here is rebuilt (epochs 0: the same network as its trial's)."""
    from destiny.train.validation import LOSS_MONITOR, metric_name
    from destiny.recommender import Recommender

    if model is None or not within or metric_name(run.common["monitor"]) == LOSS_MONITOR:
        return model
    by_number = {o.number: o for o in run.outcomes}
    best = by_number[run.best[1]]
    if best.best_epoch == 0 or best.standard_error is None or not math.isfinite(best.standard_error):
        return model
    floor = best.value - within * best.standard_error
    closed = [o for o in run.outcomes if o.state == "COMPLETE" and o.best_epoch == 0 and o.value >= floor]
    if not closed:
        return model
    chosen = max(closed, key=lambda o: (o.value, -o.number))
    params = {**run.params[chosen.number], "epochs": 0}
    device = run.common["device"]
    model = None
    free_memory(device)  # the trained winner's matrices go before the closed form's are built
    model = Recommender(**{**params, "device": device}).fit(run.train, validation=run.validation)
    run.best = (chosen.value, chosen.number)
    run.chosen_by = (f"trial {chosen.number} ({chosen.recipe}, a closed form) over trial {best.number} "
                     f"({best.recipe}): {chosen.value:.4f} is within {within:g} standard error(s) "
                     f"({best.standard_error:.4f}) of {best.value:.4f}")
    return model


def _result(run: Run, model, device, devices):
    """The best Recommender with best_params_, best_score_, trials_ and study_."""
    if model is None:
        errors = sorted({o.error for o in run.outcomes if o.error})
        why = f"; the trials failed with: {' | '.join(errors[:3])}" if errors else ""
        raise UsageError(f"destiny.tune completed no trial within its budget of {run.clock.end - run.clock.start:g} "
                         f"s ({len(run.outcomes)} started){why}; give a larger budget_s or fewer max_epochs")
    params = {**model.get_params(), **run.params[run.best[1]]}  # the trial's config dict, not a NetworkConfig
    params["epochs"] = int(model.best_epoch_)
    params["device"] = _device_param(device, devices)
    model.set_params(**params)
    model.best_params_ = params
    model.best_score_ = run.best[0]
    model.best_trial_ = run.best[1]
    model.chosen_by_ = run.chosen_by or f"the highest validation {run.common['monitor']}"
    model.trials_ = [o.as_dict() for o in sorted(run.outcomes, key=lambda o: o.number)]
    model.study_ = run.study
    return model


def _held_out(validation, data):
    from destiny.recommender import _as_dataset

    if validation is None:
        raise UsageError("destiny.tune scores every trial on held-out items: give validation= (the held-out items "
                         "of the training users, one row per user in the same order)")
    held = _as_dataset(validation, "validation")
    if held.n_features > data.n_features:
        raise UsageError(f"validation has {held.n_features:,} item columns but train {data.n_features:,}: give both "
                         "with the same item columns")
    if held.n_examples != data.n_examples:
        raise UsageError(f"validation has {held.n_examples:,} rows but train {data.n_examples:,}: give the held-out "
                         "items of the same users, one row per user in the same order (empty rows for users "
                         "without held-out items)")
    if held.nnz == 0:
        raise UsageError("validation holds no items: nothing to score the trials on")
    return held.replace(dims=(data.n_features,)) if held.n_features < data.n_features else held


def resolve_devices(device) -> list[str]:
    """The devices trials run on: one, or several for parallel trials (a list, or "cuda" with
    several GPUs)."""
    from destiny.backend import resolve_device

    if device is None or isinstance(device, str):
        name = "auto" if device is None else device
        if name == "cuda":
            import torch

            count = torch.cuda.device_count()
            if count > 1:
                return [f"cuda:{i}" for i in range(count)]
        return [str(resolve_device(name))]
    devices = [str(resolve_device(d)) for d in device]
    if not devices:
        raise UsageError("device: give at least one device")
    return devices


def _device_param(device, devices: list[str]) -> str:
    """best_params_'s device: what the caller asked for (one device), or the devices' kind."""
    if isinstance(device, str):
        return device
    if device is None:
        return "auto"
    kinds = {d.split(":")[0] for d in devices}
    return kinds.pop() if len(kinds) == 1 else devices[0]


def _memory(device: str) -> int | None:
    """Bytes a trial may use on ``device`` for an items × items matrix: 90% of the GPU's
    memory, half the host's on the CPU (None: unknown)."""
    import os

    if device.startswith("cuda"):
        import torch

        return int(0.9 * torch.cuda.get_device_properties(torch.device(device)).total_memory)
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2
    except (ValueError, OSError, AttributeError):
        return None


def _study(optuna, seed: int, pruner):
    """A maximising study with a seeded TPE sampler (multivariate, grouped: the space is
    conditional on the recipe) and the pruner asked for."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        sampler = optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True)
    if pruner is True:
        pruner = optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=10)
    elif pruner is False or pruner is None:
        pruner = optuna.pruners.NopPruner()
    return optuna.create_study(direction="maximize", sampler=sampler, pruner=pruner)


@contextlib.contextmanager
def _quiet_optuna(optuna):
    """Optuna's per-trial log lines off (the table says it) and its experimental warnings."""
    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            yield
    finally:
        optuna.logging.set_verbosity(level)


def _positive(value, what: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = math.nan
    if not math.isfinite(v) or v <= 0:
        raise UsageError(f"{what} must be a positive number of seconds; got {value!r}")
    return v
