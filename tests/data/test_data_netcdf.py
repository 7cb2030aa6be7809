"""DSSTNE NetCDF dataset files: files built here with netCDF4 straight from the fact sheet
(reference/dsstne.md §3), independently of Destiny's writer, are read exactly; files Destiny
writes pass the same layout checks and read back unchanged."""

from __future__ import annotations

import numpy as np
import pytest

netCDF4 = pytest.importorskip("netCDF4")

from destiny.data import (  # noqa: E402
    DenseDataset, SparseDataset, inspect_netcdf, read_dataset, read_netcdf, write_netcdf,
)
from destiny.errors import DataError, DataWarning  # noqa: E402

# -- the datasets the hand-built files hold ------------------------------------------------
INDICATOR_ROWS = [[0, 5, 2], [], [127, 1], [64]]  # generateNetCDF: width 10 features → 128
ANALOG_ROWS = [[(3, 0.5), (11, -2.0)], [(0, 1e-3)], [(7, 4.0), (2, 3.0), (5, 1.5)]]  # 4 × 3 (12 features)
ANALOG_WEIGHTS = [1.0, 0.5, 2.0]
IMAGES = np.arange(2 * 2 * 3 * 4, dtype=np.uint8).reshape(2, 2, 3, 4) * 3  # (N, C=length, H, W)


def _csr(rows):
    offsets = np.cumsum([0] + [len(r) for r in rows])
    return offsets, [e for r in rows for e in r]


def _var(nc, name, dtype, dim, values):
    var = nc.createVariable(name, dtype, (dim,))
    var[:] = np.asarray(values, dtype=dtype)


def build_tools_file(path):
    """What DSSTNE's tools write: generateNetCDF (n=0), a Weighted analog set with uint64
    start/end and rows stored out of order (n=1), and dparse.cpp's CIFAR images (n=2)."""
    with netCDF4.Dataset(path, "w", format="NETCDF4") as nc:
        nc.setncattr("datasets", np.uint32(3))
        # n=0 exactly as writeNetCDFFile: Sparse|Boolean, UInt, width rounded up to 128
        offsets, indices = _csr(INDICATOR_ROWS)
        for key, value in (("name0", "input"), ("attributes0", np.uint32(3)), ("kind0", np.uint32(0)),
                           ("dataType0", np.uint32(0)), ("dimensions0", np.uint32(1)), ("width0", np.uint32(128))):
            nc.setncattr(key, value)
        nc.createDimension("examplesDim0", len(INDICATOR_ROWS))
        nc.createDimension("sparseDataDim0", len(indices))
        _var(nc, "sparseStart0", "u4", "examplesDim0", offsets[:-1])
        _var(nc, "sparseEnd0", "u4", "examplesDim0", offsets[1:])
        _var(nc, "sparseIndex0", "u4", "sparseDataDim0", indices)
        # n=1: Sparse|Weighted Float over 4 × 3; rows stored last-first with an unused gap entry
        for key, value in (("name1", "ratings"), ("attributes1", np.uint32(1 | 128)), ("kind1", np.uint32(0)),
                           ("dataType1", np.uint32(4)), ("dimensions1", np.uint32(2)), ("width1", np.uint32(4)),
                           ("height1", np.uint32(3))):
            nc.setncattr(key, value)
        stored = [ANALOG_ROWS[2], [(9, 99.0)], ANALOG_ROWS[1], ANALOG_ROWS[0]]  # [(9, 99)] belongs to no row
        stored_offsets, entries = _csr(stored)
        starts = [stored_offsets[3], stored_offsets[2], stored_offsets[0]]
        ends = [stored_offsets[4], stored_offsets[3], stored_offsets[1]]
        nc.createDimension("examplesDim1", 3)
        nc.createDimension("sparseDataDim1", len(entries))
        _var(nc, "sparseStart1", "u8", "examplesDim1", starts)
        _var(nc, "sparseEnd1", "u8", "examplesDim1", ends)
        _var(nc, "sparseIndex1", "u4", "sparseDataDim1", [i for i, _ in entries])
        _var(nc, "sparseData1", "f4", "sparseDataDim1", [v for _, v in entries])
        _var(nc, "dataWeight1", "f4", "examplesDim1", ANALOG_WEIGHTS)
        # n=2 as dparse.cpp: dense UChar image, kind Image, 3 dimensions, x fastest then y then z
        for key, value in (("name2", "images"), ("attributes2", np.uint32(0)), ("kind2", np.uint32(1)),
                           ("dataType2", np.uint32(8)), ("dimensions2", np.uint32(3)), ("width2", np.uint32(4)),
                           ("height2", np.uint32(3)), ("length2", np.uint32(2))):
            nc.setncattr(key, value)
        nc.createDimension("examplesDim2", len(IMAGES))
        nc.createDimension("dataDim2", IMAGES.size)
        _var(nc, "data2", "u1", "dataDim2", IMAGES.reshape(-1))


