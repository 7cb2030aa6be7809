"""The quality benchmark's peers (issue 18): EASE, iALS, BPR and most-popular, each tuned on the
validation split the same way Destiny is, then refit on train ∪ validation and scored once.

    result = tune_and_test(PEERS["ease"], split, device="cuda", trials=20, budget_s=300, seed=0)
    result.test["NDCG@100"], result.params, result.tune_s, result.fit_s

Tuning: Optuna's TPESampler(seed) maximises validation NDCG@100 (``quality_score.score``: train's
items removed, ties to the lower id) over ``trials`` trials or ``budget_s`` seconds, whichever
ends first; the first trial is each method's usual setting (``Peer.default``). Iterative
methods (iALS, BPR) are scored on validation every ``every`` iterations inside one fit and stop
after ``patience`` checks without a gain; a trial's value is its best check, and that check's
iteration count is the ``iterations`` of the final fit. A fixed trial count repeats exactly (a
seconds budget may cut it at a different trial on a different machine: the JSON records how
many ran).

Threads: BLAS is held to 1 thread around implicit's fits (threadpoolctl; its ALS solves users
independently in ``threads`` threads, which does not change the result); BPR runs on one thread
unless told otherwise (``BPR(threads=n)``: its several-thread SGD is Hogwild, so the order of
updates, hence the model, would change from run to run). The GPU versions of implicit are used only where ``implicit.gpu.HAS_CUDA``.

EASE (Steck 2019): B = I − P·diagMat(1/diag P), P = (XᵀX + λI)⁻¹ (``torch.linalg.inv_ex``: LU;
``cholesky_inverse`` measured 10× slower on a CPU), scores X·B. Only the items that occur in X take part: an item without training data has a zero
row and column in XᵀX, so its rows and columns of B are zero anyway. Memory: 4 n² numbers
while tuning (XᵀX kept, XᵀX + λI, its LU, the inverse), in float64 where that fits the device and
float32 otherwise; skipped with a message where even float32 does not fit.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
import torch

from quality_score import ScoreFn, dense_rows, popularity_scores, score


class Skip(Exception):
    """This method cannot run here (memory, a missing library); the message says why."""


class _Stop(Exception):
    """Raised from a fit callback to end the fit (patience or deadline)."""


def free_bytes(device) -> int:
    """Memory free for new tensors on ``device``: the GPU's free memory, or MemAvailable."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 1 << 40  # unknown: assume it fits


@dataclass
class PeerResult:
    method: str
    params: dict
    validation: float  # the best trial's validation NDCG@100
    test: dict
    tune_s: float
    fit_s: float
    trials: list = field(default_factory=list)


# -- the methods --------------------------------------------------------------------------------

class Peer:
    name = ""
    default: dict = {}  # the first trial: the method's usual setting

    def check(self, split, device) -> None:
        """Raise Skip if the method cannot run on this dataset and device."""

    def suggest(self, trial) -> dict:
        return {}

    def validate(self, train, validation, params, *, device, seed, threads, deadline) -> tuple[float, dict]:
        """(validation NDCG@100, learned extras such as the best iteration count)."""
        return score(self.fit(train, params, device=device, seed=seed, threads=threads), train, validation,
                     device=device)["NDCG@100"], {}

    def fit(self, train, params, *, device, seed, threads) -> ScoreFn:
        raise NotImplementedError


class Popular(Peer):
    name = "pop"

    def fit(self, train, params, *, device, seed, threads) -> ScoreFn:
        return popularity_scores(train, device)


