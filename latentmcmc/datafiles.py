"""Real data from files: NumPy arrays, IDX files of the MNIST family, folders of images; one reader for every command.

``read_data(path)`` returns the samples as a float32 tensor ``(n, *shape)``:

* ``.npy``: the array; ``.npz``: its one array, or the array named ``x`` (no pickles are loaded);
* IDX files (``train-images-idx3-ubyte`` and the like, ``.gz`` or not: MNIST, Fashion-MNIST, KMNIST): images
  ``(n, rows, cols)`` read as ``(n, 1, rows, cols)``;
* a folder of PNG or JPEG images (Pillow): every image must have the same size, colour mode and bit depth;
  grey images read as ``(n, 1, H, W)``, colour ones as ``(n, 3, H, W)`` (an alpha channel is dropped);
  16-bit grey PNGs keep their 16 bits.

Arrays are read channels-first, as torch's networks take them: square ``(n, H, W)`` arrays as one-channel
images ``(n, 1, H, W)``, and channels-last colour or grey images ``(n, H, W, 3)`` / ``(n, H, W, 1)`` (square,
``H`` not 1 or 3) moved to ``(n, C, H, W)``.  Integer pixels are scaled to ``value_range`` (``[0, 1]`` unless
told otherwise, e.g. ``(-1, 1)`` for a generator with a tanh output): ``uint8`` from 0..255 and ``uint16``
from 0..65535; other numbers are taken as they are.  :func:`fit_to` views the samples in
a generator's output shape.  Every problem (a missing or unreadable file,
no samples, NaN or infinite values, mixed image sizes) is a :class:`DataFileError` naming the file.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import struct
import zipfile
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

__all__ = ["read_data", "read_labels", "DataFileError", "fit_to", "data_fingerprint", "output_range", "IMAGE_SUFFIXES"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
FORMATS = ".npy/.npz (one array or one named x), IDX files (MNIST family, .gz or not) or a folder of PNG/JPEG images"
"""What :func:`read_data` reads, in a phrase (the commands' help texts say it in these words)."""
_IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"),
              0x0E: np.dtype(">f8")}


class DataFileError(ValueError):
    """A data file or folder that cannot serve as samples: the message names it and says why."""


def _open(path: Path):
    with open(path, "rb") as f:
        gzipped = f.read(2) == b"\x1f\x8b"
    return gzip.open(path, "rb") if gzipped else open(path, "rb")


def _read_idx(path: Path) -> np.ndarray:
    try:
        with _open(path) as f:
            head = f.read(4)
            if len(head) < 4 or head[0] != 0 or head[1] != 0 or head[2] not in _IDX_TYPES:
                raise DataFileError(f"{path} is not an IDX file (its first bytes are not an IDX header)")
            dims = struct.unpack(">" + "I" * head[3], f.read(4 * head[3]))
            dtype = np.dtype(_IDX_TYPES[head[2]])
            data = np.frombuffer(f.read(), dtype=dtype)
    except (OSError, EOFError, struct.error) as err:
        raise DataFileError(f"{path} could not be read as an IDX file ({type(err).__name__}: {err})") from None
    if data.size != math.prod(dims):
        raise DataFileError(f"{path} is truncated: its header promises {math.prod(dims)} values, it holds {data.size}")
    return data.reshape(dims)


def _is_idx(path: Path) -> bool:
    name = path.name.lower()
    return "idx" in name and ("ubyte" in name or name.endswith((".idx", ".idx.gz")))


def _read_npy(path: Path) -> np.ndarray:
    try:
        if path.suffix == ".npy":
            return np.load(path, allow_pickle=False)
        with np.load(path, allow_pickle=False) as archive:
            names = list(archive.files)
            if not names:
                raise DataFileError(f"{path} holds no arrays")
            key = "x" if "x" in names else (names[0] if len(names) == 1 else None)
            if key is None:
                raise DataFileError(f"{path} holds several arrays ({', '.join(names)}); name the samples 'x'")
            return archive[key]
    except DataFileError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        kind = "a NumPy .npy file" if path.suffix == ".npy" else "a NumPy .npz archive"
        raise DataFileError(f"{path} is not {kind} of samples (it could not be read: {type(err).__name__})") from None