def build_engine_file(path):
    """What DSSTNE's engine writer (NNDataSet::WriteNetCDF) leaves: `datatype` in lower case,
    uint64 sparseIndex, uniqueExamplesDim; plus an Indexed dataset and dense compressed one-hot."""
    with netCDF4.Dataset(path, "w", format="NETCDF4") as nc:
        nc.setncattr("datasets", np.uint32(2))
        for key, value in (("name0", "input"), ("attributes0", np.uint32(1 | 32 | 64)), ("kind0", np.uint32(0)),
                           ("datatype0", np.uint32(4)), ("dimensions0", np.uint32(1)), ("width0", np.uint32(6))):
            nc.setncattr(key, value)
        unique_rows = [[(1, 2.0), (4, 1.0)], [(0, 5.0)]]
        offsets, entries = _csr(unique_rows)
        nc.createDimension("examplesDim0", 3)
        nc.createDimension("uniqueExamplesDim0", 2)
        nc.createDimension("sparseDataDim0", len(entries))
        _var(nc, "sparseStart0", "u4", "uniqueExamplesDim0", offsets[:-1])
        _var(nc, "sparseEnd0", "u4", "uniqueExamplesDim0", offsets[1:])
        _var(nc, "sparseIndex0", "u8", "sparseDataDim0", [i for i, _ in entries])
        _var(nc, "sparseData0", "f4", "sparseDataDim0", [v for _, v in entries])
        _var(nc, "index0", "u4", "examplesDim0", [1, 0, 1])
        for key, value in (("name1", "labels"), ("attributes1", np.uint32(2)), ("kind1", np.uint32(0)),
                           ("dataType1", np.uint32(0)), ("dimensions1", np.uint32(1)), ("width1", np.uint32(3))):
            nc.setncattr(key, value)
        nc.createDimension("examplesDim1", 2)
        nc.createDimension("dataDim1", 2)
        _var(nc, "data1", "u4", "dataDim1", [2, 0])


def check_dsstne_layout(path):
    """What DSSTNE's LoadNetCDF needs (§3.1–3.7), checked with netCDF4 alone."""
    with netCDF4.Dataset(path) as nc:
        nc.set_auto_maskandscale(False)
        attrs = {k: nc.getncattr(k) for k in nc.ncattrs()}
        assert np.asarray(attrs["datasets"]).dtype == np.uint32
        for n in range(int(attrs["datasets"])):
            assert isinstance(attrs[f"name{n}"], str) and attrs[f"name{n}"]
            for key in ("attributes", "kind", "dataType", "dimensions", "width"):
                assert np.asarray(attrs[f"{key}{n}"]).dtype == np.uint32, key  # `uint`, camelCase dataType
            assert f"datatype{n}" not in attrs
            flags, dims = int(attrs[f"attributes{n}"]), int(attrs[f"dimensions{n}"])
            assert 1 <= dims <= 3
            size = [int(attrs[f"{k}{n}"]) for k in ("width", "height", "length")[:dims]]
            assert min(size) > 0
            examples = len(nc.dimensions[f"examplesDim{n}"])
            assert examples > 0
            data_type = int(attrs[f"dataType{n}"])
            assert data_type in (0, 1, 4, 5, 8, 9)  # the types LoadNetCDF instantiates
            numpy_type = {0: "u4", 1: "i4", 4: "f4", 5: "f8", 8: "u1", 9: "i1"}[data_type]
            if flags & 1:
                start, end = nc[f"sparseStart{n}"], nc[f"sparseEnd{n}"]
                assert start.dtype in (np.uint32, np.uint64) and start.shape == end.shape == (examples,)
                index = nc[f"sparseIndex{n}"]
                assert index.dtype == np.uint32 and index.dimensions == (f"sparseDataDim{n}",)
                assert int(np.max(index[:])) < int(np.prod(size))
                assert np.all(start[:] <= end[:]) and int(np.max(end[:])) <= index.shape[0]
                if flags & 2:
                    assert f"sparseData{n}" not in nc.variables and data_type == 0
                else:
                    assert nc[f"sparseData{n}"].dtype == np.dtype(numpy_type)
            else:
                assert nc[f"data{n}"].dtype == np.dtype(numpy_type)
                assert nc[f"data{n}"].shape == (examples * int(np.prod(size)),)
            if flags & 128:
                assert nc[f"dataWeight{n}"].dtype == np.float32 and nc[f"dataWeight{n}"].shape == (examples,)


