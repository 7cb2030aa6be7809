"""The examples to score, from DSSTNE text through a features index or from a NetCDF dataset,
bound to the network's Input layer, with a label for every row.

DSSTNE's predict takes ``-d NAME`` and appends ``_input`` to find the input layer's DataSet;
Destiny accepts both NAME and NAME_input, and needs no ``-d`` when the network has one Input
layer.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass

from destiny.data.dataset import Dataset, SparseDataset
from destiny.errors import DataError, DataWarning, UsageError
from destiny.predict.labels import Index, read_labelled_text, sample_labels


@dataclass
class PredictInput:
    """Datasets by DataSet name (what ``Binding`` takes), the Input layer fed from text (or the
    one ``-d`` names) and its DataSet, every row's label (``samples``: label → row), and the
    input features index when there is one."""

    datasets: dict[str, Dataset]
    layer: str
    dataset_name: str
    labels: list[bytes]
    samples: dict[bytes, int]
    index: Index | None = None
    dropped: int = 0

    @property
    def dataset(self) -> Dataset:
        return self.datasets[self.dataset_name]

    @property
    def n_examples(self) -> int:
        return self.dataset.n_examples


def input_layer(network, dataset: str | None):
    """The Input layer that reads ``dataset`` (or ``dataset``_input, DSSTNE's convention); the
    only Input layer when ``dataset`` is None."""
    layers = network.input_layers()
    names = ", ".join(f"'{layer.dataset}'" for layer in layers)
    if dataset is None:
        if len(layers) == 1:
            return layers[0]
        raise UsageError(f"the network has {len(layers)} Input layers (datasets {names}); name the one to feed with -d")
    for wanted in (dataset, f"{dataset}_input"):
        for layer in layers:
            if layer.dataset == wanted:
                return layer
    raise UsageError(f"-d {dataset}: the network has no Input layer reading dataset '{dataset}' or '{dataset}_input' "
                     f"(DSSTNE appends _input); its Input layers read {names}")


def _single_input(network, layer) -> None:
    if len(network.input_layers()) > 1:
        others = [l.dataset for l in network.input_layers() if l.name != layer.name]
        raise UsageError(f"the network has {len(network.input_layers())} Input layers; a text file feeds only "
                         f"'{layer.dataset}'; give the others ({', '.join(others)}) with --input-nc")


def read_text_input(network, path: str | os.PathLike, index_path: str | os.PathLike, *, dataset: str | None = None,
                    analog: bool = False, drop_unknown: bool = False) -> PredictInput:
    """DSSTNE text samples through the input features index (``-r`` and ``-i``); rows in order
    of first appearance, labelled by the text's sample labels."""
    layer = input_layer(network, dataset)
    _single_input(network, layer)
    units = network.units[layer.name]
    index = Index.read(index_path)
    index.check_units(units, layer.name, "input features")
    data = read_labelled_text(path, index, what="input features", name=layer.dataset, width=units,
                              analog=analog, drop_unknown=drop_unknown)
    rows = data.dataset.n_examples
    return PredictInput({layer.dataset: data.dataset}, layer.name, layer.dataset,
                        sample_labels(data.sample_index, rows), dict(data.sample_index), index, data.dropped)


def read_netcdf_input(network, path: str | os.PathLike, *, dataset: str | None = None,
                      samples_path: str | os.PathLike | None = None,
                      index_path: str | os.PathLike | None = None, stream_budget: int | None = None) -> PredictInput:
    """The Input layers' datasets from a NetCDF file (matched by DataSet name, as DSSTNE does; a
    file holding one dataset feeds a network with one Input layer whatever its name, with a
    warning). Rows are labelled by the samples index when given, else by their number.
    stream_budget: stream the sparse datasets from disk within that many bytes
    (``destiny.data.stream``) instead of reading them into memory."""
    from destiny.data import read_netcdf

    layer = input_layer(network, dataset)
    if stream_budget is not None:
        from destiny.data.stream import open_files

        found = open_files([path], stream_budget)
    else:
        found = {d.name: d for d in read_netcdf(path)}
    datasets: dict[str, Dataset] = {}
    for each in network.input_layers():
        if each.dataset in found:
            datasets[each.dataset] = found[each.dataset]
        elif len(found) == 1 and len(network.input_layers()) == 1:
            (name, only), = found.items()
            warnings.warn(f"{path}: its only dataset '{name}' feeds Input layer '{each.name}' (DataSet "
                          f"'{each.dataset}')", DataWarning, stacklevel=2)
            datasets[each.dataset] = _renamed(only, each.dataset)
        else:
            raise DataError(f"{path}: no dataset named '{each.dataset}' for Input layer '{each.name}'; the file holds "
                            f"{', '.join(repr(n) for n in found)}")
    counts = {d.n_examples for d in datasets.values()}
    if len(counts) > 1:
        raise DataError(f"{path}: the input datasets have different numbers of examples ({sorted(counts)})")
    rows = counts.pop()
    samples: dict[bytes, int] = {}
    if samples_path is not None:
        samples = dict(Index.read(samples_path).by_label)
        labelled = set(samples.values())
        if len(samples) != rows or labelled != set(range(rows)):
            beyond = sorted(r for r in labelled if r >= rows)[:1]
            missing = next((r for r in range(rows) if r not in labelled), None)
            why = (f"row {missing} has none" if missing is not None else f"it labels row {beyond[0]}, past the last")
            raise UsageError(f"--samples {samples_path}: {len(samples):,} labels for the {rows:,} rows of {path} "
                             f"({why}); give the samples index written with this dataset (destiny generate -s)")
    labels = sample_labels(samples, rows)
    samples = {label: row for row, label in enumerate(labels)}
    index = None
    if index_path is not None:
        index = Index.read(index_path)
        index.check_units(network.units[layer.name], layer.name, "input features")
    return PredictInput(datasets, layer.name, layer.dataset, labels, samples, index)


def _renamed(dataset: Dataset, name: str) -> Dataset:
    if isinstance(dataset, SparseDataset):
        return dataset.replace(name=name)
    if hasattr(dataset, "read_rows"):  # streaming: its batches carry the name it is given
        dataset.name = name
        return dataset
    from destiny.data.dataset import DenseDataset

    return DenseDataset(name, dataset.dims, dataset.data, dataset.weights)
