"""The quality benchmark's datasets (issue 18): seven real user × item sets with one fixed protocol.

    split = load("ml-1m", data_root(None), seed=0)
    split.train, split.validation, split.test, split.full     # scipy CSR, float32 ones, one shape

Every matrix is users × items, float32 ones, without duplicate pairs, and all four share one
shape. ``train`` is what tuning fits on, ``validation`` what it scores, ``full`` = train ∪
validation is what the final fit uses, and ``test`` is scored once at the end. Validation and
test pairs that also occur in training are dropped, and ``notes`` counts them (duplicates too).

| name            | file(s) under the data root                          | users × items    | split           |
|-----------------|------------------------------------------------------|------------------|-----------------|
| ml-1m           | movielens-1m-implicit/{train,test}.txt               | 6,040 × 3,706    | given 80/20     |
| ml-latest-small | movielens-latest-small/ratings.csv (all as implicit) | 610 × 9,724      | random 80/20    |
| lastfm          | lastfm-hetrec2011/user_artists.dat (all pairs)       | 1,892 × 17,632   | random 80/20    |
| ml-20m-1024     | movielens-20m-dsstne-1024/movielens_input_1024.txt   | 1,024 × 26,744   | random 80/20    |
| citeulike       | citeulike-a-selfrec/{train,valid,test}.txt           | 5,551 × 16,980   | given           |
| gowalla         | gowalla-ngcf/s_adj_mat.npz (train) + test.txt        | 29,858 × 40,981  | given           |
| amazon-beauty   | amazon-beauty-selfrec/{train,valid,test}.txt         | 52,204 × 57,289  | given           |

Columns: ml-1m, ml-latest-small and lastfm keep the items that occur in any split (renumbered in
id order: 3,706 / 9,724 / 17,632); ml-20m-1024 maps movies by index.txt to DSSTNE's 26,744
features (most never occur: they stay empty); the others keep their files' 0-based ids.

Hold-outs ("random 80/20", and the validation of sets without a valid file): a user with n ≥ 3
items holds out max(1, ⌊f·n + ½⌋) of them, chosen uniformly at random (f = 0.2 for test, 0.1
for validation); a user with 1 or 2 items holds out none — a test or validation item would
leave a row of one item or none to learn from — so such users are never scored there. The
draw is a seeded permutation of each row (``numpy.random.default_rng([seed, salt])``): the same
seed gives the same split on every machine.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from destiny.errors import DataError, UsageError

TEST_FRACTION = 0.2
VALIDATION_FRACTION = 0.1
_TEST_SALT, _VALIDATION_SALT = 1, 2  # separate random streams for the two hold-outs


@dataclass
class Split:
    """One dataset under the protocol: train (tuning's input), validation, test; notes: what
    was cleaned (counts) and how it was split."""

    name: str
    train: sp.csr_matrix
    validation: sp.csr_matrix
    test: sp.csr_matrix
    notes: dict = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int]:
        return self.train.shape

    @property
    def full(self) -> sp.csr_matrix:
        """train ∪ validation: the final fit's input (disjoint by construction)."""
        return _binary(self.train + self.validation)

    def summary(self) -> dict:
        users, items = self.shape
        return {"users": users, "items": items, "train": int(self.train.nnz), "validation": int(self.validation.nnz),
                "test": int(self.test.nnz), "test_users": int((np.diff(self.test.indptr) > 0).sum()),
                **self.notes}


# -- matrices -----------------------------------------------------------------------------------

def _binary(m) -> sp.csr_matrix:
    """CSR of float32 ones at m's nonzero pattern, indices sorted."""
    m = sp.csr_matrix(m)
    m.sum_duplicates()
    m.eliminate_zeros()
    m.data = np.ones(m.nnz, dtype=np.float32)
    return m.astype(np.float32)


def _pairs_matrix(users: np.ndarray, items: np.ndarray, shape: tuple[int, int]) -> tuple[sp.csr_matrix, int]:
    """(binary CSR of the pairs, number of repeated pairs dropped)."""
    users = np.asarray(users, dtype=np.int64)
    items = np.asarray(items, dtype=np.int64)
    m = _binary(sp.coo_matrix((np.ones(len(users), dtype=np.float32), (users, items)), shape=shape))
    return m, len(users) - m.nnz


def _minus(a: sp.csr_matrix, b: sp.csr_matrix) -> tuple[sp.csr_matrix, int]:
    """(a without the pairs also in b, how many were dropped)."""
    both = a.multiply(b)
    both.eliminate_zeros()
    if not both.nnz:
        return a, 0
    return _binary(a - both), int(both.nnz)


def holdout(m: sp.csr_matrix, fraction: float, seed: int, salt: int) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """(kept, held out): each row with n ≥ 3 items gives max(1, ⌊fraction·n + ½⌋) of them, drawn
    uniformly by a seeded permutation; rows of 1 or 2 items give none. O(nnz log nnz)."""
    m = _binary(m)
    lengths = np.diff(m.indptr)
    k = np.where(lengths >= 3, np.maximum(1, np.floor(fraction * lengths + 0.5)), 0).astype(np.int64)
    rows = np.repeat(np.arange(m.shape[0], dtype=np.int64), lengths)
    keys = np.random.default_rng([seed, salt]).random(m.nnz)
    order = np.lexsort((keys, rows))  # row by row, a random order within each row
    rank = np.empty(m.nnz, dtype=np.int64)
    rank[order] = np.arange(m.nnz) - m.indptr[rows[order]]  # 0-based position in the row's random order
    held = rank < k[rows]
    kept_m = sp.csr_matrix((m.data[~held], (rows[~held], m.indices[~held])), shape=m.shape)
    held_m = sp.csr_matrix((m.data[held], (rows[held], m.indices[held])), shape=m.shape)
    return _binary(kept_m), _binary(held_m)


def _finish(name: str, train: sp.csr_matrix, validation: sp.csr_matrix | None, test: sp.csr_matrix, seed: int,
            notes: dict) -> Split:
    """The protocol's cleaning: validation and test pairs also in training dropped (test pairs in
    validation too); no validation file → 10% of each user's training items."""
    test, dropped = _minus(test, train)
    notes["test_pairs_in_train_dropped"] = dropped
    if validation is None:
        train, validation = holdout(train, VALIDATION_FRACTION, seed, _VALIDATION_SALT)
        notes["validation_from"] = f"{VALIDATION_FRACTION:.0%} of each user's training items (seed {seed})"
    else:
        validation, dropped = _minus(validation, train)
        notes["validation_pairs_in_train_dropped"] = dropped
        test, dropped = _minus(test, validation)
        notes["test_pairs_in_validation_dropped"] = dropped
        notes["validation_from"] = "the dataset's valid file"
    return Split(name, train, validation, test, notes)


def _compact(users: np.ndarray, items: np.ndarray) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """Ids renumbered 0.. in id order (only ids that occur), and the shape."""
    u, users = np.unique(users, return_inverse=True)
    i, items = np.unique(items, return_inverse=True)
    return users.ravel(), items.ravel(), (len(u), len(i))


# -- file readers -------------------------------------------------------------------------------

def _read_lines(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """LightGCN style ``uid item item …`` lines → (users, items) pair arrays."""
    users, items = [], []
    with open(path) as f:
        for number, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            try:
                ids = np.array(parts, dtype=np.int64)
            except ValueError:
                raise DataError(f"{path}, line {number}: expected integer ids 'user item item …', got "
                                f"{line[:60]!r}") from None
            users.append(np.full(len(ids) - 1, ids[0], dtype=np.int64))
            items.append(ids[1:])
    return np.concatenate(users), np.concatenate(items)


def _read_pairs(path: Path, columns=(0, 1), skip_header: bool = False, delimiter: str | None = None):
    """Whitespace- (or ``delimiter``-) separated rows → (users, items) from the given columns."""
    try:
        table = np.loadtxt(path, dtype=np.float64, usecols=columns, skiprows=1 if skip_header else 0,
                           delimiter=delimiter, ndmin=2)
    except ValueError as e:
        raise DataError(f"{path}: not a table of numeric ids in columns {columns}: {e}") from None
    return table[:, 0].astype(np.int64), table[:, 1].astype(np.int64)


def _need(root: Path, *names: str) -> list[Path]:
    paths = [root / n for n in names]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise DataError(f"missing dataset file(s): {', '.join(missing)}; point --data (or DESTINY_DATA) at the "
                        "folder that holds shared/data's README.md")
    return paths


# -- the seven datasets -------------------------------------------------------------------------

def _given_train_test(name: str, users_tr, items_tr, users_te, items_te, seed: int, compact_items: bool,
                      shape: tuple[int, int] | None = None) -> Split:
    notes: dict = {"test_from": "the dataset's test file"}
    n_tr = len(users_tr)
    if compact_items:  # columns: the items that occur in either file, in id order
        _, items, _ = _compact(np.zeros(1), np.concatenate([items_tr, items_te]))
        items_tr, items_te = items[:n_tr], items[n_tr:]
    users_all = np.concatenate([users_tr, users_te])
    items_all = np.concatenate([items_tr, items_te])
    shape = shape or (int(users_all.max()) + 1, int(items_all.max()) + 1)
    train, notes["train_duplicates_dropped"] = _pairs_matrix(users_tr, items_tr, shape)
    test, notes["test_duplicates_dropped"] = _pairs_matrix(users_te, items_te, shape)
    return _finish(name, train, None, test, seed, notes)


def _random_split(name: str, users, items, shape, seed: int, notes: dict) -> Split:
    everything, notes["duplicates_dropped"] = _pairs_matrix(users, items, shape)
    train, test = holdout(everything, TEST_FRACTION, seed, _TEST_SALT)
    notes["test_from"] = f"{TEST_FRACTION:.0%} of each user's items (seed {seed})"
    return _finish(name, train, None, test, seed, notes)


def _given_three(name: str, root: Path, folder: str, seed: int) -> Split:
    paths = _need(root, f"{folder}/train.txt", f"{folder}/valid.txt", f"{folder}/test.txt")
    parts = [_read_pairs(p) for p in paths]
    shape = (max(int(u.max()) for u, _ in parts) + 1, max(int(i.max()) for _, i in parts) + 1)
    notes: dict = {"test_from": "the dataset's test file"}
    mats = []
    for part, (u, i) in zip(("train", "validation", "test"), parts):
        m, notes[f"{part}_duplicates_dropped"] = _pairs_matrix(u, i, shape)
        mats.append(m)
    return _finish(name, mats[0], mats[1], mats[2], seed, notes)


def load_ml_1m(root: Path, seed: int = 0) -> Split:
    train_p, test_p = _need(root, "movielens-1m-implicit/train.txt", "movielens-1m-implicit/test.txt")
    return _given_train_test("ml-1m", *_read_lines(train_p), *_read_lines(test_p), seed, compact_items=True)


def load_ml_latest_small(root: Path, seed: int = 0) -> Split:
    (path,) = _need(root, "movielens-latest-small/ratings.csv")
    users, items = _read_pairs(path, skip_header=True, delimiter=",")
    users, items, shape = _compact(users, items)
    return _random_split("ml-latest-small", users, items, shape, seed, {"source": "every rating as an interaction"})


def load_lastfm(root: Path, seed: int = 0) -> Split:
    (path,) = _need(root, "lastfm-hetrec2011/user_artists.dat")
    users, items = _read_pairs(path, skip_header=True)
    users, items, shape = _compact(users, items)
    return _random_split("lastfm", users, items, shape, seed, {"source": "every user-artist pair, play counts ignored"})


def load_ml_20m_1024(root: Path, seed: int = 0) -> Split:
    data_p, index_p = _need(root, "movielens-20m-dsstne-1024/movielens_input_1024.txt",
                            "movielens-20m-dsstne-1024/index.txt")
    movies, features = _read_pairs(index_p)
    column = dict(zip(movies.tolist(), features.tolist()))
    users, items = [], []
    with open(data_p) as f:  # DSSTNE: user \t movie,ts:movie,ts:…
        for number, line in enumerate(f):
            line = line.strip()
            if not line:
                continue
            _, _, rest = line.partition("\t")
            for entry in rest.split(":"):
                movie = int(entry.split(",")[0])
                if movie not in column:
                    raise DataError(f"{data_p}, line {number + 1}: movie {movie} is not in {index_p}")
                users.append(number)
                items.append(column[movie])
    users, _, _ = _compact(np.array(users), np.zeros(1))
    shape = (int(users.max()) + 1, len(column))
    return _random_split("ml-20m-1024", users, np.array(items), shape, seed,
                         {"source": "DSSTNE's 1,024-user ml-20m sample, columns by index.txt"})


def load_citeulike(root: Path, seed: int = 0) -> Split:
    return _given_three("citeulike", root, "citeulike-a-selfrec", seed)


def load_amazon_beauty(root: Path, seed: int = 0) -> Split:
    return _given_three("amazon-beauty", root, "amazon-beauty-selfrec", seed)


def load_gowalla(root: Path, seed: int = 0) -> Split:
    adj_p, test_p = _need(root, "gowalla-ngcf/s_adj_mat.npz", "gowalla-ngcf/test.txt")
    users_te, items_te = _read_lines(test_p)
    n_users = 29_858  # the adjacency is [[0, R], [Rᵀ, 0]] over users then items (README §6)
    adjacency = sp.load_npz(adj_p).tocsr()
    train = adjacency[:n_users, n_users:].tocoo()
    shape = (n_users, adjacency.shape[0] - n_users)
    if int(users_te.max()) >= n_users or int(items_te.max()) >= shape[1]:
        raise DataError(f"{test_p}: ids beyond the adjacency's {shape[0]} users × {shape[1]} items")
    return _given_train_test("gowalla", train.row, train.col, users_te, items_te, seed, compact_items=False,
                             shape=shape)


DATASETS = {
    "ml-1m": load_ml_1m,
    "ml-latest-small": load_ml_latest_small,
    "lastfm": load_lastfm,
    "ml-20m-1024": load_ml_20m_1024,
    "citeulike": load_citeulike,
    "gowalla": load_gowalla,
    "amazon-beauty": load_amazon_beauty,
}


def load(name: str, root: Path, seed: int = 0) -> Split:
    """The dataset ``name`` (one of DATASETS) under the protocol, with split seed ``seed``."""
    if name not in DATASETS:
        raise UsageError(f"unknown dataset {name!r}; choose among {', '.join(DATASETS)}")
    return DATASETS[name](Path(root), seed)


def data_root(given: str | None) -> Path:
    """The data folder: ``given`` (--data), else $DESTINY_DATA (or the tests' $DESTINY_SHARED_DATA),
    else shared/data inside the checkout or beside it (../shared/data). DataError when none is there."""
    repo = Path(__file__).resolve().parents[1]
    env = os.environ.get("DESTINY_DATA") or os.environ.get("DESTINY_SHARED_DATA")
    candidates = [Path(given)] if given else (
        [Path(env)] if env else [repo / "shared" / "data", repo.parent / "shared" / "data"])
    for path in candidates:
        if path.is_dir():
            return path
    raise DataError(f"no data folder at {', '.join(map(str, candidates))}; pass --data PATH or set DESTINY_DATA "
                    "to the folder of the datasets (the one with movielens-1m-implicit/)")