class EASE(Peer):
    name = "ease"
    default = {"lam": 500.0}

    def __init__(self, dtype: str = "auto"):
        self.dtype = dtype  # "auto", "float32" or "float64"
        self._gram = None  # (key of X, items, G on the device): reused across λ while tuning

    def _dtype(self, n: int, device) -> torch.dtype:
        """float64 where 4 n² of them fit in 90% of free memory, else float32; Skip if neither."""
        free = 0.9 * free_bytes(device)
        if self.dtype != "auto":
            choice = getattr(torch, self.dtype)
        else:
            choice = torch.float64 if 4 * n * n * 8 <= free else torch.float32
        need = 4 * n * n * (8 if choice == torch.float64 else 4)
        if need > free:
            raise Skip(f"EASE over {n:,} items needs about {need / 2**30:.1f} GiB in {str(choice)[6:]} "
                       f"(4 × items²), more than the {free / 2**30:.1f} GiB free on {device}")
        return choice

    def check(self, split, device) -> None:
        self._dtype(int((np.diff(split.full.tocsc().indptr) > 0).sum()), device)

    def suggest(self, trial) -> dict:
        return {"lam": trial.suggest_float("lam", 1.0, 3e4, log=True)}

    def _gram_of(self, train: sp.csr_matrix, device):
        key = (id(train), train.nnz, train.shape)
        if self._gram is None or self._gram[0] != key:
            self._gram = None
            active = np.flatnonzero(np.diff(train.tocsc().indptr) > 0)  # items with training data
            dtype = self._dtype(len(active), device)
            x = train[:, active]
            g = (x.T @ x).tocoo()  # sparse XᵀX, then scattered into a dense (n, n) on the device
            dense = torch.zeros(len(active), len(active), dtype=dtype, device=device)
            dense[torch.as_tensor(g.row, device=device).long(), torch.as_tensor(g.col, device=device).long()] = \
                torch.as_tensor(g.data, dtype=dtype, device=device)
            self._gram = (key, active, dense)
        return self._gram[1], self._gram[2]

    def fit(self, train, params, *, device, seed, threads) -> ScoreFn:
        active, gram = self._gram_of(train, device)
        a = gram.clone()
        a.diagonal().add_(float(params["lam"]))
        p, info = torch.linalg.inv_ex(a)  # (n, n) P = (XᵀX + λI)⁻¹ by LU: O(n³); 2-3 n² more numbers at its peak
        del a
        if int(info):  # host sync
            raise Skip(f"EASE: XᵀX + λI is singular in {p.dtype} (λ = {params['lam']:.3g})")
        b = p.div_(-p.diagonal().clone())  # column j divided by −P_jj
        b.diagonal().zero_()  # B = I − P·diagMat(1/diag P): its diagonal is 0
        x_active = train[:, active].tocsr()
        n_items = train.shape[1]
        whole = len(active) == n_items
        index = torch.as_tensor(active, device=device)

        def scores(users: np.ndarray) -> torch.Tensor:
            s = dense_rows(x_active, users, device, b.dtype) @ b  # (users, active items)
            if whole:
                return s
            out = torch.zeros(len(users), n_items, dtype=s.dtype, device=device)
            out[:, index] = s
            return out

        return scores

    def release(self) -> None:
        self._gram = None


class _Factorization(Peer):
    """iALS and BPR through ``implicit``: shared fitting with validation checks."""

    every = 1
    patience = 3
    max_iterations = 30

    def _model(self, params, seed, threads, iterations):
        raise NotImplementedError

    def _threads(self, threads):
        return threads

    def _factors(self, model):
        u, v = model.user_factors, model.item_factors
        if hasattr(u, "to_numpy"):  # implicit.gpu.Matrix
            u, v = u.to_numpy(), v.to_numpy()
        return np.asarray(u), np.asarray(v)

    def _score_fn(self, model, device) -> ScoreFn:
        u, v = (torch.as_tensor(f, dtype=torch.float32, device=device) for f in self._factors(model))
        return lambda users: u[torch.as_tensor(users, device=device)] @ v.T  # (b, factors) @ (factors, items)

    def _new(self, params, seed, threads, iterations):
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=1, user_api="blas"):  # implicit warns at construction otherwise
            return self._model(params, seed, self._threads(threads), iterations)

    def _run(self, model, train, callback=None):
        """model.fit(train) with BLAS held to one thread; a callback may end it by raising _Stop."""
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=1, user_api="blas"):
            try:
                model.fit(train, show_progress=False, callback=callback)
            except _Stop:
                pass
        return model

    def validate(self, train, validation, params, *, device, seed, threads, deadline) -> tuple[float, dict]:
        """Validation NDCG@100 every ``every`` iterations of one fit of up to max_iterations;
        stops after ``patience`` checks without a gain or past ``deadline``; (best, its iterations)."""
        model = self._new(params, seed, threads, self.max_iterations)
        best = {"value": -1.0, "iterations": 0, "since": 0}

        def check(iteration, *_):  # ALS: (iteration, seconds, loss); BPR: (iteration, seconds, correct, skipped)
            done = iteration + 1
            if done % self.every and done != self.max_iterations:
                return
            value = score(self._score_fn(model, device), train, validation, device=device)["NDCG@100"]
            if value > best["value"]:
                best.update(value=value, iterations=done, since=0)
            else:
                best["since"] += 1
            if best["since"] >= self.patience or time.perf_counter() > deadline:
                raise _Stop

        self._run(model, train, check)
        return best["value"], {"iterations": best["iterations"]}

    def fit(self, train, params, *, device, seed, threads) -> ScoreFn:
        model = self._new(params, seed, threads, int(params["iterations"]))
        return self._score_fn(self._run(model, train), device)


