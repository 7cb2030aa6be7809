"""``WeightInit.ClosedForm``: a ZeroDiagonal items × items matrix started at the minimum of
its L2 error, in closed form (EASE, Steck 2019; with denoising, EDLAE, Steck 2020).

An Output layer with ``"ZeroDiagonal": true``, a Linear activation, the L2 error and
``"WeightInit": {"ClosedForm": λ}`` reads a sparse Input layer A (n examples × m, as the layer
sees it: ``Normalize`` applied) through an m × m matrix B and predicts its dataset Y (n × m).
When training starts from a fresh network, B is set to the minimum of the expected training
error of that path with the layer's bias at zero,

    E ‖Y − Ã B‖²  +  λ ‖B‖²      subject to diag(B) = 0,

where Ã is A under the network's ``Denoising`` (each value kept with probability 1 − p and,
with ``Rescale``, divided by 1 − p): E[Ã] = s·A and Var(Ã_ij) = v·A_ij², with s = 1 and
v = p/(1 − p) when rescaled, s = 1 − p and v = p(1 − p) when not:

    G = s²·AᵀA + v·diag(AᵀA) + λI,   P = G⁻¹,   B₀ = s·P·AᵀY,
    B = B₀ − P·diag(diag(B₀) / diag(P))      (the Lagrange multipliers of diag(B) = 0).

With A = Y (no Normalize, the same data) and no denoising this is EASE: B = I − P·diag(1/diag(P)).
The bias is held out of the solve (zero) as in EASE: a free bias — the solve on column-centred
data — ranks worse (ml-latest-small, test NDCG@100 .396 against EASE's .406 at the same λ).
The layer's other incoming matrices and biases start at zero, so the network starts as the
closed form's model and training goes on from there (``Trainer`` validates that start as epoch
0 when it validates at all). λ is in the units of the sum over examples of the squared error:
EASE's λ, and n_examples × the L2 ``lam`` of training.

Cost: the Gram matrices AᵀA (and AᵀY) are summed on the host with scipy.sparse (work ∝ the sum
over examples of their nonzeros squared, memory ∝ their nonzeros), then the dense m × m solve
runs on the network's device: a Cholesky factorisation, its inverse and (when A ≠ Y) one
product, in float64 when two m × m float64 matrices fit in half the device's memory, else in
float32 (a rule of the device's size, so a machine always gives the same numbers). Model
parallel: every process solves the whole matrix and keeps its block.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping

import numpy as np
import torch

from destiny.config import LayerKind
from destiny.errors import ConfigError, DataError
from destiny.nn.recipes import STREAM_CHUNK  # examples read at once from a dataset that streams from disk

COLUMN_BLOCK = 4096  # columns of P·AᵀY computed at once (A ≠ Y)


@dataclass(frozen=True)
class Target:
    """One ClosedForm layer: its Output layer, the square matrix's spec from the Input layer,
    the layer's other specs (started at zero), that Input layer and λ."""

    layer: object
    spec: object
    others: tuple
    input_layer: object
    lam: float


def plan(network, source: str = "<config>") -> list[Target]:
    """The ClosedForm layers of ``network``; ConfigError (Layers[i].WeightInit.ClosedForm) when
    the square matrix does not come from a sparse Input layer."""
    targets = []
    for i, layer in enumerate(network.config.layers):
        lam = layer.weight_init.closed_form
        if lam is None:
            continue
        specs = [s for s in network.specs if s.output_layer == layer.name]
        width = network.units[layer.name]
        square = [s for s in specs if not s.shared_from and s.shape == (width, width)]
        inputs = [s for s in square if network.config.layer(s.input_layer).kind == LayerKind.INPUT]
        if not inputs:
            raise ConfigError(f"{source}: Layers[{i}] (layer '{layer.name}').WeightInit.ClosedForm: solves the "
                              f"items × items matrix from a sparse Input layer of this layer's width ({width:,}), "
                              "but no source is one; read the Input layer directly (EASE) or remove 'ClosedForm'")
        spec = inputs[0]
        source_layer = network.config.layer(spec.input_layer)
        if not source_layer.sparse:
            raise ConfigError(f"{source}: Layers[{i}] (layer '{layer.name}').WeightInit.ClosedForm: its source "
                              f"'{source_layer.name}' is a dense Input layer; ClosedForm is for sparse ones")
        targets.append(Target(layer, spec, tuple(s for s in specs if s is not spec), source_layer, float(lam)))
    return targets


