"""How each weight matrix of a network is split over the processes (DSSTNE's rule, §7).

Every layer's units are split by ``shard_bounds`` (rank r holds units [lo, hi) of every layer,
its activations (batch, hi − lo)). A FullyConnected matrix W (n_in × n_out) is split

- by **output** columns when 3·n_out > 2·n_in (the output is "larger"): rank r holds
  W[:, lo_out:hi_out] and b[lo_out:hi_out]; the input is all-gathered and each rank multiplies
  the full input by its columns;
- by **input** rows otherwise: rank r holds W[lo_in:hi_in, :] and b[lo_out:hi_out]; each rank
  multiplies its input units by its rows, a full-width partial sum that is reduce-scattered,
  and the bias is added once, after the reduction.

Either way the work is split evenly and the exchanged activations are the smaller side. A
shared matrix follows its owner's split: a transposed use (a tied autoencoder's decoder, Wᵀ)
takes the conjugate split — the owner split by input rows makes the decoder split by output
columns, the same rows of W — so every rank's slice of the one parameter serves both uses.

One departure from DSSTNE: a matrix that reads a **data** layer (an Input layer: every rank
reads the same examples) is split by output columns whatever its shape. Its input needs no
all-gather, since every rank already holds it, and nothing flows back into data, so the layer
exchanges nothing at all. Split by input rows (DSSTNE: sparse inputs by feature range), it
would reduce-scatter a (batch, n_out) partial sum forward and all-gather its gradient backward
(the seed network on 4 GPUs: two of the step's eight collectives). A data matrix shared with a
transposed use keeps the rule, since its decoder's output is what is wide.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from destiny.parallel.shards import shard_bounds

OUTPUT = "output"  # split by output units: all-gather the input
INPUT = "input"  # split by input units: reduce-scatter the output


def split_rule(n_in: int, n_out: int) -> str:
    """DSSTNE's choice for an n_in × n_out matrix: OUTPUT if 3·n_out > 2·n_in, else INPUT."""
    return OUTPUT if 3 * n_out > 2 * n_in else INPUT


@dataclass(frozen=True)
class MatrixShard:
    """One rank's part of an (n_in, n_out) matrix: rows [r0, r1) × columns [c0, c1), and its
    bias b[c0', c1') = the output layer's units of the rank. ``mode``: OUTPUT or INPUT."""

    mode: str
    n_in: int
    n_out: int
    rows: tuple[int, int]
    cols: tuple[int, int]
    bias: tuple[int, int]

    @property
    def shape(self) -> tuple[int, int]:
        return self.rows[1] - self.rows[0], self.cols[1] - self.cols[0]

    @property
    def axis(self) -> int:
        """The split axis of the (n_in, n_out) matrix: 1 for OUTPUT, 0 for INPUT."""
        return 1 if self.mode == OUTPUT else 0

    @property
    def split(self) -> tuple[int, int]:
        """The bounds along ``axis``."""
        return self.cols if self.mode == OUTPUT else self.rows

    def take(self, full):
        """This rank's slice of the full (n_in, n_out) matrix (numpy or torch)."""
        return full[self.rows[0]:self.rows[1], self.cols[0]:self.cols[1]]


def matrix_shard(mode: str, n_in: int, n_out: int, world_size: int, rank: int) -> MatrixShard:
    out = shard_bounds(n_out, world_size, rank)
    if mode == OUTPUT:
        return MatrixShard(mode, n_in, n_out, (0, n_in), out, out)
    return MatrixShard(mode, n_in, n_out, shard_bounds(n_in, world_size, rank), (0, n_out), out)


def plan_matrices(specs, world_size: int, rank: int, data_layers=frozenset()) -> dict[int, MatrixShard]:
    """By spec index: the split of every FullyConnected matrix (shared ones follow their owner;
    see the module docstring). specs: ``config.shapes.WeightSpec``s in file order;
    data_layers: the names of the Input layers (their matrices are split by output columns)."""
    by_pair = {(s.input_layer, s.output_layer): s for s in specs}
    shared = {s.shared_from for s in specs if s.shared_from}

    def own_mode(spec) -> str:
        if spec.input_layer in data_layers and (spec.input_layer, spec.output_layer) not in shared:
            return OUTPUT
        return split_rule(*spec.shape)

    plan: dict[int, MatrixShard] = {}
    for spec in specs:
        n_in, n_out = spec.shape
        if spec.shared_from and spec.shared_from in by_pair:
            mode = own_mode(by_pair[spec.shared_from])
            if spec.transposed:
                mode = INPUT if mode == OUTPUT else OUTPUT
        else:
            mode = own_mode(spec)
        plan[spec.index] = matrix_shard(mode, n_in, n_out, world_size, rank)
    return plan


def layer_bounds(units: Mapping[str, int], world_size: int, rank: int) -> dict[str, tuple[int, int]]:
    """By layer: this rank's units [lo, hi)."""
    return {name: shard_bounds(n, world_size, rank) for name, n in units.items()}


__all__ = ["INPUT", "OUTPUT", "MatrixShard", "layer_bounds", "matrix_shard", "plan_matrices", "split_rule"]
