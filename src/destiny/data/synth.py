"""Synthetic implicit-feedback data shaped like MovieLens 20M, with a taste structure to learn.

Generative model (everything drawn from ``Generator(PCG64(seed))``, fully vectorised):

* Item popularity is a power law over a random ranking of the items:
  weight(rank r) ∝ (r + offset)^-exponent.
* User activity is log-normal above a floor, like MovieLens' 20-ratings minimum:
  n_u = min_items + LogNormal, mean ``mean_items`` (144 at full size, ≈ 20M interactions).
* Taste: items are split at random among ``topics`` topics; each user has a Dirichlet(0.2)
  mixture of topics, so a few dominate. Each pick is, with probability ``topic_share``, an item
  of a topic drawn from the user's mixture (weighted by popularity within the topic), else an
  item drawn by global popularity. A model that infers a user's topics from the items seen
  beats popularity on held-out items; popularity alone does not see the topics.
* Items are distinct within a user: picks are drawn with replacement in rounds and merged
  until each user has n_u distinct items. The rare users still short after 8 rounds (the most
  active ones, who exhaust their topics) get their last items uniformly at random; n_u is
  capped at half the items, so these rounds converge.

Rows list their items in increasing index order. Memory: the result plus about 100 MB of
per-block temporaries (blocks of ≈1M picks).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from destiny.data import csr
from destiny.data.dataset import SparseDataset
from destiny.errors import UsageError


@dataclass(frozen=True)
class Like:
    """Defaults of a data set to imitate."""

    users: int
    items: int
    mean_items: float
    min_items: int
    exponent: float
    offset: float
    topics: int


LIKE = {"movielens-20m": Like(users=138_493, items=27_278, mean_items=144.0, min_items=20,
                              exponent=1.1, offset=40.0, topics=24)}

_BLOCK_PICKS = 1_000_000
_MODEL_ROUNDS = 8  # rounds drawn from the model; later rounds (rare users) draw uniformly
_ROUNDS = 40
_SIGMA = 1.2  # log-normal spread of user activity (MovieLens 20M: median ≈ 68, mean ≈ 144)


def synthesize(users: int | None = None, items: int | None = None, *, seed: int = 0, like: str = "movielens-20m",
               mean_items: float | None = None, topics: int | None = None, topic_share: float = 0.7,
               name: str = "input") -> SparseDataset:
    """An indicator SparseDataset (users × items) drawn from the model in the module docstring.

    Defaults come from ``like`` (full MovieLens 20M size). ``mean_items`` defaults to the
    original's 144 capped at items / 8 so that small item sets stay sparse; ``topics`` to 24
    capped at items / 20. Deterministic given the arguments.
    """
    base = LIKE.get(like)
    if base is None:
        raise UsageError(f"unknown data set to imitate '{like}'; choose one of {', '.join(LIKE)}")
    users = base.users if users is None else int(users)
    items = base.items if items is None else int(items)
    if users < 1 or items < 2:
        raise UsageError(f"need at least 1 user and 2 items, got {users} users and {items} items")
    mean = min(base.mean_items, items / 8) if mean_items is None else float(mean_items)
    if not 1 <= mean <= items / 2:
        raise UsageError(f"mean items per user {mean:g} must lie between 1 and half the {items} items")
    topics = max(1, min(base.topics, items // 20)) if topics is None else int(topics)
    if not 0.0 <= topic_share <= 1.0 or topics < 1:
        raise UsageError("topic_share must lie in [0, 1] and topics be at least 1")
    rng = np.random.Generator(np.random.PCG64(seed))
    model = _Model(rng, items, topics, base)
    targets = _activity(rng, users, items, mean, base)
    indices = np.empty(int(targets.sum()), dtype=np.int32)  # upper bound, shrunk at the end
    counts = np.zeros(users, dtype=np.int64)
    filled = 0
    for first, stop in _blocks(targets):
        theta = rng.dirichlet(np.full(topics, 0.2), size=stop - first)  # (block users, topics) tastes
        keys = model.picks(rng, targets[first:stop], theta, topic_share)
        block_counts = np.bincount(keys // items, minlength=stop - first)
        counts[first:stop] = block_counts
        indices[filled:filled + len(keys)] = keys % items
        filled += len(keys)
    indices.resize(filled, refcheck=False)
    return SparseDataset(name, (items,), csr.counts_to_offsets(counts), indices)


def _activity(rng: np.random.Generator, users: int, items: int, mean: float, base: Like) -> np.ndarray:
    """(users,) int64 distinct items wanted by each user: floor + log-normal, mean ≈ ``mean``."""
    floor = max(1, round(mean * base.min_items / base.mean_items))
    excess = max(mean - floor, 1e-3)
    mu = math.log(excess) - _SIGMA ** 2 / 2
    wanted = floor + np.rint(rng.lognormal(mu, _SIGMA, size=users))
    return np.clip(wanted, 1, items // 2).astype(np.int64)


def _blocks(targets: np.ndarray):
    """(first, stop) user ranges of about _BLOCK_PICKS wanted items each."""
    cumulative = np.cumsum(targets)
    bounds = np.searchsorted(cumulative, np.arange(_BLOCK_PICKS, cumulative[-1], _BLOCK_PICKS), side="right")
    bounds = np.unique(np.concatenate([[0], bounds, [len(targets)]]))
    return zip(bounds[:-1].tolist(), bounds[1:].tolist())


def _alias(weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Walker's alias table of a discrete distribution: (accept, alias), both (n,).

    A draw is k = ⌊u·n⌋, then k if v < accept[k] else alias[k]: O(1), unlike a binary search
    of the CDF. Built with Vose's method, a Python loop over the n outcomes (once a model).
    """
    n = len(weights)
    scaled = weights * (n / weights.sum())
    accept, alias = np.ones(n), np.arange(n)
    small = [i for i in range(n) if scaled[i] < 1.0]
    large = [i for i in range(n) if scaled[i] >= 1.0]
    while small and large:
        low, high = small.pop(), large[-1]
        accept[low], alias[low] = scaled[low], high
        scaled[high] -= 1.0 - scaled[low]
        if scaled[high] < 1.0:
            small.append(large.pop())
    return accept, alias