# -- the data as scipy CSR ---------------------------------------------------------------------

def _csr(dataset, width: int, what: str):
    """The whole dataset as one float64 scipy CSR matrix (a streamed one read in chunks)."""
    import scipy.sparse as sp

    if hasattr(dataset, "read_rows"):  # data.stream.StreamingSparseDataset
        n = int(dataset.n_examples)
        parts = [_csr(dataset.read_rows(np.arange(lo, min(lo + STREAM_CHUNK, n))), width, what)
                 for lo in range(0, n, STREAM_CHUNK)]
        return sp.vstack(parts, format="csr") if parts else sp.csr_matrix((0, width))
    if not hasattr(dataset, "offsets"):
        raise DataError(f"WeightInit.ClosedForm needs sparse data; {what} is dense")
    offsets = np.asarray(dataset.offsets, np.int64)
    indices = np.asarray(dataset.indices, np.int64)
    values = getattr(dataset, "values", None)
    data = np.ones(len(indices)) if values is None else np.asarray(values, np.float64)
    if indices.size and (indices.min() < 0 or indices.max() >= width):
        raise DataError(f"{what} has feature indices outside [0, {width}); it does not fit a layer of {width:,} units")
    if not np.isfinite(data).all():
        raise DataError(f"{what} holds NaN or infinite values; WeightInit.ClosedForm cannot solve with them")
    return sp.csr_matrix((data, indices, offsets), shape=(len(offsets) - 1, width))


def _normalized(a, how: str | None):
    """Rows scaled as the Input layer's ``Normalize`` scales them (empty rows stay empty)."""
    import scipy.sparse as sp

    if how is None:
        return a
    norms = np.sqrt(np.asarray(a.multiply(a).sum(1)).ravel()) if how == "L2" else \
        np.asarray(abs(a).sum(1)).ravel()
    scale = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
    return sp.diags(scale) @ a


# -- the solve ---------------------------------------------------------------------------------

def solve_dtype(m: int, device: torch.device) -> torch.dtype:
    """float64 when two m × m float64 matrices fit in half the device's memory (the host's RAM
    for the CPU), else float32."""
    if device.type == "cuda":
        total = torch.cuda.get_device_properties(device).total_memory
    else:
        try:
            total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError, AttributeError):
            total = 8 << 30
    return torch.float64 if 2 * m * m * 8 <= total // 2 else torch.float32


