"""A recommender from a ratings table with the Python API: DataFrame → destiny.Recommender →
ranking metrics on held-out items, next to recommending the most popular items.

    python examples/recommender_pandas.py ../shared/data/movielens-latest-small/ratings.csv
    python examples/recommender_pandas.py ratings.csv --min-rating 4 --history h.json
    python examples/recommender_pandas.py ratings.csv --tune 300      # destiny.tune for 5 minutes

Any CSV with user, item and rating columns works (MovieLens's ratings.csv by default:
userId, movieId, rating, timestamp). Ratings of at least --min-rating count as interactions;
20% of each user's interactions are held out for the test (seeded), and 10% of the rest for
validation: the model trains on the remaining 70% and keeps the epoch with the best validation
NDCG@100 (``fit(..., validation=)``), then recommends from each user's 80% and is scored once on
the test items. The network is Destiny's default recommender (``destiny.recommender.
default_config``), or with --tune the winner of ``destiny.tune``'s search; each epoch's errors
and validation metrics go to --history for `destiny plot`. With the defaults it is the README's
Python block (same splits, same model: the same weights), with a popularity baseline beside it.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import pandas as pd

import destiny
from destiny.data import from_pandas, split_dataset
from destiny.predict.metrics import ranking_metrics
from destiny.predict.recommend import popularity
from destiny.train.history import write_history


def run(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("ratings", help="CSV of ratings (MovieLens's ratings.csv)")
    parser.add_argument("--user", default="userId", help="user column (default userId)")
    parser.add_argument("--item", default="movieId", help="item column (default movieId)")
    parser.add_argument("--rating", default="rating", help="rating column (default rating; '' keeps every row)")
    parser.add_argument("--min-rating", type=float, default=3.5, help="keep ratings ≥ this (default 3.5)")
    parser.add_argument("--epochs", type=int, default=None, help="maximum epochs (default: the Recommender's)")
    parser.add_argument("--tune", type=float, default=None, metavar="SECONDS",
                        help="search recipes with destiny.tune for this many seconds (needs optuna)")
    parser.add_argument("-k", type=int, default=10, help="recommendations a user (default 10)")
    parser.add_argument("--seed", type=int, default=1,
                        help="seed of the test split; the validation split's is SEED + 1 (default 1: the README's 1 "
                             "and 2); the model keeps its own default seed, as in the README")
    parser.add_argument("--history", help="write the per-epoch errors to this JSON file (for destiny plot)")
    parser.add_argument("--save", help="write the trained network to this file (DSSTNE's format)")
    args = parser.parse_args(argv)

    frame = pd.read_csv(args.ratings)
    if args.rating:
        frame = frame[frame[args.rating] >= args.min_rating]
    data, users, items = from_pandas(frame, args.user, args.item)
    train, test = split_dataset(data, test_fraction=0.2, seed=args.seed)
    fit, validation = split_dataset(train, test_fraction=0.1, seed=args.seed + 1)
    print(f"{args.ratings}: {data.n_examples:,} users × {data.n_features:,} items, {data.nnz:,} interactions "
          f"(ratings ≥ {args.min_rating:g}); {fit.nnz:,} to train on, {validation.nnz:,} to validate, "
          f"{test.nnz:,} held out for the test")

    started = time.perf_counter()
    if args.tune:
        model = destiny.tune(fit, validation, budget_s=args.tune)
    else:
        model = destiny.Recommender(epochs=args.epochs).fit(fit, validation=validation)
    seconds = time.perf_counter() - started
    best = next(h for h in model.history_ if h["epoch"] == model.best_epoch_) if model.best_epoch_ else model.history_[-1]
    print(f"trained {len(model.history_)} epochs in {seconds:.1f} s{' of tuning' if args.tune else ''}; best epoch "
          f"{best['epoch']}: validation NDCG@100 {(best.get('metrics') or {}).get('ndcg@100', float('nan')):.4f}")
    if args.history:
        write_history(args.history, model.history_, {"network": "Recommender", "data": args.ratings,
                                                     **{k: v for k, v in model.get_params().items() if k != "config"}})
        print(f"wrote {args.history} (destiny plot {args.history} -o curves.png)")
    if args.save:
        print(f"wrote {args.save} (fingerprint {model.save(args.save)})")

    ours = model.evaluate(test, train, k=args.k)[args.k]  # from each user's 80%, seen items removed
    _, popular = popularity(train, args.k)
    base = ranking_metrics(popular, test.offsets, test.indices, k=args.k, n_items=data.n_features).as_dict()
    k = args.k
    print(f"\n{'':14}{'P@' + str(k):>9}{'Recall@' + str(k):>11}{'NDCG@' + str(k):>9}{'HitRate':>9}{'Coverage':>10}")
    for name, m in (("Destiny", ours), ("Most popular", base)):
        print(f"{name:14}{m['precision']:9.4f}{m['recall']:11.4f}{m['ndcg']:9.4f}{m['hit_rate']:9.4f}"
              f"{m['coverage']:10.1%}")
    print(f"({ours['users']:,} users with held-out items; P@{k} is {ours['precision'] / max(base['precision'], 1e-12):.2f}× "
          "popularity's)")

    ids, scores = model.recommend(0, train, N=5)
    print(f"\nuser {users[0]}: trained on {len(train.row(0)[0])} items; recommended {', '.join(map(str, items[ids]))}")
    return 0 if np.isfinite(ours["precision"]) else 1


if __name__ == "__main__":
    sys.exit(run())