class _Model:
    """Item popularity and topics as alias tables (global, and one a topic)."""

    def __init__(self, rng: np.random.Generator, items: int, topics: int, base: Like):
        self.items, self.topics = items, topics
        weight = (np.arange(items) + base.offset) ** -base.exponent  # by popularity rank
        by_rank = rng.permutation(items)  # item id of each rank
        popularity = np.empty(items)
        popularity[by_rank] = weight  # (items,) weight of each item id
        accept, alias = _alias(weight)
        self.popular = (accept, by_rank[alias])  # the item of the alias outcome
        self.by_rank = by_rank
        topic_of = rng.integers(0, topics, size=items)
        by_topic = np.argsort(topic_of, kind="stable")  # item ids grouped by topic
        sizes = np.bincount(topic_of, minlength=topics)
        self.topic_start = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        self.topic_size = sizes
        self.topic_accept = np.ones(items)
        self.topic_item = by_topic.copy()  # the item of slot j (used when accepted)
        self.topic_alias = by_topic.copy()  # the item of slot j's alias
        for t in np.flatnonzero(sizes):
            lo, hi = self.topic_start[t], self.topic_start[t] + sizes[t]
            accept, alias = _alias(popularity[by_topic[lo:hi]])
            self.topic_accept[lo:hi] = accept
            self.topic_alias[lo:hi] = by_topic[lo:hi][alias]
        self.empty_topics = sizes == 0

    def picks(self, rng: np.random.Generator, targets: np.ndarray, theta: np.ndarray, topic_share: float) -> np.ndarray:
        """Sorted distinct int64 keys local_user · items + item for one block of users."""
        theta = np.where(self.empty_topics, 0.0, theta)
        theta /= theta.sum(axis=1, keepdims=True)
        mixture_cdf = (np.cumsum(theta, axis=1) + np.arange(len(theta))[:, None]).ravel()
        user_starts = np.arange(len(targets) + 1, dtype=np.int64) * self.items  # key range of each user
        keys = np.zeros(0, dtype=np.int64)
        need = targets.copy()
        for round_ in range(_ROUNDS):
            user = np.repeat(np.arange(len(targets), dtype=np.int64), need)
            if round_ < _MODEL_ROUNDS:
                item = self._draw(rng, user, mixture_cdf, topic_share)
            else:  # the last few picks of very active users: uniform, so that rounds converge
                item = rng.integers(0, self.items, size=len(user))
            keys = np.sort(np.concatenate([keys, user * self.items + item]))
            keys = keys[np.concatenate([[True], keys[1:] != keys[:-1]])]
            need = targets - np.diff(np.searchsorted(keys, user_starts))
            if not need.any():
                break
        return keys

    def _draw(self, rng: np.random.Generator, user: np.ndarray, mixture_cdf: np.ndarray, topic_share: float):
        """(n,) int64 items: from a topic of the user's mixture or by global popularity."""
        n = len(user)
        item = np.empty(n, dtype=np.int64)
        topical = rng.random(n) < topic_share
        k = int(topical.sum())
        u = user[topical]  # sorted, so the search below walks forward
        position = np.searchsorted(mixture_cdf, u + rng.random(k) * (1 - 1e-12), side="right")
        topic = np.minimum(position - u * self.topics, self.topics - 1)
        slot = self.topic_start[topic] + (rng.random(k) * self.topic_size[topic]).astype(np.int64)
        item[topical] = np.where(rng.random(k) < self.topic_accept[slot], self.topic_item[slot], self.topic_alias[slot])
        accept, alias = self.popular
        rank = (rng.random(n - k) * self.items).astype(np.int64)
        item[~topical] = np.where(rng.random(n - k) < accept[rank], self.by_rank[rank], alias[rank])
        return item
