"""What a data tensor of an ONNX graph is, once mapped: a layer's values seen through reshapes
and transposes (``Out``), a weighted sum that has not met its activation yet (``Pending``), or
several layers' values side by side (``Cat``, a Concat feeding a product)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from destiny.importer.layers import Layer, Term
from destiny.io.network_file import BatchNormArrays


@dataclass(eq=False)
class Out:
    """A layer's values as a graph tensor of ``shape`` (batch axis left out).

    index: for each element of the tensor, its position among the layer's values in DSSTNE's
    order (x fastest, then y, then channels: the row-major order of (channels, y, x)); None
    when the tensor holds them in that order (any reshape of them). ``value`` names the tensor
    the layer was finalised as: only through it can its activation still be set."""

    layer: Layer
    shape: tuple[int, ...]
    index: np.ndarray | None = None
    value: str | None = None

    @property
    def units(self) -> int:
        return math.prod(self.shape)

    def canonical(self) -> bool:
        """Whether the tensor is the layer's values in the layout layers read: (channels, [z,] [y,] x)."""
        return self.index is None and self.shape == tuple(reversed(self.layer.dims))

    def reshaped(self, shape: tuple[int, ...]) -> "Out":
        index = None if self.index is None else self.index.reshape(shape)
        return Out(self.layer, tuple(shape), index)

    def transposed(self, perm: list[int]) -> "Out":
        index = np.arange(self.units).reshape(self.shape) if self.index is None else self.index
        index = np.ascontiguousarray(index.transpose(perm))
        shape = tuple(self.shape[p] for p in perm)
        if np.array_equal(index.reshape(-1), np.arange(self.units)):
            index = None
        return Out(self.layer, shape, index)


@dataclass(eq=False)
class Pending:
    """A FullyConnected or Convolutional layer's weighted sum, its activation still to come."""

    type: str  # FullyConnected or Convolutional
    terms: list[Term]
    shape: tuple[int, ...]  # (units,) or (channels, [z,] [y,] x)
    node: object  # the first product's node: names the layer
    kernel: tuple[int, ...] | None = None
    stride: tuple[int, ...] | None = None
    skips: list[Layer] = field(default_factory=list)
    batch_norm: BatchNormArrays | None = None

    @property
    def dims(self) -> tuple[int, ...]:
        return tuple(reversed(self.shape))

    @property
    def units(self) -> int:
        return math.prod(self.shape)

    @property
    def channels(self) -> int:
        return self.shape[0]


@dataclass(eq=False)
class Cat:
    """Layers' values joined along the features (a Concat): a product reading it is one matrix
    per part, each a block of the product's rows."""

    parts: list[Out]


def rows_in_order(w: np.ndarray, part: Out) -> np.ndarray:
    """The rows of a matrix that reads ``part`` (one row per element of the tensor, in its
    order), reordered to the layer's own order (the row of value i at position i)."""
    if part.index is None:
        return w
    rows = np.empty_like(w)
    rows[part.index.reshape(-1)] = w
    return rows


__all__ = ["Cat", "Out", "Pending", "rows_in_order"]
