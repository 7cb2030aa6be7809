"""Image classification data → DSSTNE datasets, as DSSTNE's CIFAR converter writes them
(reference/dsstne.md §3.6, ``samples/cifar-10/dparse.cpp``): a dense dataset ``input`` of
dimensions width × height × channels whose data is (N, C, H, W) — x fastest, then y, then the
channel, the layout a Convolutional layer reads with no transpose — and a sparse indicator
dataset ``output`` of width n_classes holding each example's label.

uint8 pixels stay uint8 (dataType UChar; the engine feeds them as x/256 − 0.5, as DSSTNE's
``kLoadNormalizedInputUnit``); any other numeric pixels are stored as float32 and fed as is.

    input, output = images_to_datasets(x_nhwc, y)          # Python
    destiny generate --from-npz cifar.npz -o cifar.nc      # CLI: keys x and y by default
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from destiny.data.dataset import DenseDataset, SparseDataset
from destiny.errors import DataError

LAYOUTS = ("NHWC", "NCHW")


def images_to_datasets(images, labels=None, *, layout: str = "NHWC", n_classes: int | None = None,
                       input_name: str = "input", output_name: str = "output"):
    """(input DenseDataset, output SparseDataset or None) from images and integer labels.

    images: (N, H, W, C) for layout "NHWC" (numpy, PIL, TensorFlow), (N, C, H, W) for "NCHW"
    (PyTorch), or (N, H, W) grayscale. labels: (N,) integers in [0, n_classes); n_classes
    defaults to the largest label + 1. The input's dims are (W, H, C), DSSTNE's
    (width, height, length).
    """
    x = np.asarray(images)
    if layout not in LAYOUTS:
        raise DataError(f"layout must be one of {', '.join(LAYOUTS)}, not {layout!r}")
    if x.ndim == 3:
        x = x[:, None] if layout == "NCHW" else x[..., None]
    if x.ndim != 4 or 0 in x.shape:
        raise DataError(f"images of shape {x.shape}: give (examples, height, width, channels) for NHWC, "
                        "(examples, channels, height, width) for NCHW, or (examples, height, width)")
    if x.dtype.kind not in "biuf":
        raise DataError(f"images of dtype {x.dtype} are not numbers; give uint8 pixels or floats")
    if layout == "NHWC":
        x = x.transpose(0, 3, 1, 2)
    x = np.ascontiguousarray(x, dtype=np.uint8 if x.dtype in (np.uint8, np.bool_) else np.float32)
    n, c, h, w = x.shape
    inputs = DenseDataset(input_name, (w, h, c), x).validate()
    if labels is None:
        return inputs, None
    return inputs, labels_to_dataset(labels, n_examples=n, n_classes=n_classes, name=output_name)


def labels_to_dataset(labels, *, n_examples: int | None = None, n_classes: int | None = None,
                      name: str = "output") -> SparseDataset:
    """A sparse indicator dataset with one index, the label, per example (the targets of a
    SoftMax output layer)."""
    y = np.asarray(labels)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1 or (y.dtype.kind not in "iub" and not (y.dtype.kind == "f" and np.all(np.mod(y, 1) == 0))):
        raise DataError(f"labels of shape {y.shape} and dtype {y.dtype}: give one integer class per example")
    y = y.astype(np.int64)
    if n_examples is not None and len(y) != n_examples:
        raise DataError(f"{len(y):,} labels for {n_examples:,} images; give one label per image")
    if y.size and y.min() < 0:
        raise DataError(f"label {int(y.min())} is negative; classes are numbered from 0")
    top = int(y.max()) + 1 if y.size else 0
    n_classes = top if n_classes is None else int(n_classes)
    if top > n_classes:
        raise DataError(f"label {top - 1} does not fit {n_classes} classes (0..{n_classes - 1})")
    if n_classes < 1:
        raise DataError("no classes: give at least one label")
    return SparseDataset(name, (n_classes,), np.arange(len(y) + 1, dtype=np.int64), y.astype(np.int32))


@dataclass
class NpzReport:
    """What ``npz_to_netcdf`` wrote."""

    n_examples: int
    dims: tuple[int, ...]
    dtype: str
    n_classes: int | None


def npz_to_netcdf(npz_path: str | os.PathLike, output_path: str | os.PathLike, *, images_key: str = "x",
                  labels_key: str | None = "y", layout: str = "NHWC", n_classes: int | None = None,
                  input_name: str = "input", output_name: str = "output") -> NpzReport:
    """Images (and labels) of a .npz file → one DSSTNE NetCDF file with datasets ``input``
    (and ``output``), written atomically. labels_key None: images only."""
    from destiny.data.netcdf_write import write_netcdf
    from destiny.io.inputs import check_input

    check_input(npz_path)
    with np.load(npz_path, allow_pickle=False) as archive:
        keys = list(archive.files)
        for key in (images_key, labels_key):
            if key is not None and key not in keys:
                raise DataError(f"{npz_path}: no array '{key}'; the file holds {', '.join(keys)} "
                                "(name them with --images-key / --labels-key)")
        images = archive[images_key]
        labels = archive[labels_key] if labels_key is not None else None
    inputs, outputs = images_to_datasets(images, labels, layout=layout, n_classes=n_classes,
                                         input_name=input_name, output_name=output_name)
    write_netcdf(output_path, [inputs] if outputs is None else [inputs, outputs])
    return NpzReport(inputs.n_examples, inputs.dims, str(inputs.data.dtype),
                     None if outputs is None else outputs.n_features)


__all__ = ["NpzReport", "images_to_datasets", "labels_to_dataset", "npz_to_netcdf"]
