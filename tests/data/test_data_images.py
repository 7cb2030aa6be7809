"""Images and labels → DSSTNE's CIFAR layout (dense UChar 'input' W × H × C, data N × C × H × W;
sparse indicator 'output'), from Python and from ``destiny generate --from-npz``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from destiny.cli.main import main
from destiny.data import images_to_datasets, inspect_netcdf, labels_to_dataset, read_netcdf, write_netcdf
from destiny.errors import DataError


def nhwc(n=4, h=3, w=5, c=2, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(n, h, w, c), dtype=np.uint8)


def test_nhwc_images_become_dsstnes_width_height_channels_layout():
    x = nhwc()
    inputs, outputs = images_to_datasets(x, [3, 0, 9, 1], n_classes=10)
    assert inputs.name == "input" and inputs.dims == (5, 3, 2) and inputs.data.dtype == np.uint8
    assert inputs.data.shape == (4, 2, 3, 5)
    # DSSTNE's order: x fastest, then y, then the channel
    flat = inputs.data.reshape(4, -1)
    n, yy, xx, c = 2, 1, 4, 1
    assert flat[n, xx + 5 * yy + 15 * c] == x[n, yy, xx, c]
    assert outputs.name == "output" and outputs.dims == (10,) and outputs.is_indicator
    assert outputs.offsets.tolist() == [0, 1, 2, 3, 4] and outputs.indices.tolist() == [3, 0, 9, 1]


def test_nchw_grayscale_and_float_images():
    x = nhwc()
    a, _ = images_to_datasets(x, layout="NHWC")
    b, _ = images_to_datasets(x.transpose(0, 3, 1, 2), layout="NCHW")
    np.testing.assert_array_equal(a.data, b.data)
    gray, labels = images_to_datasets(np.ones((2, 8, 8)) * 0.5, np.array([1.0, 0.0]))
    assert gray.dims == (8, 8, 1) and gray.data.dtype == np.float32 and labels.dims == (2,)


def test_netcdf_round_trip_is_dsstnes_cifar_file(tmp_path):
    inputs, outputs = images_to_datasets(nhwc(), [3, 0, 9, 1], n_classes=10)
    path = tmp_path / "cifar.nc"
    write_netcdf(path, [inputs, outputs])
    import netCDF4

    with netCDF4.Dataset(path) as nc:
        attrs = {k: nc.getncattr(k) for k in nc.ncattrs()}
        assert (attrs["name0"], attrs["attributes0"], attrs["kind0"], attrs["dataType0"]) == ("input", 0, 1, 8)
        assert (attrs["dimensions0"], attrs["width0"], attrs["height0"], attrs["length0"]) == (3, 5, 3, 2)
        assert nc.variables["data0"].dtype == np.uint8 and nc.dimensions["dataDim0"].size == 4 * 30
        assert (attrs["name1"], attrs["attributes1"], attrs["dataType1"], attrs["width1"]) == ("output", 3, 0, 10)
    back_in, back_out = read_netcdf(path)
    np.testing.assert_array_equal(back_in.data, inputs.data)
    assert back_out.indices.tolist() == [3, 0, 9, 1]
    assert [d.name for d in inspect_netcdf(path)] == ["input", "output"]


def test_an_image_dataset_feeds_a_convolution_without_transposes():
    from destiny.train.binding import DenseRows

    x = nhwc(n=3, h=4, w=6, c=2)
    inputs, _ = images_to_datasets(x)
    rows = DenseRows(inputs, torch.device("cpu"), torch.float64).take(torch.arange(3))
    expected = torch.from_numpy(x).double().permute(0, 3, 1, 2) / 256 - 0.5  # DSSTNE's UChar scaling
    torch.testing.assert_close(rows.view(3, 2, 4, 6), expected)


def test_generate_from_npz(tmp_path, capsys):
    x = nhwc(n=6)
    y = np.array([0, 1, 2, 1, 0, 2], dtype=np.uint8)
    np.savez(tmp_path / "imgs.npz", pixels=x, target=y)
    out = tmp_path / "imgs.nc"
    assert main(["generate", "--from-npz", str(tmp_path / "imgs.npz"), "--images-key", "pixels",
                 "--labels-key", "target", "-o", str(out)]) == 0
    assert "6 images of 5×3×2" in capsys.readouterr().out
    inputs, outputs = read_netcdf(out)
    np.testing.assert_array_equal(inputs.data, x.transpose(0, 3, 1, 2))
    assert outputs.dims == (3,) and outputs.indices.tolist() == y.tolist()


@pytest.mark.parametrize("argv,message", [
    (["--images-key", "nope"], "no array 'nope'; the file holds x, y"),
    (["-d", "input"], "--from-npz writes datasets 'input' and 'output' from arrays; leave out -d"),
    (["--classes", "2"], "label 2 does not fit 2 classes"),
])
def test_generate_from_npz_errors(tmp_path, capsys, argv, message):
    np.savez(tmp_path / "a.npz", x=nhwc(n=3), y=np.array([0, 1, 2]))
    assert main(["generate", "--from-npz", str(tmp_path / "a.npz"), "-o", str(tmp_path / "a.nc"), *argv]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "a.nc").exists()


def test_generate_text_still_needs_its_flags(tmp_path, capsys):
    assert main(["generate", "-o", str(tmp_path / "a.nc"), "-i", "x.txt"]) == 2
    assert "text data needs -d, -f, -s" in capsys.readouterr().err


@pytest.mark.parametrize("labels,message", [
    ([0, -1], "label -1 is negative"), ([0.5, 1], "give one integer class per example"),
    ([[0, 1], [1, 0]], "give one integer class per example")])
def test_bad_labels(labels, message):
    with pytest.raises(DataError, match=message):
        labels_to_dataset(labels)


def test_bad_images():
    with pytest.raises(DataError, match="give \\(examples, height, width, channels\\)"):
        images_to_datasets(np.zeros((3, 4)))
    with pytest.raises(DataError, match="2 labels for 4 images"):
        images_to_datasets(nhwc(), [0, 1])
