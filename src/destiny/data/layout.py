"""DSSTNE's dataset file vocabulary (reference/dsstne.md §3): attribute bits, data type codes,
and the names of the per-dataset attributes, dimensions and variables."""

from __future__ import annotations

import enum

import numpy as np


class Attribute(enum.IntFlag):
    """``attributes<n>`` bitmask (DSSTNE ``NNDataSetEnums::Attributes``)."""

    NONE = 0
    SPARSE = 1
    BOOLEAN = 2
    COMPRESSED = 4  # reserved by DSSTNE, unused
    RECURRENT = 8  # reserved, unused
    MUTABLE = 16  # reserved, unused
    SPARSE_IGNORE_ZERO = 32
    INDEXED = 64
    WEIGHTED = 128


KNOWN_ATTRIBUTES = Attribute.SPARSE | Attribute.BOOLEAN | Attribute.SPARSE_IGNORE_ZERO | Attribute.INDEXED \
    | Attribute.WEIGHTED | Attribute.COMPRESSED | Attribute.RECURRENT | Attribute.MUTABLE


class DataType(enum.IntEnum):
    """``dataType<n>`` codes (DSSTNE ``NNDataSetEnums::DataType``)."""

    UINT = 0
    INT = 1
    LLINT = 2
    ULLINT = 3
    FLOAT = 4
    DOUBLE = 5
    RGB8 = 6
    RGB16 = 7
    UCHAR = 8
    CHAR = 9

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(_NUMPY[self])


_NUMPY = {
    DataType.UINT: np.uint32, DataType.INT: np.int32, DataType.LLINT: np.int64, DataType.ULLINT: np.uint64,
    DataType.FLOAT: np.float32, DataType.DOUBLE: np.float64, DataType.RGB8: np.uint8, DataType.RGB16: np.uint16,
    DataType.UCHAR: np.uint8, DataType.CHAR: np.int8,
}

# numpy dtype → the DSSTNE code Destiny writes for it (int64 is written as Double when exact:
# DSSTNE aborts on LLInt files).
DATA_TYPE_OF = {
    np.dtype(np.uint32): DataType.UINT, np.dtype(np.int32): DataType.INT, np.dtype(np.int64): DataType.LLINT,
    np.dtype(np.uint64): DataType.ULLINT, np.dtype(np.float32): DataType.FLOAT, np.dtype(np.float64): DataType.DOUBLE,
    np.dtype(np.uint8): DataType.UCHAR, np.dtype(np.int8): DataType.CHAR, np.dtype(np.uint16): DataType.RGB16,
}


class Kind(enum.IntEnum):
    """``kind<n>``: written by DSSTNE, never read by it."""

    NUMERIC = 0
    IMAGE = 1
    AUDIO = 2


def round_up_128(n: int) -> int:
    """generateNetCDF's ``roundUpMaxIndex``: the width it writes for n features."""
    return ((n + 127) >> 7) << 7


class Names:
    """Attribute, dimension and variable names of dataset ``n`` in a DSSTNE file."""

    DATASETS = "datasets"

    def __init__(self, n: int):
        self.n = n
        for field in ("name", "attributes", "kind", "dataType", "dimensions", "width", "height", "length",
                      "examplesDim", "uniqueExamplesDim", "sparseDataDim", "dataDim", "sparseStart", "sparseEnd",
                      "sparseIndex", "sparseData", "data", "dataWeight", "index"):
            setattr(self, field, f"{field}{n}")
        self.datatype_quirk = f"datatype{n}"  # how DSSTNE's engine writer misspells dataType<n>