def assert_rows(dataset, rows, analog):
    assert dataset.n_examples == len(rows)
    for i, row in enumerate(rows):
        indices, values = dataset.row(i)
        if analog:
            assert indices.tolist() == [f for f, _ in row]
            np.testing.assert_array_equal(values, np.float32([v for _, v in row]))
        else:
            assert indices.tolist() == row


def test_reads_dsstne_tools_file_exactly(tmp_path):
    path = tmp_path / "tools.nc"
    build_tools_file(path)
    check_dsstne_layout(path)
    indicator, analog, images = read_netcdf(path)
    assert (indicator.name, indicator.dims, indicator.is_indicator) == ("input", (128,), True)
    assert indicator.indices.dtype == np.int32 and indicator.offsets.dtype == np.int64
    assert_rows(indicator, INDICATOR_ROWS, analog=False)
    assert (analog.name, analog.dims, analog.n_features, analog.nnz) == ("ratings", (4, 3), 12, 6)
    assert_rows(analog, ANALOG_ROWS, analog=True)
    assert analog.values.dtype == np.float32
    np.testing.assert_array_equal(analog.weights, np.float32(ANALOG_WEIGHTS))
    assert isinstance(images, DenseDataset) and images.dims == (4, 3, 2)
    assert images.data.dtype == np.uint8 and images.data.shape == (2, 2, 3, 4)
    np.testing.assert_array_equal(images.data, IMAGES)


def test_reads_dsstne_engine_quirks(tmp_path):
    path = tmp_path / "engine.nc"
    build_engine_file(path)
    indexed, one_hot = read_netcdf(path)
    assert indexed.ignore_zero and indexed.n_examples == 3
    assert_rows(indexed, [[(0, 5.0)], [(1, 2.0), (4, 1.0)], [(0, 5.0)]], analog=True)
    assert isinstance(one_hot, DenseDataset)
    np.testing.assert_array_equal(one_hot.data, [[0, 0, 1], [1, 0, 0]])


def test_destiny_writes_what_dsstne_reads_and_reads_it_back(tmp_path):
    build_tools_file(tmp_path / "tools.nc")
    datasets = read_netcdf(tmp_path / "tools.nc")
    write_netcdf(tmp_path / "copy.nc", datasets)
    check_dsstne_layout(tmp_path / "copy.nc")
    again = read_netcdf(tmp_path / "copy.nc")
    for before, after in zip(datasets, again):
        assert type(before) is type(after) and before.name == after.name and before.dims == after.dims
        if isinstance(before, SparseDataset):
            np.testing.assert_array_equal(before.offsets, after.offsets)
            np.testing.assert_array_equal(before.indices, after.indices)
            for a, b in ((before.values, after.values), (before.weights, after.weights)):
                assert (a is None) == (b is None)
                if a is not None:
                    assert a.dtype == b.dtype
                    np.testing.assert_array_equal(a, b)
        else:
            np.testing.assert_array_equal(before.data, after.data)


def test_written_layout_is_generatenetcdfs(tmp_path):
    dataset = SparseDataset("input", (256,), [0, 2, 3], [3, 200, 7])
    write_netcdf(tmp_path / "g.nc", dataset)
    with netCDF4.Dataset(tmp_path / "g.nc") as nc:
        assert {k: int(nc.getncattr(k)) for k in nc.ncattrs() if k not in ("name0", "destiny_checksums")} == dict(
            datasets=1, attributes0=3, kind0=0, dataType0=0, dimensions0=1, width0=256)
        assert nc.getncattr("name0") == "input"
        assert nc.getncattr("destiny_checksums").startswith('{"algorithm":"crc32"')  # ignored by DSSTNE
        assert sorted(nc.variables) == ["sparseEnd0", "sparseIndex0", "sparseStart0"]
        assert sorted(nc.dimensions) == ["examplesDim0", "sparseDataDim0"]
        assert nc.data_model == "NETCDF4"


