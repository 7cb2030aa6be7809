"""DSSTNE's ``generateNetCDF``: DSSTNE text + feature and sample indices → a NetCDF dataset.

Same behaviour as reference/dsstne.md §6.1, with these differences, each deliberate:

* Width is the feature count rounded up to a multiple of 128, as DSSTNE writes it, unless
  ``exact_width``; the true count is the size of the features index.
* Analog values keep their exact type (see ``exact_values``: MovieLens timestamps become NetCDF
  Int, not rounded floats); ``value_type="float32"`` rounds as DSSTNE does.
* Rows follow the samples index (row i = sample i) so that files sharing a samples index line
  up; new labels take index max + 1, so an index with gaps never hands out a used number.
* A bad line is a DataError with file and line, and then nothing is written. The NetCDF file
  and the changed index files are committed as a set (``io.atomic.staged``): an error or an
  interrupt (Ctrl-C) before all are written leaves every one as it was.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass

import numpy as np

from destiny.data.index import read_index_raw, write_index
from destiny.data.layout import round_up_128
from destiny.data.netcdf_write import write_netcdf
from destiny.data.text import read_text
from destiny.errors import DataError, DataWarning
from destiny.io.atomic import staged

FEATURE_MODES = ("fixed", "create", "merge")


@dataclass
class GenerateReport:
    """What ``generate_netcdf`` read and wrote."""

    n_examples: int  # rows: one for each number of the samples index (samples absent from the text: empty)
    nnz: int
    n_features: int  # features in the index: the true width
    width: int  # as written
    value_dtype: str | None  # None for indicator data
    features_added: int
    samples_added: int
    dropped: int
    repeated_samples: int
    wrote_features: bool
    wrote_samples: bool
    samples_read: int = 0  # distinct samples in the text
    features_read: int = 0  # distinct features of the index in the text


def generate_netcdf(input_path: str | os.PathLike, output_path: str | os.PathLike, name: str,
                    features_path: str | os.PathLike, samples_path: str | os.PathLike, *,
                    features: str = "fixed", analog: bool = False, exact_width: bool = False,
                    value_type: str = "auto") -> GenerateReport:
    """Convert DSSTNE text (a file or a directory of files) into a one-dataset NetCDF file.

    ``features``: "create" a new features index from the input (``-c``), "merge" new features
    into the existing one (``-m``), or "fixed": the index must exist and datapoints of unknown
    features are dropped with a DataWarning. The samples index is read if it exists, else
    created; each index file is rewritten only if it changed.
    """
    if features not in FEATURE_MODES:
        raise ValueError(f"features must be one of {FEATURE_MODES}, not {features!r}")
    feature_index: dict[bytes, int] = {}
    if features != "create":
        if os.path.exists(features_path):
            feature_index = read_index_raw(features_path)
        elif features == "fixed":
            raise DataError(f"{features_path}: features index not found; pass -c to create it from the input "
                            "or -m to create or extend it")
    samples_exist = os.path.exists(samples_path)
    sample_index = read_index_raw(samples_path) if samples_exist else {}
    data = read_text(input_path, name=name, analog=analog, features=feature_index, samples=sample_index,
                     add_features=features != "fixed", value_type=value_type)
    if data.dropped:
        warnings.warn(f"{input_path}: dropped {data.dropped:,} datapoints whose features are not in {features_path} "
                      "(pass -m to add them)", DataWarning, stacklevel=2)
    n_features = data.dataset.n_features
    if data.dataset.nnz == 0:
        raise DataError(f"{input_path}: no datapoints left to write"
                        + (" (every feature was unknown to the fixed index)" if data.dropped else ""))
    width = n_features if exact_width else round_up_128(n_features)
    dataset = data.dataset.replace(dims=(width,))
    wrote_features = features == "create" or data.features_added > 0
    wrote_samples = not samples_exist or data.samples_added > 0
    with staged() as stage:
        write_netcdf(output_path, dataset, stage=stage)
        if wrote_features:
            write_index(features_path, data.feature_index, stage=stage)
        if wrote_samples:
            write_index(samples_path, data.sample_index, stage=stage)
    return GenerateReport(dataset.n_examples, dataset.nnz, n_features, width,
                          None if dataset.values is None else str(dataset.values.dtype),
                          data.features_added, data.samples_added, data.dropped, data.repeated_samples,
                          wrote_features, wrote_samples, data.samples_read,
                          int(np.count_nonzero(np.bincount(dataset.indices, minlength=n_features))))
