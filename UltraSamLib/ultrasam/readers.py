"""Read any supported file into frames: 2D images, multi-frame DICOM cines and volumes.

SimpleITK reads first, so pixels *and* geometry (DICOM pixel spacing, MHA/NRRD headers; unit
spacing for PNG/JPEG, whose resolution chunks ITK ignores) are exactly what Slicer, which uses
ITK too, shows for the same file; markups placed on it in Slicer land on the same pixels here. Palette images come back expanded to RGB.
Pillow is the fallback for what ITK cannot decode (grey+alpha PNG, GIF, some TIFF modes); such
images get unit spacing, as Slicer would give them.

A multi-frame DICOM (an ultrasound cine) is a 3D image whose axis 0 is time: its frames are the
``axial`` frames. RGB ultrasound DICOM arrives as vector pixels ``(H, W, 3)``.

**Limits, checked from the header before any pixel is decoded** (a 437 kB PNG may declare
60000x60000 pixels): a 2D image, or any slice of a volume along any axis, may hold at most
:data:`MAX_FRAME_PIXELS` pixels, and a file at most :data:`MAX_FILE_VOXELS` voxels. The size comes
from SimpleITK's ``ReadImageInformation`` (first file of a DICOM series times its file count) or,
on the Pillow path, from ``Image.open``, which reads only the header; Pillow's own decompression
bomb warning is silenced and its error reported as ours, so the outcome does not depend on
Pillow's ``MAX_IMAGE_PIXELS``.

**Truncated or corrupt files are refused.** ITK's JPEG and BMP readers accept a file cut short
(libjpeg pads it with grey), so those are first decoded by Pillow, which raises on missing data;
PNG and TIFF readers refuse truncation themselves. This relies on Pillow's default
``ImageFile.LOAD_TRUNCATED_IMAGES = False``, which ultrasam never changes.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from itertools import combinations
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ultrasam.errors import ImageError
from ultrasam.frames import Frame, FrameStack, frames_along
from ultrasam.volume import Volume, check_finite, load_volume

MAX_FRAME_PIXELS = 150_000_000
"""Most pixels in one 2D frame (e.g. 12000x12000). The model sees 1024x1024 at most; a larger frame
only costs memory (an RGB copy of it is ~0.5 GB at the limit)."""

MAX_FILE_VOXELS = 1_000_000_000
"""Most voxels in one file (e.g. 1000^3, or a 1024x1024 cine of ~950 frames), all channels counted
once; 4 GB as float32. Beyond that a header is more likely hostile or broken than a real scan."""

_CHECKED_BY_PILLOW = ("jpeg", "bmp")  # formats whose ITK reader accepts a truncated file silently

RASTER_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif")
_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"\xff\xd8\xff", "jpeg"),
    (b"BM", "bmp"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
    (b"GIF8", "gif"),
    (b"NRRD", "nrrd"),
)


def sniff_format(path: str | Path) -> str | None:
    """The file's format from its first bytes (``png``, ``jpeg``, ``dicom``, ``nrrd``, ...), or None."""
    with open(path, "rb") as handle:
        head = handle.read(132)
    for magic, name in _MAGIC:
        if head.startswith(magic):
            return name
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "dicom"
    return None


def check_image_size(size: Sequence[int], path: str | Path) -> None:
    """Refuse a header size (ITK order: columns, rows[, slices[, time]]) over the module's limits."""
    dims = [int(v) for v in size]
    total = math.prod(dims)
    label = "x".join(str(v) for v in dims)
    if len(dims) <= 2:
        if total > MAX_FRAME_PIXELS:
            raise ImageError(
                f"image {path} is too large: {label} pixels ({total:,} pixels); "
                f"the limit is {MAX_FRAME_PIXELS:,} pixels per frame"
            )
        return
    if total > MAX_FILE_VOXELS:
        raise ImageError(
            f"image {path} is too large: {label} voxels ({total:,} voxels); "
            f"the limit is {MAX_FILE_VOXELS:,} voxels per file"
        )
    face = max(a * b for a, b in combinations(dims[:3], 2))
    if face > MAX_FRAME_PIXELS:
        raise ImageError(
            f"image {path} is too large: {label} voxels, with slices of up to {face:,} pixels; "
            f"the limit is {MAX_FRAME_PIXELS:,} pixels per frame"
        )


def _itk_header_size(path: str | Path) -> tuple[int, ...] | None:
    """The image size from the file's header alone; None when ITK cannot read the header."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        return None
    return tuple(reader.GetSize())


def _series_header_size(folder: Path) -> tuple[int, ...] | None:
    """Size of a one-series DICOM folder: its first file's header, one slice per file."""
    series = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
    if len(series) != 1:
        return None  # none or several: load_volume says so
    files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), series[0])
    first = _itk_header_size(files[0]) if files else None
    if first is None:
        return None
    return (*first[:2], len(files) * math.prod(first[2:]))


def check_volume_header(path: str | Path) -> None:
    """Check a volume file's (or DICOM folder's) header size before its voxels are read."""
    path = Path(path)
    size = _series_header_size(path) if path.is_dir() else _itk_header_size(path)
    if size is not None:
        check_image_size(size, path)


