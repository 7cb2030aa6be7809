"""Training and prediction on datasets streamed from disk under a memory budget a third of
their size give bitwise what the in-memory path gives (same fingerprint, same
recommendations), shuffled or not, with dropout and denoising, on the exact and the padded
(static-shape) batch paths; and the budget holds: what the streaming datasets hold (their
ledgers) and what Python allocates during training (tracemalloc) stay under it."""

from __future__ import annotations

import gc
import tracemalloc

import numpy as np
import pytest

from destiny.data import read_dataset, synthesize, write_netcdf
from destiny.data.netcdf import inspect_netcdf
from destiny.data.budget import in_memory_bytes
from destiny.data.stream import StreamingSparseDataset
from destiny.predict.recommend import recommend
from destiny.train.checkpoint import network_to_file
from destiny.train.trainer import Trainer
from tests.train.test_trainer import autoencoder

ITEMS = 300
SHARE = 3  # the data are 3× their budget


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """in.nc (analog inputs) and out.nc (weighted indicator targets), about 1,000 users."""
    root = tmp_path_factory.mktemp("stream")
    data = synthesize(1000, ITEMS, seed=5, mean_items=100, name="in")
    rng = np.random.default_rng(0)
    write_netcdf(root / "in.nc", data.replace(values=rng.uniform(0.5, 2, data.nnz).astype(np.float32)))
    write_netcdf(root / "out.nc", data.replace(name="out", weights=rng.uniform(0.5, 1.5, data.n_examples)))
    return root


def in_memory(root):
    return {"in": read_dataset(root / "in.nc", "in"), "out": read_dataset(root / "out.nc", "out")}


def streaming(root):
    """The datasets streaming, each under a budget of a third of what it takes in memory."""
    out = {}
    for name in ("in", "out"):
        info, = inspect_netcdf(root / f"{name}.nc")
        out[name] = StreamingSparseDataset(root / f"{name}.nc", name, budget=in_memory_bytes(info) // SHARE)
    return out


def trainer(shuffle: bool, static: bool = False) -> Trainer:
    net = autoencoder(ITEMS, seed=4, dropout=0.3, denoise=0.2)
    return Trainer(net, "adam", batch_size=20, progress=False, shuffle=shuffle, static_shapes=static)


def fit(datasets, shuffle: bool, static: bool = False, epochs: int = 2):
    t = trainer(shuffle, static)
    t.fit(datasets, epochs)
    return t.network, t


@pytest.mark.parametrize("shuffle,static", [(False, False), (True, False), (True, True)],
                         ids=["in-order", "shuffled", "shuffled-padded"])
def test_streaming_training_equals_in_memory_training_bitwise(files, shuffle, static):
    memory, stream = in_memory(files), streaming(files)
    want, _ = fit(memory, shuffle, static)
    got, trainer = fit(stream, shuffle, static)
    assert network_to_file(got).info["fingerprint"] == network_to_file(want).info["fingerprint"]
    for name, data in stream.items():
        assert memory[name].nbytes >= SHARE * data.budget
        assert data.ledger.peak <= data.budget, (name, data.ledger.peak, data.budget)
        assert data.ledger.current == data.fixed_bytes + trainer._runner[0].sparse()[
            "in" if name == "in" else "out"].held_bytes  # windows given back at the epoch's end
        data.close()


def test_python_allocations_stay_under_the_budget_while_training(files):
    """tracemalloc sees numpy's allocations (the data, reads, windows); torch's tensors are not
    Python allocations. The in-memory run measures what training allocates besides its data."""
    fit(in_memory(files), shuffle=True, epochs=1)  # warm-up: lazy imports and caches
    fit(streaming(files), shuffle=True, epochs=1)
    memory, first, second = in_memory(files), trainer(True), trainer(True)
    size = sum(d.nbytes for d in memory.values())
    gc.collect()
    tracemalloc.start()
    try:
        base, _ = tracemalloc.get_traced_memory()
        first.fit(memory, 1)
        _, peak = tracemalloc.get_traced_memory()
        training = peak - base  # the trainer's own allocations, data held before
        del memory
        gc.collect()
        tracemalloc.reset_peak()
        base, _ = tracemalloc.get_traced_memory()
        stream = streaming(files)  # opening (the check reads the whole file) counts
        second.fit(stream, 1)
        _, peak = tracemalloc.get_traced_memory()
        streamed = peak - base
    finally:
        tracemalloc.stop()
    budget = sum(d.budget for d in stream.values())
    assert size >= SHARE * budget and training < budget
    assert all(d.ledger.peak <= d.budget for d in stream.values())
    # beyond the ledgers' arrays: netCDF4's own bookkeeping (≈15 KB a variable) and Python objects
    bookkeeping = 64 * 1024
    assert streamed <= budget + training + bookkeeping, (streamed, budget, training, size)
    assert streamed < size / 2  # the data are never all held
    assert network_to_file(first.network).info["fingerprint"] == network_to_file(second.network).info["fingerprint"]


def test_streaming_predictions_equal_in_memory_predictions(files):
    net, _ = fit(in_memory(files), shuffle=True, epochs=1)
    memory = read_dataset(files / "in.nc", "in")
    want = recommend(net, {"in": memory}, 10, exclude=memory.replace(values=None), batch_size=40)
    with StreamingSparseDataset(files / "in.nc", "in", budget=memory.nbytes // SHARE) as stream:
        got = recommend(net, {"in": stream}, 10, exclude=stream, batch_size=40)
        assert stream.ledger.peak <= stream.budget
    assert np.array_equal(got[1], want[1]) and np.array_equal(got[0], want[0])


def test_destiny_train_streams_past_the_budget_with_the_same_fingerprint(files, tmp_path, capsys):
    import json

    from destiny.cli.main import main

    (tmp_path / "net.json").write_text(json.dumps({
        "Version": 0.8, "ErrorFunction": "ScaledMarginalCrossEntropy", "ShuffleIndices": True,
        "Layers": [{"Name": "in", "N": "auto", "DataSet": "in", "Sparse": True},
                   {"Name": "h", "N": 16, "Activation": "Relu", "pDropout": 0.2},
                   {"Name": "out", "N": "auto", "DataSet": "out", "Sparse": True}]}))
    common = ["train", "-c", str(tmp_path / "net.json"), "-i", str(files / "in.nc"), "-o", str(files / "out.nc"),
              "-b", "20", "-e", "2", "--quiet", "--device", "cpu"]
    size = sum(d.nbytes for d in in_memory(files).values())
    runs = {"memory": ["--no-stream"], "asked": ["--stream"], "auto": ["--memory-budget", str(size // SHARE)]}
    prints = {}
    for name, extra in runs.items():
        assert main(common + ["-n", str(tmp_path / f"{name}.nc"), *extra]) == 0
        out = capsys.readouterr().out
        prints[name] = out.split("fingerprint ")[-1].strip(" )\n")
        assert ("Streaming from disk" in out) == (name != "memory")
    assert prints["memory"] == prints["asked"] == prints["auto"]
    assert main(common + ["-n", str(tmp_path / "x.nc"), "--memory-budget", "lots"]) == 2
    assert "--memory-budget 'lots'" in capsys.readouterr().err
    assert main(common + ["-n", str(tmp_path / "y.nc"), "--memory-budget", "20KB"]) == 2
    assert "or use a smaller batch" in capsys.readouterr().err