def _implicit_class(kind: str):
    import implicit.gpu

    if implicit.gpu.HAS_CUDA and torch.cuda.is_available():
        from implicit.gpu import als, bpr
        return {"als": als.AlternatingLeastSquares, "bpr": bpr.BayesianPersonalizedRanking}[kind]
    from implicit.cpu import als, bpr
    return {"als": als.AlternatingLeastSquares, "bpr": bpr.BayesianPersonalizedRanking}[kind]


class IALS(_Factorization):
    name = "ials"
    default = {"factors": 128, "regularization": 10.0, "alpha": 5.0}
    every, patience, max_iterations = 1, 3, 30

    def suggest(self, trial) -> dict:
        return {"factors": trial.suggest_categorical("factors", [32, 64, 128, 256, 512]),
                "regularization": trial.suggest_float("regularization", 1e-2, 1e3, log=True),
                "alpha": trial.suggest_float("alpha", 0.5, 100.0, log=True)}

    def _model(self, params, seed, threads, iterations):
        cls = _implicit_class("als")
        kwargs = dict(factors=int(params["factors"]), regularization=float(params["regularization"]),
                      alpha=float(params["alpha"]), iterations=iterations, random_state=seed)
        if "gpu" not in cls.__module__:
            kwargs["num_threads"] = threads
        return cls(**kwargs)


class BPR(_Factorization):
    name = "bpr"
    default = {"factors": 128, "learning_rate": 0.01, "regularization": 0.01}  # implicit's own lr and λ
    every, patience, max_iterations = 10, 3, 300

    def suggest(self, trial) -> dict:
        return {"factors": trial.suggest_categorical("factors", [32, 64, 128, 256]),
                "learning_rate": trial.suggest_float("learning_rate", 1e-3, 0.3, log=True),
                "regularization": trial.suggest_float("regularization", 1e-5, 0.1, log=True)}

    def __init__(self, threads: int = 1):
        self.threads = threads  # 1: repeatable; more: implicit's Hogwild SGD, faster but not repeatable

    def _threads(self, threads):
        return self.threads

    def _model(self, params, seed, threads, iterations):
        cls = _implicit_class("bpr")
        kwargs = dict(factors=int(params["factors"]), learning_rate=float(params["learning_rate"]),
                      regularization=float(params["regularization"]), iterations=iterations, random_state=seed)
        if "gpu" not in cls.__module__:
            kwargs["num_threads"] = threads
        return cls(**kwargs)


PEERS = {"ease": EASE, "ials": IALS, "bpr": BPR, "pop": Popular}


# -- tuning, then the one test ------------------------------------------------------------------

def tune_and_test(peer: Peer, split, *, device="cpu", trials: int = 20, budget_s: float | None = 300.0,
                  seed: int = 0, threads: int = 1) -> PeerResult:
    """Tune ``peer`` on split.train → split.validation, refit with the best setting on
    split.full, score once on split.test (all with ``quality_score.score``)."""
    import optuna

    peer.check(split, device)
    torch.backends.cuda.matmul.allow_tf32 = False  # peers' scores in full float32 (another run may have set it)
    start = time.perf_counter()
    deadline = start + (budget_s if budget_s else math.inf)
    history = []

    def objective(trial) -> float:
        params = peer.suggest(trial)
        t = time.perf_counter()
        value, extra = peer.validate(split.train, split.validation, params, device=device, seed=seed,
                                     threads=threads, deadline=deadline)
        for k, v in extra.items():
            trial.set_user_attr(k, v)
        history.append({"params": {**params, **extra}, "validation": value, "seconds": time.perf_counter() - t})
        return value

    if type(peer).suggest is Peer.suggest:  # nothing to tune: one validation for the record
        value, extra = peer.validate(split.train, split.validation, {}, device=device, seed=seed, threads=threads,
                                     deadline=deadline)
        params = extra
        history.append({"params": extra, "validation": value, "seconds": time.perf_counter() - start})
    else:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
        study.enqueue_trial(peer.default)
        study.optimize(objective, n_trials=trials, timeout=budget_s or None)
        best = study.best_trial
        value, params = best.value, {**best.params, **best.user_attrs}
    tune_s = time.perf_counter() - start
    if hasattr(peer, "release"):
        peer.release()  # EASE: the tuning's XᵀX, before the final fit builds its own
    full = split.full
    t = time.perf_counter()
    scores = peer.fit(full, params, device=device, seed=seed, threads=threads)
    if device != "cpu" and torch.cuda.is_available():
        torch.cuda.synchronize()
    fit_s = time.perf_counter() - t
    test = score(scores, full, split.test, device=device)
    if hasattr(peer, "release"):
        peer.release()
    return PeerResult(peer.name, params, value, test, tune_s, fit_s, history)