def _bomb_pixels(exc: Exception) -> str:
    found = re.search(r"\((\d+) pixels\)", str(exc))
    return f"{int(found.group(1)):,} pixels" if found else str(exc)


@contextmanager
def _pillow_image(path: str | Path) -> Iterator["object"]:
    """Pillow's lazily opened image (header only), its size checked against our limit, not Pillow's."""
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            image = Image.open(path)
        except Image.DecompressionBombError as exc:
            raise ImageError(
                f"image {path} is too large: {_bomb_pixels(exc)}; the limit is {MAX_FRAME_PIXELS:,} pixels per frame"
            ) from exc
    with image:
        check_image_size(image.size, path)
        yield image


def _truncated(path: str | Path, exc: Exception) -> ImageError:
    return ImageError(f"cannot read image {path}: the file is truncated or corrupt ({exc})")


def check_complete(path: str | Path) -> None:
    """Decode a JPEG/BMP with Pillow to refuse a truncated or corrupt file ITK would pad silently.

    A file Pillow cannot even identify is left to ITK, which reads more variants.
    """
    from PIL import UnidentifiedImageError

    try:
        with _pillow_image(path) as image:
            try:
                image.load()
            except OSError as exc:
                raise _truncated(path, exc) from exc
    except UnidentifiedImageError:
        return


def _pil_array(page) -> np.ndarray:
    """A Pillow image → numpy, palettes expanded, 16-bit kept, everything else to L/RGB/RGBA."""
    mode = page.mode
    if mode in ("P", "PA"):
        page = page.convert("RGBA" if mode == "PA" or "transparency" in page.info else "RGB")
    elif mode in ("LA", "La", "RGBa"):
        page = page.convert("RGBA")
    elif mode == "1":
        page = page.convert("L")
    elif mode in ("CMYK", "YCbCr", "LAB", "HSV", "RGBX"):
        page = page.convert("RGB")
    array = np.array(page)
    if array.dtype.byteorder == ">":  # I;16B
        array = array.astype(array.dtype.newbyteorder("="))
    return array


def _pil_pages(image, path: str | Path) -> list[np.ndarray]:
    """Every page as an array; the running voxel count stays within :data:`MAX_FILE_VOXELS`."""
    from PIL import ImageSequence

    pages: list[np.ndarray] = []
    total = 0
    for page in ImageSequence.Iterator(image):
        total += page.size[0] * page.size[1]
        if total > MAX_FILE_VOXELS:
            raise ImageError(
                f"image {path} is too large: more than {MAX_FILE_VOXELS:,} pixels in its pages (the limit per file)"
            )
        pages.append(_pil_array(page))
    return pages


def read_with_pillow(path: str | Path) -> Volume:
    """Read a 2D (or multi-page) raster image with Pillow; unit spacing, one slice per page."""
    from PIL import UnidentifiedImageError

    try:
        with _pillow_image(path) as image:
            pages = _pil_pages(image, path)
    except UnidentifiedImageError as exc:
        raise ImageError(f"cannot read image {path}: {exc}") from exc
    except (FileNotFoundError, PermissionError, IsADirectoryError) as exc:
        raise ImageError(f"cannot read image {path}: {exc.strerror}") from exc
    except OSError as exc:  # raised while decoding: data missing or damaged
        raise _truncated(path, exc) from exc
    shapes = {page.shape for page in pages}
    if len(shapes) != 1:
        raise ImageError(f"{path}: pages have different shapes {sorted(shapes)}")
    array = np.stack(pages)
    check_finite(array, f" in {path}")
    return Volume(array, source=Path(path))


def read_image_volume(path: str | Path) -> Volume:
    """Read a raster image (PNG/JPEG/BMP/TIFF/GIF) as a volume: SimpleITK first, Pillow as fallback.

    The header size is checked first, and JPEG/BMP are checked for truncation (see the module docstring).
    """
    size = _itk_header_size(path)
    if size is not None:
        check_image_size(size, path)
        if sniff_format(path) in _CHECKED_BY_PILLOW:
            check_complete(path)
    try:
        return Volume.from_sitk(sitk.ReadImage(str(path)), source=path)
    except RuntimeError:
        return read_with_pillow(path)


def load_stack(path: str | Path, axis: str = "axial") -> FrameStack:
    """The frames of any supported file as a :class:`FrameStack` (lazy views)."""
    path = Path(path)
    if not path.exists():
        raise ImageError(f"image file not found: {path}")
    kind = sniff_format(path) if path.is_file() else None
    is_raster = kind in ("png", "jpeg", "bmp", "tiff", "gif") or (
        kind is None and path.suffix.lower() in RASTER_EXTENSIONS
    )
    if not is_raster:
        check_volume_header(path)
    volume = read_image_volume(path) if is_raster else load_volume(path)
    if volume.is_single_slice and axis != "axial":
        raise ImageError(f"{path} is a 2D image: it has only axial frames, not {axis!r}")
    return frames_along(volume, axis)


def load_frames(path: str | Path, axis: str = "axial") -> list[Frame]:
    """Every 2D frame of a file: one for a 2D image, one per time point for a cine, one per slice
    along ``axis`` for a volume. Each frame knows its pixel → voxel → physical mapping."""
    return list(load_stack(path, axis))
