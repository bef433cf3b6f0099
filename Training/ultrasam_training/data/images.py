"""Image and mask file I/O for converters: sizes, masks as arrays, and 8-bit PNG outputs.

PIL reads the common 2-D formats; SimpleITK takes the rest (.mha, .nrrd, .nii with one slice).
An image that is already an 8-bit PNG is copied byte for byte (lossless and fast); anything else
is windowed to 8 bit and written as PNG.

Every reader checks the size a file's header declares against ``limits.MAX_IMAGE_PIXELS`` before
decoding, so a decompression bomb (a tiny PNG declaring 60000 x 60000) is a ``DatasetError``
naming the file, which converters report as a skipped sample, not a process out of memory.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError
from ultrasam.atomic import atomic_write

from ultrasam_training.data.errors import DatasetError
from ultrasam_training.data.limits import check_pixel_count

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".mha", ".mhd", ".nrrd", ".nii", ".nii.gz")
EIGHT_BIT_MODES = ("L", "RGB", "RGBA")
IMAGE_MODES = ("copy", "symlink", "reference")


def _read_with_simpleitk(path: Path) -> np.ndarray:
    import SimpleITK as sitk

    try:
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(path))
        reader.ReadImageInformation()
        check_pixel_count(reader.GetSize(), str(path))
        array = sitk.GetArrayFromImage(reader.Execute())
    except RuntimeError as exc:
        raise DatasetError(f"cannot read image {path}: {str(exc).strip().splitlines()[-1]}") from exc
    array = np.squeeze(array)
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in (3, 4)):
        raise DatasetError(f"{path} is not a 2-D image (array shape {array.shape})")
    return array


def read_array(path: str | Path) -> np.ndarray:
    """Pixel array of a 2-D image file: (h, w) or (h, w, 3|4). Raises ``DatasetError`` when unreadable."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"missing file {path}")
    try:
        with Image.open(path) as image:
            check_pixel_count(image.size, str(path))
            if image.mode == "P":
                image = image.convert("RGBA" if "transparency" in image.info else "RGB")
            return np.asarray(image)
    except UnidentifiedImageError:
        return _read_with_simpleitk(path)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise DatasetError(f"cannot read image {path}: {exc}") from exc


def image_size(path: str | Path) -> tuple[int, int]:
    """``(height, width)`` of an image file without decoding its pixels when PIL knows the format."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"missing file {path}")
    try:
        with Image.open(path) as image:
            width, height = image.size
            check_pixel_count((width, height), str(path))
            return height, width
    except UnidentifiedImageError:
        array = _read_with_simpleitk(path)
        return int(array.shape[0]), int(array.shape[1])
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise DatasetError(f"cannot read image {path}: {exc}") from exc


def read_gray_mask(path: str | Path) -> np.ndarray:
    """A mask file as a 2-D array; an RGB(A) mask whose channels agree is reduced to one channel.

    A colour mask whose channels differ raises ``DatasetError``: mapping colours to categories
    must be asked for explicitly (see ``read_color_mask``), never guessed.
    """
    array = read_array(path)
    if array.ndim == 3:
        channels = array[..., :3]
        if not (
            np.array_equal(channels[..., 0], channels[..., 1]) and np.array_equal(channels[..., 0], channels[..., 2])
        ):
            raise DatasetError(f"{path} is a colour mask; give colour=(r, g, b) category values to use it")
        array = channels[..., 0]
    return array


def read_color_mask(path: str | Path) -> np.ndarray:
    """A mask file as ``(h, w, 3)`` RGB (grey masks are repeated over the channels)."""
    array = read_array(path)
    if array.ndim == 2:
        return np.repeat(array[..., None], 3, axis=2)
    return array[..., :3]


def to_uint8(array: np.ndarray) -> np.ndarray:
    """Window any pixel type to uint8: integers by their full range when it fits, else min..max."""
    if array.dtype == np.uint8:
        return array
    if array.dtype == bool:
        return array.astype(np.uint8) * 255
    data = array.astype(np.float64)
    finite = np.isfinite(data)
    if not finite.any():
        raise DatasetError("image holds no finite pixel")
    low, high = float(data[finite].min()), float(data[finite].max())
    if np.issubdtype(array.dtype, np.integer) and low >= 0 and high <= 255:
        return array.astype(np.uint8)
    scale = 255.0 / (high - low) if high > low else 0.0
    return np.clip(np.nan_to_num((data - low) * scale, nan=0.0), 0, 255).round().astype(np.uint8)


def is_eight_bit_png(path: str | Path) -> bool:
    """True for a PNG in L/RGB/RGBA mode, which training can read as is."""
    try:
        with Image.open(path) as image:
            return image.format == "PNG" and image.mode in EIGHT_BIT_MODES
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError):
        return False


def write_png(array: np.ndarray, destination: str | Path) -> None:
    """Write an array as an 8-bit PNG, atomically (a killed run never leaves half an image)."""
    pixels = to_uint8(array)
    atomic_write(destination, lambda tmp: Image.fromarray(pixels).save(tmp, format="PNG"), overwrite=True)


def copy_file(source: str | Path, destination: str | Path) -> None:
    """Byte copy, atomically."""
    atomic_write(destination, lambda tmp: shutil.copyfile(source, tmp), overwrite=True)


def symlink(source: str | Path, destination: str | Path) -> None:
    """Symbolic link ``destination`` -> absolute ``source`` (replacing a previous link atomically)."""
    atomic_write(destination, lambda tmp: os.symlink(Path(source).resolve(), tmp), overwrite=True)
