"""ZeroDiagonal layers: item-to-item matrices whose diagonal is held at zero (EASE as a
network, Steck 2019: B with diag(B) = 0, so that no item predicts itself).

How it is held: the diagonal is set to zero when the weights are initialised and again after
every update (``Network.apply_weight_norms``, which the training step calls right after the
optimizer, before WeightNorm), and when training starts (a loaded network). The forward pass
and the gradient are left as they are. Why this and not a mask: on a 57K × 57K matrix
(13 GB of float32) masking the forward or the gradient would touch the matrix, or at least
every gathered row of the sparse input's gradient, each step; writing the 57K diagonal
elements (a strided view, ``Tensor.diagonal``) costs one tiny kernel — 57K scattered 4-byte
writes, ≈2 MB of memory traffic, microseconds — with no host sync and a static shape, so the
step stays capturable in a CUDA graph. It is exact: with every optimizer elementwise (DSSTNE's
seven), the off-diagonal weights follow the same trajectory as with a masked gradient, since
the diagonal weights they never read are zero at every forward pass. (Their optimizer state —
momentum, Adam's moments — still accumulates the diagonal's gradient; it is never used.)

Model parallel: a process holds the block rows [r0, r1) × columns [c0, c1) of the matrix
(``parallel.plan``), whose global diagonal elements (i, i) sit at local (i − r0, i − c0): the
block's diagonal of offset r0 − c0 (empty where the block misses the diagonal).
"""

from __future__ import annotations

import torch

from destiny.config.validate import check_zero_diagonal


def diagonal_plan(network, source: str = "<config>") -> list[tuple[str, int]]:
    """(weight key, diagonal offset in this process's block) of every matrix whose diagonal is
    held at zero: the square, unshared FullyConnected matrices into ZeroDiagonal layers.
    ConfigError (Layers[i].ZeroDiagonal) when such a layer has no source of its width."""
    check_zero_diagonal(network.config, network.dims, source)
    plan = []
    for spec in network.specs:
        if spec.convolutional or spec.shared_from or not network.config.layer(spec.output_layer).zero_diagonal:
            continue
        n_in, n_out = spec.shape
        if n_in != n_out:
            continue
        shard = network.plan.get(spec.index)
        offset = 0 if shard is None else shard.rows[0] - shard.cols[0]
        plan.append((f"w{spec.index}", offset))
    return plan


@torch.no_grad()
def zero_diagonals(network) -> None:
    """Set the held diagonals to zero, in place (one strided write per matrix; capturable)."""
    for key, offset in network.diagonals:
        network.weights[key].diagonal(offset).zero_()
