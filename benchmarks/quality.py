"""Recommendation quality: Destiny tuned against tuned EASE, iALS, BPR (and most-popular) on the
real datasets of issue 18, under one protocol (benchmarks/quality_data.py) and one scorer
(benchmarks/quality_score.py).

    python benchmarks/quality.py --datasets ml-1m,lastfm --methods destiny,ease,ials,bpr,pop \\
        --budget-s 300 --trials 20 --device cuda --out quality.json

Each method is tuned on train → validation (validation NDCG@100), refit with its best setting
on train ∪ validation (iterative methods with the iteration count the tuning chose) and scored
once on test: P@10, NDCG@100, Recall@20 (|test| denominator, LightGCN's), seen items removed,
means over users with a test item. Destiny: ``destiny.tune(train, validation, budget_s=…,
device=…, seed=…)`` and then ``destiny.Recommender(**best_params_).fit(train ∪ validation)``.
Method ``default``: ``destiny.Recommender().fit(train, validation=…)`` with no other setting,
scored as it comes (issue 18's "a default that wins"; the Recommender itself refits the epochs
it chose on train ∪ validation, as the peers are). Peers: Optuna TPE,
--trials trials or --peer-budget-s seconds each (default --budget-s), whichever ends first.
Rows print as they arrive; one failing method prints its error and the run goes on; the JSON
(--out) is rewritten atomically after every row.

Data: --data PATH, else $DESTINY_DATA, else shared/data in or beside the checkout. On a GPU
machine without a package index or ../shared: ``benchmarks/stage_device.sh`` copies the files
read here into .stage/data and downloads Python 3.12 wheels of optuna and implicit into .whl;
carry both and run ``pip install --no-index --no-deps --target /tmp/site .whl/*.whl`` there,
then this script with ``--data .stage/data`` and ``PYTHONPATH=/tmp/site:src``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import quality_data  # noqa: E402
from peers import PEERS, Skip, tune_and_test  # noqa: E402
from quality_score import TOP, fmt, metrics_of, score, scored_users  # noqa: E402

COLUMNS = ("dataset", "method", "P@10", "NDCG@100", "Recall@20", "val NDCG@100", "tune s", "fit s", "params")
WIDTHS = (15, 7, 6, 8, 9, 12, 7, 7, 0)


# -- Destiny ------------------------------------------------------------------------------------

def _ranked(model, users: np.ndarray, rows, n_users: int) -> np.ndarray:
    """(n_users, TOP) ranked ids from Destiny's recommend (seen items filtered), −1 for the
    users not asked."""
    out = np.full((n_users, TOP), -1, dtype=np.int64)
    if len(users):
        ids, _ = model.recommend(users, rows, N=TOP)
        out[users] = ids
    return out


def run_destiny(split, *, device: str, budget_s: float, seed: int) -> dict:
    """``destiny.tune`` on train → validation, then ``Recommender(**best_params_)`` refit on
    train ∪ validation and scored once on the test items."""
    import destiny

    start = time.perf_counter()
    model = destiny.tune(split.train, split.validation, budget_s=budget_s, device=device, seed=seed)
    params = dict(model.best_params_)
    params.setdefault("device", device)
    tune_s = time.perf_counter() - start
    users = scored_users(split.validation)
    validation = metrics_of(_ranked(model, users, split.train, split.shape[0])[users], users,
                            split.validation)["NDCG@100"]
    trials = getattr(model, "trials_", None)
    del model
    full = split.full
    t = time.perf_counter()
    final = destiny.Recommender(**params).fit(full)
    fit_s = time.perf_counter() - t
    test = score(_ranked(final, scored_users(split.test), full, split.shape[0]), full, split.test)
    return {"params": params, "validation": validation, "test": test, "tune_s": tune_s, "fit_s": fit_s,
            "tuned_by": "destiny.tune", "trials": trials}


def run_default(split, *, device: str, seed: int) -> dict:
    """What a user gets with no settings: ``destiny.Recommender().fit(train, validation=…)``
    (early stopping at the best validation NDCG@100, then — the Recommender's ``refit`` — the
    chosen epochs again on train ∪ validation, as every peer's final fit), recommending from
    each user's train ∪ validation items, scored once on the test items."""
    import destiny

    start = time.perf_counter()
    model = destiny.Recommender(device=device, seed=seed).fit(split.train, validation=split.validation)
    fit_s = time.perf_counter() - start
    params = {"network": model.network_.config.name, "best_epoch": model.best_epoch_, "refit": model.refit_}
    full = split.full
    test = score(_ranked(model, scored_users(split.test), full, split.shape[0]), full, split.test)
    return {"params": params, "validation": model.best_score_, "test": test, "tune_s": 0.0, "fit_s": fit_s,
            "tuned_by": "Recommender() defaults"}


# -- the run ------------------------------------------------------------------------------------

def environment(device: str, threads: int) -> dict:
    import scipy

    env = {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
           "scipy": scipy.__version__, "device": device, "threads": threads, "cpu": platform.processor()}
    try:
        with open("/proc/cpuinfo") as f:
            env["cpu"] = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    if device.startswith("cuda"):
        env["gpu"] = torch.cuda.get_device_name(torch.device(device))
    for name in ("destiny", "implicit", "optuna"):
        try:
            env[name] = __import__(name).__version__
        except Exception as e:  # noqa: BLE001 — a missing peer library is reported, not fatal
            env[name] = f"unavailable ({type(e).__name__}: {e})"
    try:
        import implicit.gpu
        env["implicit_gpu"] = bool(implicit.gpu.HAS_CUDA)
    except Exception:  # noqa: BLE001
        env["implicit_gpu"] = False
    try:
        env["commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                       cwd=Path(__file__).parent, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        env["commit"] = None
    return env


def _plain(value):
    """JSON for what json does not know: numpy scalars as numbers, the rest as text."""
    return value.item() if isinstance(value, np.generic) else str(value)


def write_json(path: str, payload: dict) -> None:
    """payload as JSON at path, atomically (a temporary file beside it, then a rename)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=target.name + ".", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(payload, f, indent=1, default=_plain)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _short(params: dict) -> str:
    parts = []
    for k, v in params.items():
        if k in ("device", "progress", "seed"):
            continue
        if k == "config" and v is not None:
            v = "<json>" if not isinstance(v, str) or len(v) > 40 else v
        parts.append(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}")
    return " ".join(parts)


def print_row(cells) -> None:
    print("  ".join(str(c).ljust(w) if w else str(c) for c, w in zip(cells, WIDTHS)), flush=True)


def run_method(method: str, split, args) -> dict:
    if method == "destiny":
        return run_destiny(split, device=args.device, budget_s=args.budget_s, seed=args.seed)
    if method == "default":
        return run_default(split, device=args.device, seed=args.seed)
    options = {"ease": (args.ease_dtype,), "bpr": (args.bpr_threads,)}
    peer = PEERS[method](*options.get(method, ()))
    r = tune_and_test(peer, split, device=args.device, trials=args.trials, budget_s=args.peer_budget_s,
                      seed=args.seed, threads=args.threads)
    return {"params": r.params, "validation": r.validation, "test": r.test, "tune_s": r.tune_s, "fit_s": r.fit_s,
            "trials": r.trials}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", default=",".join(quality_data.DATASETS),
                   help=f"comma-separated, among {', '.join(quality_data.DATASETS)}")
    p.add_argument("--methods", default="destiny,ease,ials,bpr,pop", help="comma-separated: destiny, ease, ials, "
                   "bpr, pop")
    p.add_argument("--budget-s", type=float, default=300.0, help="destiny.tune's wall-clock budget a dataset")
    p.add_argument("--trials", type=int, default=20, help="Optuna trials a peer and dataset")
    p.add_argument("--peer-budget-s", type=float, default=None, help="seconds of tuning a peer and dataset "
                   "(default: --budget-s; 0: no limit, trials only)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--seed", type=int, default=0, help="splits, samplers and models")
    p.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)), help="CPU threads (torch, iALS)")
    p.add_argument("--data", default=None, help="the data folder (default: $DESTINY_DATA or shared/data)")
    p.add_argument("--out", default=None, help="JSON results, rewritten after every row")
    p.add_argument("--ease-dtype", default="auto", choices=("auto", "float32", "float64"),
                   help="auto: float64 where 3 × items² of them fit the device")
    p.add_argument("--bpr-threads", type=int, default=1, help="BPR's threads (1: repeatable; more: Hogwild SGD, "
                   "faster, not repeatable)")
    args = p.parse_args(argv)
    args.peer_budget_s = args.budget_s if args.peer_budget_s is None else (args.peer_budget_s or None)
    datasets = [d for d in args.datasets.split(",") if d]
    methods = [m for m in args.methods.split(",") if m]
    unknown = [d for d in datasets if d not in quality_data.DATASETS] + \
              [m for m in methods if m not in PEERS and m not in ("destiny", "default")]
    if unknown:
        p.error(f"unknown dataset or method: {', '.join(unknown)}")
    torch.set_num_threads(args.threads)
    root = quality_data.data_root(args.data)
    env = environment(args.device, args.threads)
    print(" ".join(f"{k}={v}" for k, v in env.items()), flush=True)
    print(f"data {root}; peers: {args.trials} trials or {args.peer_budget_s or 'unlimited'} s each; destiny.tune: "
          f"{args.budget_s:g} s; seed {args.seed}", flush=True)
    payload = {"environment": env, "arguments": vars(args), "datasets": {}, "results": []}
    header = False
    for name in datasets:
        try:
            split = quality_data.load(name, root, args.seed)
        except Exception as e:  # noqa: BLE001 — report and go on with the next dataset
            print(f"{name}: cannot load: {type(e).__name__}: {e}", flush=True)
            payload["datasets"][name] = {"error": f"{type(e).__name__}: {e}"}
            continue
        info = split.summary()
        payload["datasets"][name] = info
        print(f"\n{name}: {info['users']:,} users × {info['items']:,} items; train {info['train']:,}, validation "
              f"{info['validation']:,}, test {info['test']:,} pairs ({info['test_users']:,} test users); "
              + ", ".join(f"{k} {v}" for k, v in info.items() if k.endswith("dropped") and v), flush=True)
        if not header:
            print_row(COLUMNS)
            header = True
        for method in methods:
            row = {"dataset": name, "method": method}
            try:
                row.update(run_method(method, split, args))
                t = row["test"]
                print_row((name, method, fmt(t["P@10"]), fmt(t["NDCG@100"]), fmt(t["Recall@20"]),
                           fmt(row["validation"]), f"{row['tune_s']:.1f}", f"{row['fit_s']:.1f}",
                           _short(row["params"])))
            except Skip as e:
                row["skipped"] = str(e)
                print_row((name, method, "skipped:", str(e)))
            except Exception as e:  # noqa: BLE001 — one method failing must not end the run
                row["error"] = f"{type(e).__name__}: {e}"
                row["traceback"] = traceback.format_exc(limit=8)
                print_row((name, method, "error:", row["error"][:300]))
                print(row["traceback"][-1500:], file=sys.stderr, flush=True)
            payload["results"].append(row)
            if args.out:
                write_json(args.out, payload)
            if args.device.startswith("cuda"):
                torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    sys.exit(main())
