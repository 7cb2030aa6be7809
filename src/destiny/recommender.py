"""``destiny.Recommender``: a DSSTNE-style autoencoder recommender with the estimator contract
of scikit-learn and ``implicit``.

    model = destiny.Recommender(epochs=10).fit(user_items)          # scipy CSR, users × items
    ids, scores = model.recommend(0, user_items[0], N=10)           # one user
    ids, scores = model.recommend([0, 1, 2], user_items[[0, 1, 2]])  # a batch: equals single calls
    ids, scores = model.similar_items(42, N=10)

``__init__`` only stores its arguments; ``fit`` learns and returns self; what it learns ends in
an underscore (``network_``, ``n_items_``, ``history_``). The network is any DSSTNE JSON
description with one sparse Input and one sparse Output layer (default: the DSSTNE talk's
MovieLens network, 256 units a hidden layer); it learns to reconstruct each user's items, and
recommends the highest-scoring items the user does not have yet.

With held-out items of the same users, ``fit(train, validation=held_out)`` scores ranking
metrics every ``validate_every`` epochs (``destiny.train.validation``), stops after
``patience`` validations without improvement of ``monitor`` and keeps the best epoch's weights
(``best_epoch_``); ``epochs`` is then the most it trains.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from destiny.errors import NotFittedError, UsageError


DEFAULT_EPOCHS = 20  # without validation; with it, up to DEFAULT_MAX_EPOCHS and the best epoch is kept
DEFAULT_MAX_EPOCHS = 200
CPU_ITEM_MATRIX_BYTES = 8 << 30  # the default's items × items matrix, with Adam's state, on a CPU


def default_config(n_items: int, device: str = "auto") -> dict:
    """The network ``Recommender()`` trains when given no config: the recipe that did best
    across the real datasets of benchmarks/quality.py — ``recipes.hybrid(loss="L2", dropout=0.25)``, EASE's
    zero-diagonal item-to-item matrix plus a 600-unit tanh layer, squared error (with its
    defaults it won destiny.tune's search on Last.fm and the 1,024 ML-20M users and came within
    1.3% of the best on MovieLens-1M; benchmarks/quality.py). Its items × items matrix takes
    ``tune.space.item_matrix_bytes`` while training; when that exceeds half the GPU's memory (or
    8 GiB on a CPU) the default is Mult-DAE (``recipes.mult_dae()``), which holds no such matrix."""
    from destiny import recipes
    from destiny.backend import resolve_device, say_once
    from destiny.tune.space import item_matrix_bytes

    dev = resolve_device(device)
    if dev.type == "cuda":
        import torch

        limit = torch.cuda.get_device_properties(dev).total_memory // 2
    else:
        limit = CPU_ITEM_MATRIX_BYTES
    if item_matrix_bytes(n_items) <= limit:
        return recipes.hybrid(loss="L2", dropout=0.25)
    say_once("default-recipe-size",
             f"Recommender(): {n_items:,} items make the default hybrid's items × items matrix "
             f"{item_matrix_bytes(n_items) / 2**30:.1f} GiB while training (over {limit / 2**30:.1f} GiB on "
             f"{dev.type}); training Mult-DAE instead (pass config=destiny.recipes.hybrid(loss='L2') to insist)")
    return recipes.mult_dae()


class Recommender:
    """Autoencoder recommender.

    config: a NetworkConfig, a path to DSSTNE JSON, JSON text, or a dict (default: the recipe
    that did best across the real datasets, ``default_config``). epochs: passes over the data
    (None: 20, or with ``fit(..., validation=)`` up to 200, keeping the best epoch). batch_size,
    optimizer (any of DSSTNE's seven), alpha (learning rate), lam (L2), mu, mu1: training. device: "auto", "cpu" or "cuda". seed: weights, order
    and noise. precision: fp32, tf32 or bf16. progress: show each epoch's progress (as
    ``implicit`` does): a live bar on a terminal, a line every 10 s elsewhere (a notebook, a log;
    work shorter than that prints none); False: silent.
    With ``fit(..., validation=held_out)``: monitor, the ranking metric early stopping follows
    ("ndcg@100", "recall@20", "precision@10", …, or "validation_error" for the loss);
    patience, validations without improvement before stopping (None: train every epoch, still
    keeping the best); validate_every, epochs between validations; refit: then train again from
    the start on user_items ∪ validation for ``best_epoch_`` epochs (the same users, with their
    held-out items back: what a tuned peer's final fit does, and what scikit-learn's searches do
    by default), so that the held-out items are not lost to the model; False keeps the selection
    run's weights (to score the model on the validation items themselves).
    """

    def __init__(self, config: Any = None, *, epochs: int | None = None, batch_size: int = 512, optimizer: str = "adam",
                 alpha: float | None = 0.001, lam: float = 0.0, mu: float | None = None, mu1: float | None = None,
                 device: str = "auto", seed: int = 12134, precision: str = "fp32", progress: bool = True,
                 monitor: str = "ndcg@100", patience: int | None = 5, validate_every: int = 1, refit: bool = True):
        self.config = config
        self.epochs = epochs
        self.batch_size = batch_size
        self.optimizer = optimizer
        self.alpha = alpha
        self.lam = lam
        self.mu = mu
        self.mu1 = mu1
        self.device = device
        self.seed = seed
        self.precision = precision
        self.progress = progress
        self.monitor = monitor
        self.patience = patience
        self.validate_every = validate_every
        self.refit = refit

    # -- scikit-learn conventions ---------------------------------------------------------------

    @classmethod
    def _param_names(cls) -> list[str]:
        """The keyword arguments of ``__init__`` (scikit-learn's rule: every one is a parameter)."""
        return [name for name in inspect.signature(cls.__init__).parameters if name != "self"]

    def get_params(self, deep: bool = True) -> dict:
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params) -> "Recommender":
        for name, value in params.items():
            if name not in self.get_params():
                raise UsageError(f"Recommender has no parameter {name!r}")
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        changed = {k: v for k, v in self.get_params().items() if v != Recommender().get_params()[k]}
        return f"Recommender({', '.join(f'{k}={v!r}' for k, v in changed.items())})"

    # -- fitting --------------------------------------------------------------------------------

    def _network_config(self, n_items: int):
        from destiny.config import LayerKind, NetworkConfig, config_from_json, load_config, loads_config

        config = self.config
        if config is None:
            config = config_from_json(default_config(n_items, self.device), source="<default recipe>")
        elif isinstance(config, dict):
            config = config_from_json(config, source="<config dict>")
        elif isinstance(config, (str, os.PathLike)) and not str(config).lstrip().startswith("{"):
            config = load_config(config)
        elif isinstance(config, str):
            config = loads_config(config)
        elif not isinstance(config, NetworkConfig):
            raise UsageError(f"config must be a NetworkConfig, a JSON path, JSON text or a dict; got {type(config).__name__}")
        inputs = [l for l in config.layers if l.kind == LayerKind.INPUT]
        outputs = [l for l in config.layers if l.kind == LayerKind.OUTPUT]
        if len(inputs) != 1 or len(outputs) != 1:
            raise UsageError("a Recommender's network needs exactly one Input and one Output layer "
                             f"(this one has {len(inputs)} and {len(outputs)})")
        return config, inputs[0], outputs[0]

    def fit(self, user_items, *, validation=None, tensorboard: str | os.PathLike | None = None) -> "Recommender":
        """Learn from ``user_items`` (users × items: a scipy sparse matrix or a SparseDataset;
        nonzeros are interactions). validation: held-out items of the same users (one row per
        user of ``user_items``, in the same order): ranking metrics of recommending from
        ``user_items`` (seen items removed) are scored against them every ``validate_every``
        epochs and recorded in ``history_`` with the validation loss; training stops after
        ``patience`` validations without improvement of ``monitor`` and ends with the best
        epoch's weights (``best_epoch_``, its score ``best_score_``); with ``refit`` (the
        default) the network is then trained again on user_items ∪ validation for
        ``best_epoch_`` epochs (``history_`` keeps the selection run's validations; ``refit_``
        says it happened). tensorboard: a directory for TensorBoard event files of each epoch's
        losses, metrics and learning rate (``destiny.train.tensorboard``; the refit's in
        ``tensorboard/refit``); needs ``pip install destiny[tensorboard]``. Returns self."""
        with _board(tensorboard) as board:  # opened first: a file in the way or no tensorboard stops here
            run = self._run(user_items, validation, callbacks=[board] if board else ())
            run.trainer.fit(run.sets, run.epochs, run.check)
        stopping = run.trainer.stopping
        self.best_score_ = None if stopping is None else stopping.best
        if validation is None or not self.refit or run.trainer.best_epoch is None:
            return self._adopt(run)
        history, best = [r.as_dict() for r in run.trainer.history], run.trainer.best_epoch
        del run, stopping  # the selection run's network and optimizer state go before the final one is built
        with _board(tensorboard, "refit") as board:
            final = self._run(_union(user_items, validation), epochs=best, callbacks=[board] if board else ())
            final.trainer.fit(final.sets, final.epochs)
        self._adopt(final)
        self.history_, self.best_epoch_, self.refit_ = history, best, True
        return self

    def _run(self, user_items, validation=None, *, callbacks=(), validation_loss: bool = True,
             epochs: int | None = None) -> "_Run":
        """What ``fit`` trains: the network built for ``user_items``, its Trainer (``callbacks``
        after each epoch), the datasets and the epoch count. validation_loss=False skips the
        per-epoch validation loss (a forward pass over every user) when a ranking metric is
        monitored (``destiny.tune``'s trials)."""
        from destiny.backend import resolve_device
        from destiny.nn.footprint import check_training
        from destiny.nn.network import Network
        from destiny.train.optimizers import Hyperparameters
        from destiny.train.trainer import Trainer

        data = _as_dataset(user_items, "user_items")
        config, inp, out = self._network_config(data.n_features)
        widths = {inp.dataset: data.dims, out.dataset: data.dims}
        check_training(config, widths, optimizer=self.optimizer, batch_size=min(self.batch_size, data.n_examples),
                       device=resolve_device(self.device), source="Recommender's network")  # before allocating
        network = Network.from_config(config, widths, seed=self.seed)
        rows = data.replace(name=inp.dataset)
        sets = {inp.dataset: rows, out.dataset: data.replace(name=out.dataset)}
        check, validator = self._validation(validation, data, rows, inp, out)
        if not validation_loss:
            check = None
        trainer = Trainer(network, self.optimizer,
                          Hyperparameters(alpha=self.alpha, lam=self.lam, mu=self.mu, mu1=self.mu1),
                          batch_size=self.batch_size, seed=self.seed, device=self.device, progress=self.progress,
                          precision=self.precision, validator=validator,
                          monitor=self.monitor if validator is not None else None,
                          patience=self.patience if validator is not None else None, callbacks=list(callbacks))
        epochs = self.epochs if epochs is None else epochs
        if epochs is None:
            epochs = DEFAULT_EPOCHS if validator is None else DEFAULT_MAX_EPOCHS
        return _Run(network, trainer, sets, check, epochs, data.n_features, data.n_examples)

    def _adopt(self, run: "_Run") -> "Recommender":
        """Take a finished run's network and history as what this estimator learned."""
        self.network_ = run.network
        self.n_items_ = run.n_items
        self.n_users_ = run.n_users
        self.history_ = [r.as_dict() for r in run.trainer.history]
        self.best_epoch_ = run.trainer.best_epoch
        self.refit_ = False
        return self

    def _validation(self, validation, data, rows, inp, out):
        """(validation datasets for the loss, RankingValidator) of ``fit``'s validation=, or (None, None)."""
        if validation is None:
            return None, None
        from destiny.train.validation import DEFAULT_METRICS, LOSS_MONITOR, RankingValidator, metric_name

        held = _as_dataset(validation, "validation", width=data.n_features)
        if held.n_examples != data.n_examples:
            raise UsageError(f"validation has {held.n_examples:,} rows but user_items {data.n_examples:,}: give the "
                             "held-out items of the same users, one row per user in the same order (empty rows for "
                             "users without held-out items)")
        monitor = metric_name(self.monitor)
        metrics = list(DEFAULT_METRICS) + ([monitor] if monitor not in DEFAULT_METRICS + (LOSS_MONITOR,) else [])
        validator = RankingValidator({inp.dataset: rows}, held, metrics=metrics, every=self.validate_every)
        return {inp.dataset: rows, out.dataset: held.replace(name=out.dataset)}, validator

    def _check_fitted(self) -> None:
        if not hasattr(self, "network_"):
            raise NotFittedError("this Recommender is not fitted yet; call fit(user_items) first, or "
                                 "Recommender.load(path)")

    # -- using it -------------------------------------------------------------------------------

    def recommend(self, userid, user_items, N: int = 10, filter_already_liked_items: bool = True,
                  filter_items=None, items=None) -> tuple[np.ndarray, np.ndarray]:
        """(ids, scores) of the N best items: 1-D for one user id, 2-D (users × N) for an array
        of ids. user_items: the users' items as sparse rows (one row per id, or the whole matrix,
        from which the ids' rows are taken). filter_items: item ids never to recommend; items:
        recommend only among these. Fewer eligible items than N give −1 ids and −inf scores."""
        self._check_fitted()
        from destiny.predict.api import recommend_batch

        single = np.ndim(userid) == 0
        ids = np.atleast_1d(np.asarray(userid, dtype=np.int64))
        rows = _as_dataset(user_items, "user_items", width=self.n_items_)
        if rows.n_examples != len(ids):
            if int(ids.max(initial=0)) >= rows.n_examples:
                raise UsageError(f"user_items has {rows.n_examples} rows: give one row per user id, or the whole "
                                 f"user × item matrix (user id {int(ids.max())} is beyond it)")
            rows = rows[ids]
        allowed = None
        if items is not None or filter_items is not None:
            allowed = np.ones(self.n_items_, dtype=bool) if items is None else np.zeros(self.n_items_, dtype=bool)
            if items is not None:
                allowed[np.asarray(items, dtype=np.int64)] = True
            if filter_items is not None:
                allowed[np.asarray(filter_items, dtype=np.int64)] = False
        recs = recommend_batch(self.network_, rows, N, filter_seen=filter_already_liked_items,
                               include_only=allowed)
        out_ids, out_scores = recs.items, recs.scores
        return (out_ids[0], out_scores[0]) if single else (out_ids, out_scores)

    def similar_items(self, itemid, N: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """(ids, scores) of the N items most similar to ``itemid`` by the cosine of their output
        weight vectors (the item's own vector comes first, as in ``implicit``). 1-D for one id."""
        self._check_fitted()
        import torch

        vectors = self.item_vectors()
        single = np.ndim(itemid) == 0
        ids = np.atleast_1d(np.asarray(itemid, dtype=np.int64))
        if ids.min(initial=0) < 0 or ids.max(initial=0) >= self.n_items_:
            raise UsageError(f"item ids must lie in [0, {self.n_items_}); got {ids.min()}..{ids.max()}")
        unit = torch.nn.functional.normalize(torch.as_tensor(vectors), dim=1)
        scores = unit[torch.as_tensor(ids)] @ unit.t()
        top = torch.topk(scores, min(N, self.n_items_), dim=1)
        out = top.indices.numpy(), top.values.numpy()
        return (out[0][0], out[1][0]) if single else out

    def item_vectors(self) -> np.ndarray:
        """(items, hidden) item embeddings: the output layer's incoming weights, one row an item."""
        self._check_fitted()
        net = self.network_
        layer = net.output_layers()[0]
        spec = net._spec_of[(layer.sources[0], layer.name)]
        return net.weight(spec).detach().float().cpu().numpy().T.copy()

    def evaluate(self, held_out, user_items, k: int | list[int] = 10) -> dict:
        """Ranking metrics (P@K, Recall@K, NDCG@K, MAP@K, HitRate@K, coverage) of recommending
        from ``user_items`` (seen items filtered) against ``held_out`` items of the same users."""
        self._check_fitted()
        from destiny.predict.metrics import ranking_metrics

        ks = [k] if np.ndim(k) == 0 else list(k)
        train = _as_dataset(user_items, "user_items", width=self.n_items_)
        test = _as_dataset(held_out, "held_out", width=self.n_items_)
        ids, _ = self.recommend(np.arange(train.n_examples), train, N=max(ks))
        return {kk: ranking_metrics(ids, test.offsets, test.indices, k=kk, n_items=self.n_items_).as_dict()
                for kk in ks}

    # -- files ----------------------------------------------------------------------------------

    def save(self, path: str | os.PathLike) -> str:
        """Write the network (DSSTNE's layout, readable by `destiny predict`) with the estimator's
        parameters; returns the fingerprint."""
        self._check_fitted()
        from destiny.train.checkpoint import save_network

        params = {k: v for k, v in self.get_params().items() if k != "config"}
        info = {"recommender": json.dumps(params), "n_users": self.n_users_}
        if getattr(self, "best_epoch_", None) is not None:
            info["best_epoch"] = self.best_epoch_
        return save_network(self.network_, path, info)

    @classmethod
    def load(cls, path: str | os.PathLike, device: str = "cpu") -> "Recommender":
        from destiny.io.network_file import read_network
        from destiny.train.checkpoint import network_from_file

        nf = read_network(path)
        params = json.loads(str(nf.info.get("recommender", "{}")))
        model = cls(config=nf.config, **params)
        model.network_ = network_from_file(nf, source=os.fspath(path)).to(device)
        model.n_items_ = model.network_.units[model.network_.output_layers()[0].name]
        model.n_users_ = int(nf.info.get("n_users", 0))
        model.history_ = []
        model.best_epoch_ = int(nf.info["best_epoch"]) if "best_epoch" in nf.info else None
        return model


def _board(directory, run: str = ""):
    """The TensorBoardLogger of ``fit(tensorboard=directory)`` (a run in a subdirectory), or a
    context giving None."""
    if directory is None:
        return contextlib.nullcontext()
    from destiny.train.tensorboard import TensorBoardLogger, check_log_dir

    check_log_dir(directory, "tensorboard=")
    return TensorBoardLogger(os.path.join(directory, run) if run else directory, what="tensorboard=")


@dataclass
class _Run:
    """One fit in the making (``Recommender._run``)."""

    network: Any
    trainer: Any
    sets: dict
    check: dict | None
    epochs: int
    n_items: int
    n_users: int


def _union(user_items, validation):
    """user_items ∪ validation (the same users, one row each): every interaction of either, the
    larger value where both hold one."""
    from destiny.data.interop import from_scipy, to_scipy

    rows = _as_dataset(user_items, "user_items")
    held = _as_dataset(validation, "validation", width=rows.n_features)
    return from_scipy(to_scipy(rows).maximum(to_scipy(held)).tocsr(), name="user_items")


def _as_dataset(x, what: str, width: int | None = None):
    """A SparseDataset from a scipy matrix or a SparseDataset (widened to ``width``)."""
    from destiny.data import SparseDataset
    from destiny.data.interop import from_scipy

    if type(x).__module__.startswith("scipy.sparse"):
        x = from_scipy(x.tocsr(), name=what)
    if not isinstance(x, SparseDataset):
        raise UsageError(f"{what} must be a scipy sparse matrix (users × items) or a SparseDataset; "
                         f"got {type(x).__name__}")
    if width is not None:
        if x.n_features > width:
            raise UsageError(f"{what} has {x.n_features:,} item columns but the model knows {width:,} items")
        if x.n_features < width:
            x = x.replace(dims=(width,))
    return x
