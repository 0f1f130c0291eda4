"""The one reader of real data: IDX files (gzipped or not), NumPy arrays, folders of images, and its errors."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from latentmcmc.datafiles import (
    DataFileError,
    fit_to,
    output_range,
    read_data,
    read_labels,
)


def write_idx(path, array: np.ndarray, compress: bool = False) -> None:
    code = {np.uint8: 0x08, np.float32: 0x0D}[array.dtype.type]
    head = bytes([0, 0, code, array.ndim]) + struct.pack(">" + "I" * array.ndim, *array.shape)
    data = head + array.astype(array.dtype.newbyteorder(">")).tobytes()
    (gzip.open if compress else open)(path, "wb").write(data)


@pytest.mark.parametrize("compress", [False, True])
def test_idx_images_and_labels(tmp_path, compress):
    images = np.random.default_rng(0).integers(0, 256, (5, 7, 6), dtype=np.uint8)
    name = "train-images-idx3-ubyte" + (".gz" if compress else "")
    write_idx(tmp_path / name, images, compress)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.arange(5, dtype=np.uint8))
    x = read_data(tmp_path / name)
    assert x.shape == (5, 1, 7, 6) and x.dtype == torch.float32
    torch.testing.assert_close(x[:, 0], torch.from_numpy(images).float() / 255)
    torch.testing.assert_close(read_data(tmp_path / name, (-1.0, 1.0)), 2 * x - 1)  # a tanh generator's range
    assert read_labels(tmp_path / "train-labels-idx1-ubyte").tolist() == [0, 1, 2, 3, 4]


def test_a_truncated_idx_file_is_named(tmp_path):
    path = tmp_path / "t10k-images-idx3-ubyte"
    write_idx(path, np.zeros((4, 3, 3), dtype=np.uint8))
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(DataFileError, match="t10k-images-idx3-ubyte is truncated: its header promises 36 values"):
        read_data(path)


def test_numpy_files(tmp_path):
    np.save(tmp_path / "a.npy", np.ones((3, 2), dtype=np.float64))
    np.savez(tmp_path / "one.npz", samples=np.ones((4, 2)))
    np.savez(tmp_path / "named.npz", x=np.zeros((6, 2)), y=np.arange(6))
    np.savez(tmp_path / "several.npz", a=np.zeros(2), b=np.zeros(2))
    assert read_data(tmp_path / "a.npy").shape == (3, 2)
    assert read_data(tmp_path / "one.npz").shape == (4, 2)
    assert read_data(tmp_path / "named.npz").shape == (6, 2)
    with pytest.raises(DataFileError, match="several arrays .* name the samples 'x'"):
        read_data(tmp_path / "several.npz")


def test_image_folders(tmp_path):
    for k in range(3):
        Image.fromarray(np.full((5, 4), 40 * k, dtype=np.uint8)).save(tmp_path / f"{k}.png")
    x = read_data(tmp_path)
    assert x.shape == (3, 1, 5, 4) and float(x[2].max()) == pytest.approx(80 / 255)
    colour = tmp_path / "colour"
    colour.mkdir()
    for k in range(2):
        Image.fromarray(np.zeros((4, 4, 3), dtype=np.uint8)).save(colour / f"{k}.jpg")
    assert read_data(colour).shape == (2, 3, 4, 4)
    Image.fromarray(np.zeros((6, 6), dtype=np.uint8)).save(tmp_path / "odd.png")
    with pytest.raises(DataFileError, match="mixes image sizes: odd.png is 6x6 grey but 0.png is 4x5 grey"):
        read_data(tmp_path)


@pytest.mark.parametrize("make, needle", [
    (lambda d: d / "missing.npz", "no data at"),
    (lambda d: (d / "empty.npy", np.save(d / "empty.npy", np.zeros((0, 3))))[0], "holds no samples"),
    (lambda d: (d / "nan.npy", np.save(d / "nan.npy", np.array([[0.0, np.nan], [1.0, 2.0]])))[0],
     "NaN or infinite values in 1 of its 2 samples .* sample 0"),
    (lambda d: (d / "notes.txt", (d / "notes.txt").write_text("x"))[0], "is not a data file latentmcmc reads"),
    (lambda d: (d / "junk.npz", (d / "junk.npz").write_bytes(b"not a zip at all"))[0], "is not a NumPy .npz archive"),
    (lambda d: (d / "nothing", (d / "nothing").mkdir())[0], "holds no PNG or JPEG images"),
    (lambda d: (d / "zero.npz", np.savez(d / "zero.npz"))[0], "holds no arrays"),
    (lambda d: (d / "one.npy", np.save(d / "one.npy", np.float32(3)))[0], "holds a single number, not samples"),
    (lambda d: (d / "labels-idx1-ubyte", (d / "labels-idx1-ubyte").write_bytes(
        bytes([0, 0, 8, 1]) + (3).to_bytes(4, "big") + bytes([1, 2, 3])))[0], "one number per sample"),
])
def test_bad_data_is_named(tmp_path, make, needle):
    with pytest.raises(DataFileError, match=needle):
        read_data(make(tmp_path))


def test_samples_fit_the_generator_s_shape_or_both_shapes_are_named():
    x = torch.zeros(4, 1, 8, 8)
    assert fit_to(x, (64,)).shape == (4, 64)
    with pytest.raises(DataFileError, match=r"shape \(1, 8, 8\) \(64 values\) but the generator's samples have shape "
                                            r"\(1, 28, 28\) \(784 values\)"):
        fit_to(x, (1, 28, 28))


def test_the_pixel_range_is_read_off_the_samples():
    assert output_range(torch.rand(10, 4)) == (0.0, 1.0)
    assert output_range(torch.rand(10, 4) * 2 - 1) == (-1.0, 1.0)
    assert output_range(torch.randn(10, 4) * 3) is None


def test_sixteen_bit_png_keeps_its_bits_and_kinds_are_not_mixed(tmp_path):
    """A 16-bit grey PNG is read as 0..65535 (converting to 8-bit grey clips everything above 255 to white)."""
    row = np.linspace(0, 65535, 6).astype(np.uint16)
    deep = tmp_path / "deep"
    deep.mkdir()
    for k in range(2):
        Image.fromarray(np.tile(row, (6, 1))).save(deep / f"{k}.png")
    x = read_data(deep, (-1.0, 1.0))
    assert x.shape == (2, 1, 6, 6)
    np.testing.assert_allclose(x[0, 0, 0].numpy(), np.linspace(-1, 1, 6), atol=1e-6)
    Image.fromarray(np.zeros((6, 6), dtype=np.uint8)).save(deep / "z8.png")
    with pytest.raises(DataFileError, match="mixes bit depths: z8.png is 6x6 grey but 0.png is 6x6 16-bit grey"):
        read_data(deep)
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    Image.fromarray(np.zeros((6, 6), dtype=np.uint8)).save(mixed / "0.png")
    Image.fromarray(np.zeros((6, 6, 3), dtype=np.uint8)).save(mixed / "1.png")
    with pytest.raises(DataFileError, match="mixes grey and colour images: 1.png is 6x6 colour"):
        read_data(mixed)


def test_arrays_are_read_channels_first(tmp_path):
    """Square (n, H, W) arrays are one-channel images and (n, H, W, 3) ones move their channels to the front;
    uint16 pixels are scaled from 0..65535."""
    rgb = np.random.default_rng(0).integers(0, 256, (3, 8, 8, 3), dtype=np.uint8)
    np.save(tmp_path / "nhwc.npy", rgb)
    x = read_data(tmp_path / "nhwc.npy")
    assert x.shape == (3, 3, 8, 8)
    assert torch.equal(x[1, :, 2, 5], torch.from_numpy(rgb[1, 2, 5]).float() / 255)
    np.save(tmp_path / "grey.npy", rgb[..., 0])
    assert read_data(tmp_path / "grey.npy").shape == (3, 1, 8, 8)
    np.save(tmp_path / "nchw.npy", rgb.transpose(0, 3, 1, 2).copy())
    assert torch.equal(read_data(tmp_path / "nchw.npy"), x)
    np.save(tmp_path / "rows.npy", np.zeros((3, 5, 7)))  # not square: left as it is
    assert read_data(tmp_path / "rows.npy").shape == (3, 5, 7)
    np.save(tmp_path / "u16.npy", np.full((2, 4), 65535, dtype=np.uint16))
    assert float(read_data(tmp_path / "u16.npy", (-1.0, 1.0)).min()) == 1.0