def _read_images(folder: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataFileError(f"{folder} holds no PNG or JPEG images")
    arrays, first = [], None
    for path in files:
        try:
            with Image.open(path) as image:
                array = _pixels(image, path)
        except (OSError, UnidentifiedImageError) as err:
            raise DataFileError(f"{path} could not be read as an image ({type(err).__name__})") from None
        if first is None:
            first = (path, array)
        elif (array.shape, array.dtype) != (first[1].shape, first[1].dtype):
            what = ("image sizes" if array.shape[:2] != first[1].shape[:2]
                    else "grey and colour images" if array.shape != first[1].shape else "bit depths")
            raise DataFileError(f"{folder} mixes {what}: {path.name} is {_describe(array)} but {first[0].name} is "
                                f"{_describe(first[1])}; give images of one size and kind")
        arrays.append(array)
    stacked = np.stack(arrays)
    return stacked[:, None] if stacked.ndim == 3 else stacked.transpose(0, 3, 1, 2)


def _pixels(image, path: Path) -> np.ndarray:
    """An image's pixels: ``uint8`` grey ``(H, W)`` or RGB ``(H, W, 3)``, or ``uint16`` grey for 16-bit images."""
    if image.mode.startswith("I"):  # 16-bit (I;16*) or 32-bit integer grey: keep the bits that 8-bit L would clip
        array = np.asarray(image)
        if array.min() < 0 or array.max() > 65535:
            raise DataFileError(f"{path} holds integer pixels outside 0..65535 (mode {image.mode})")
        return array.astype(np.uint16)
    return np.asarray(image.convert("L" if image.mode in ("1", "L", "LA") else "RGB"))


def _describe(array: np.ndarray) -> str:
    kind = "colour" if array.ndim == 3 else ("16-bit grey" if array.dtype == np.uint16 else "grey")
    return f"{array.shape[1]}x{array.shape[0]} {kind}"


def _channels_first(array: np.ndarray) -> np.ndarray:
    """Square ``(n, H, W)`` images get a channel axis; channels-last ``(n, H, W, 1 or 3)`` ones move it to the front."""
    if array.ndim == 3 and array.shape[1] == array.shape[2] and array.shape[1] > 1:
        return array[:, None]
    if (array.ndim == 4 and array.shape[3] in (1, 3) and array.shape[1] == array.shape[2]
            and array.shape[1] not in (1, 3)):
        return array.transpose(0, 3, 1, 2)
    return array


def read_data(path: str | os.PathLike, value_range: tuple[float, float] = (0.0, 1.0)) -> Tensor:
    """The samples in ``path`` (see the module docstring) as a float32 tensor ``(n, *shape)``; ``uint8`` and
    ``uint16`` pixels are mapped from 0..255 and 0..65535 to ``value_range``."""
    path = Path(path)
    if not path.exists():
        raise DataFileError(f"no data at {path}")
    if path.is_dir():
        array = _read_images(path)
    elif _is_idx(path):
        array = _read_idx(path)
        if array.ndim == 1:
            raise DataFileError(f"{path} holds one number per sample (an IDX labels file?), not images")
        if array.ndim == 3:
            array = array[:, None]  # (n, rows, cols) images: one channel
    elif path.suffix in (".npy", ".npz"):
        array = _channels_first(_read_npy(path))
    elif path.suffix.lower() in IMAGE_SUFFIXES:
        raise DataFileError(f"{path} is one image: give the folder of images")
    else:
        raise DataFileError(f"{path} is not a data file latentmcmc reads (.npy, .npz, IDX files such as "
                            "train-images-idx3-ubyte[.gz], or a folder of PNG/JPEG images)")
    if array.dtype.kind not in "uif":
        raise DataFileError(f"{path} holds {array.dtype} data, not numbers")
    if array.ndim < 1:
        raise DataFileError(f"{path} holds a single number, not samples")
    if array.shape[0] == 0:
        raise DataFileError(f"{path} holds no samples")
    x = torch.from_numpy(np.require(array, requirements=["C", "W"]))  # a writable, contiguous copy if needed
    if array.dtype in (np.uint8, np.uint16):
        lo, hi = value_range
        x = lo + (hi - lo) * (x.float() / float(np.iinfo(array.dtype).max))
    else:
        x = x.float()
    if x.ndim == 1:
        x = x[:, None]
    bad = ~torch.isfinite(x.reshape(x.shape[0], -1)).all(1)
    if bool(bad.any()):
        raise DataFileError(f"{path} has NaN or infinite values in {int(bad.sum())} of its {x.shape[0]} samples "
                            f"(the first is sample {int(bad.nonzero()[0])})")
    return x


def read_labels(path: str | os.PathLike) -> Tensor:
    """Class labels ``(n,)`` (int64) from an IDX label file or a ``.npy``/``.npz`` array."""
    path = Path(path)
    if not path.is_file():
        raise DataFileError(f"no labels at {path}")
    array = _read_idx(path) if _is_idx(path) else _read_npy(path)
    if array.ndim != 1 or array.dtype.kind not in "iu":
        raise DataFileError(f"{path} does not hold one integer label per sample (shape {array.shape}, {array.dtype})")
    return torch.from_numpy(array.astype(np.int64))


def fit_to(x: Tensor, shape: tuple[int, ...], name: str = "the data") -> Tensor:
    """``x`` viewed as samples of ``shape`` (a flat generator output takes flattened images); a DataFileError
    names both shapes when the sizes differ."""
    size = math.prod(shape)
    if x[0].numel() != size:
        raise DataFileError(f"{name} has samples of shape {tuple(x.shape[1:])} ({x[0].numel()} values) but the "
                            f"generator's samples have shape {tuple(shape)} ({size} values)")
    return x.reshape(x.shape[0], *shape)


def output_range(samples: Tensor) -> tuple[float, float] | None:
    """The pixel range a generator's samples live in: ``(0, 1)`` (a sigmoid, most VAEs), ``(-1, 1)`` (a tanh), or
    None when they leave both (not images in a fixed range)."""
    lo, hi = float(samples.min()), float(samples.max())
    if lo >= -1e-3 and hi <= 1 + 1e-3:
        return (0.0, 1.0)
    if lo >= -1 - 1e-3 and hi <= 1 + 1e-3:
        return (-1.0, 1.0)
    return None


def data_fingerprint(x: Tensor) -> str:
    """A short hash of the samples' values and shape (recorded with what was fitted or trained on them)."""
    data = x.detach().cpu().contiguous()
    h = hashlib.sha256(str(tuple(data.shape)).encode())
    h.update(data.numpy().tobytes())
    return h.hexdigest()[:16]