@pytest.mark.parametrize("values, code, dtype", [
    (np.float32([0.5, 2.0, 3.0]), 4, np.float32),
    (np.float64([0.1, 2.0, 3.0]), 5, np.float64),  # 0.1 is not exact in float32
    (np.int64([1112486027, 5, 7]), 1, np.int32),  # timestamps: exact as Int
    (np.int64([2**40 + 1, 5, 7]), 5, np.int64),  # beyond int32: Double (exact to 2^53)
])
def test_values_keep_their_exact_type(tmp_path, values, code, dtype):
    dataset = SparseDataset("v", (10,), [0, 1, 3], [1, 2, 3], values)
    write_netcdf(tmp_path / "v.nc", dataset)
    with netCDF4.Dataset(tmp_path / "v.nc") as nc:
        assert int(nc.getncattr("dataType0")) == code and int(nc.getncattr("attributes0")) == 1
    back = read_dataset(tmp_path / "v.nc", "v")
    assert back.values.dtype == dtype
    np.testing.assert_array_equal(back.values, values)


def test_inspect_reads_only_the_header(tmp_path):
    build_tools_file(tmp_path / "tools.nc")
    infos = inspect_netcdf(tmp_path / "tools.nc")
    assert [(i.name, i.dims, i.n_examples, i.nnz, i.sparse) for i in infos] == [
        ("input", (128,), 4, 6, True), ("ratings", (4, 3), 3, 7, True), ("images", (4, 3, 2), 2, None, False)]


def test_read_dataset_by_name(tmp_path):
    build_tools_file(tmp_path / "tools.nc")
    assert read_dataset(tmp_path / "tools.nc", "ratings").dims == (4, 3)
    with pytest.raises(DataError, match=r"no dataset named 'output'; the file holds 'input', 'ratings', 'images'"):
        read_dataset(tmp_path / "tools.nc", "output")


def test_duplicates_merge_with_a_warning_or_fail(tmp_path):
    dataset = SparseDataset("d", (8,), [0, 4, 5], [1, 3, 1, 1, 2], np.float32([1, 2, 3, 4, 5]))
    write_netcdf(tmp_path / "d.nc", dataset)
    with pytest.warns(DataWarning, match="merged 2 repeated features"):
        merged = read_dataset(tmp_path / "d.nc", "d")
    assert merged.offsets.tolist() == [0, 2, 3] and merged.indices.tolist() == [1, 3, 2]
    assert merged.values.tolist() == [8.0, 2.0, 5.0]  # 1 + 3 + 4 into the first place of feature 1
    with pytest.raises(DataError, match=r"d\.nc: dataset 'd': example 0 lists feature 1 more than once"):
        read_dataset(tmp_path / "d.nc", "d", duplicates="error")


def test_offsets_beyond_uint32_use_uint64(tmp_path):
    from destiny.data.netcdf_write import _offset_dtype

    assert _offset_dtype((1 << 32) - 1) == np.uint32 and _offset_dtype(1 << 32) == np.uint64
    write_netcdf(tmp_path / "s.nc", SparseDataset("small", (4,), [0, 1, 2], [0, 3]))
    with netCDF4.Dataset(tmp_path / "s.nc") as nc:
        assert nc["sparseStart0"].dtype == nc["sparseEnd0"].dtype == np.uint32


def test_write_refuses_what_dsstne_cannot_load(tmp_path, assert_only):
    empty = SparseDataset("e", (4,), [0, 0], [])
    with pytest.raises(DataError, match="dataset 'e' is empty"):
        write_netcdf(tmp_path / "e.nc", empty)
    a = SparseDataset("x", (4,), [0, 1], [2])
    with pytest.raises(DataError, match="names must be non-empty and distinct; 'x'"):
        write_netcdf(tmp_path / "x.nc", [a, a])
    nan = SparseDataset("n", (4,), [0, 1], [2], np.float32([np.nan]))
    with pytest.raises(DataError, match="example 0 has value nan for feature 2; values must be finite"):
        write_netcdf(tmp_path / "n.nc", nan)
    assert_only(tmp_path)