def _dense(matrix, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A scipy sparse m × m matrix as a dense tensor on ``device`` (one scatter of its nonzeros)."""
    coo = matrix.tocoo()
    m = matrix.shape[0]
    out = torch.zeros(m, m, dtype=dtype, device=device)
    flat = torch.as_tensor(coo.row.astype(np.int64) * matrix.shape[1] + coo.col, device=device)
    out.view(-1)[flat] = torch.as_tensor(coo.data, dtype=dtype, device=device)
    return out


@torch.no_grad()
def solve(a, y, lam: float, *, p: float = 0.0, rescale: bool = True, device="cpu",
          dtype: torch.dtype | None = None) -> torch.Tensor:
    """B of the module docstring for scipy sparse A (n × m) and Y (n × m, or None: Y = A),
    denoising p (rescaled or not) and λ ≥ 0, on ``device`` in ``dtype`` (None: ``solve_dtype``)."""
    device = torch.device(device)
    m = a.shape[1]
    dtype = dtype or solve_dtype(m, device)
    same = y is None
    s, v = (1.0, p / (1.0 - p)) if rescale else (1.0 - p, p * (1.0 - p))
    ata = (a.T @ a).tocsr()
    diag_ata = ata.diagonal()
    g = _dense(ata, dtype, device)
    del ata
    g.mul_(s * s)
    g.diagonal().add_(torch.as_tensor(v * diag_ata + lam, dtype=dtype, device=device))
    factor, info = torch.linalg.cholesky_ex(g)
    del g
    if int(info) != 0:
        raise DataError(f"WeightInit.ClosedForm: the Gram matrix plus λ = {lam:g} is not positive definite "
                        f"(factorisation stopped at column {int(info)}); use a larger λ")
    pinv = torch.cholesky_inverse(factor)
    del factor
    dp = pinv.diagonal().clone()
    if same:  # B₀ = (I − P·diag(v·diag(AᵀA) + λ))/s, and B = (I − P·diag(1/diag P))/s
        pinv.div_(dp).neg_().div_(s)
        b = pinv
    else:
        c = _dense((a.T @ y).tocsr(), dtype, device).mul_(s)  # s·AᵀY
        for lo in range(0, m, COLUMN_BLOCK):  # B₀ = P·C, a block of columns at a time, into C
            c[:, lo:lo + COLUMN_BLOCK] = pinv @ c[:, lo:lo + COLUMN_BLOCK]
        nu = c.diagonal() / dp
        for lo in range(0, m, COLUMN_BLOCK):  # B = B₀ − P·diag(ν)
            c[:, lo:lo + COLUMN_BLOCK] -= pinv[:, lo:lo + COLUMN_BLOCK] * nu[lo:lo + COLUMN_BLOCK]
        del pinv
        b = c
    b.diagonal().zero_()
    return b


@torch.no_grad()
def init_closed_form(network, datasets: Mapping[str, object], source: str = "<config>") -> list[str]:
    """Set every ClosedForm layer's matrix (``solve``) from ``datasets`` (by DataSet name), its
    biases and other matrices to zero. Returns the layers set."""
    done = []
    for target in plan(network, source):
        layer, spec, inp = target.layer, target.spec, target.input_layer
        for name in (inp.dataset, layer.dataset):
            if name not in datasets:
                raise DataError(f"layer '{layer.name}' starts from a closed form (WeightInit.ClosedForm) on "
                                f"dataset '{name}', which is not among the datasets given "
                                f"({', '.join(sorted(datasets)) or 'none'})")
        width = network.units[layer.name]
        a = _normalized(_csr(datasets[inp.dataset], width, f"dataset '{inp.dataset}'"), inp.normalize)
        y = None
        if inp.normalize is not None or datasets[layer.dataset] is not datasets[inp.dataset]:
            y = _csr(datasets[layer.dataset], width, f"dataset '{layer.dataset}'")
            if y.shape[0] != a.shape[0]:
                raise DataError(f"datasets '{inp.dataset}' and '{layer.dataset}' have {a.shape[0]:,} and "
                                f"{y.shape[0]:,} examples; the closed form pairs them example by example")
            if inp.normalize is None and (a != y).nnz == 0:
                y = None
        denoising = network.config.denoising
        w = network.weights[f"w{spec.index}"]
        matrix = solve(a, y, target.lam, p=denoising.p if inp.sparse else 0.0, rescale=denoising.rescale,
                       device=w.device)
        shard = network.plan.get(spec.index)
        if shard is not None and network.world.parallel:
            matrix = matrix[shard.rows[0]:shard.rows[1], shard.cols[0]:shard.cols[1]]
        w.copy_(matrix)
        del matrix
        network.bias(spec).zero_()
        for other in target.others:
            if not other.shared_from:
                network.weights[f"w{other.index}"].zero_()
            network.bias(other).zero_()
        done.append(layer.name)
    return done


__all__ = ["init_closed_form", "plan", "solve", "solve_dtype"]
