"""Small networks with exact arithmetic (integer weights: every score is computed exactly
whatever the summation order, so ties are real ties) and DSSTNE text/index files around them."""

from __future__ import annotations

import json

import numpy as np
import torch

from destiny.config import loads_config
from destiny.nn.network import Network
from destiny.train.checkpoint import save_network


def exact_network(n_in: int = 40, hidden: int = 6, n_out: int = 40, activation: str = "Sigmoid",
                  seed: int = 0, spread: int = 2, dtype=torch.float32) -> Network:
    """Sparse input → ReLU hidden → output, with small integer weights and biases."""
    config = loads_config(json.dumps({
        "ErrorFunction": "ScaledMarginalCrossEntropy" if activation == "Sigmoid" else "CrossEntropy"
        if activation == "SoftMax" else "L2",
        "Layers": [{"Name": "Input", "Kind": "Input", "N": n_in, "DataSet": "input", "Sparse": True},
                   {"Name": "Hidden", "Kind": "Hidden", "N": hidden, "Activation": "Relu"},
                   {"Name": "Output", "Kind": "Output", "N": n_out, "DataSet": "output",
                    "Activation": activation, "Sparse": True}]}))
    net = Network.from_config(config, {}, dtype=dtype)
    rng = np.random.default_rng(seed)
    with torch.no_grad():
        for spec in net.specs:
            w = net.weight(spec)
            w.copy_(torch.as_tensor(rng.integers(-spread, spread + 1, size=tuple(w.shape)), dtype=dtype))
            b = net.bias(spec)
            b.copy_(torch.as_tensor(rng.integers(-1, 2, size=tuple(b.shape)), dtype=dtype))
    return net


def exact_scores(net: Network, rows: list[list[int]]) -> np.ndarray:
    """(users, n_out) pre-activations in float64 (exact: integer arithmetic)."""
    spec_in, spec_out = net.specs
    w0 = net.weight(spec_in).detach().double().numpy()
    b0 = net.bias(spec_in).detach().double().numpy()
    w1 = net.weight(spec_out).detach().double().numpy()
    b1 = net.bias(spec_out).detach().double().numpy()
    x = np.zeros((len(rows), w0.shape[0]))
    for u, r in enumerate(rows):
        x[u, r] = 1
    return np.maximum(x @ w0 + b0, 0) @ w1 + b1


def brute_top_k(scores: np.ndarray, k: int, banned: list[set] | None = None, allowed=None) -> list[list[int]]:
    """Sort each row by (−score, item), drop banned / not allowed / NaN items, keep k."""
    out = []
    for u, row in enumerate(scores):
        order = sorted(range(len(row)), key=lambda i: (-row[i], i))
        keep = [i for i in order if not np.isnan(row[i]) and row[i] != -np.inf
                and (banned is None or i not in banned[u]) and (allowed is None or allowed[i])]
        out.append(keep[:k])
    return out


def write_lines(path, rows: dict[str, list[str]]) -> None:
    """DSSTNE text: label<TAB>f:f:…"""
    path.write_text("".join(f"{label}\t{':'.join(items)}\n" for label, items in rows.items()))


def write_index(path, labels: list[str]) -> None:
    path.write_text("".join(f"{label}\t{i}\n" for i, label in enumerate(labels)))


def autoencoder_files(tmp_path, n_items: int = 30, users: int = 12, seed: int = 0, activation: str = "Sigmoid"):
    """An exact autoencoder saved to net.nc, its index (item labels 'm<i>'), and an input text
    file of ``users`` users ('u<j>') with 2–6 items each. Returns (paths, rows, labels)."""
    rng = np.random.default_rng(seed)
    labels = [f"m{100 + i}" for i in range(n_items)]
    rows = [sorted(rng.choice(n_items, size=int(rng.integers(2, 7)), replace=False).tolist()) for _ in range(users)]
    net = exact_network(n_items, 5, n_items, activation, seed=seed)
    paths = {"net": tmp_path / "net.nc", "index": tmp_path / "features", "input": tmp_path / "input.txt"}
    save_network(net, paths["net"])
    write_index(paths["index"], labels)
    write_lines(paths["input"], {f"u{j}": [labels[i] for i in r] for j, r in enumerate(rows)})
    return paths, rows, labels, net
