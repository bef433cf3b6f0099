"""Read any supported file into frames: 2D images, multi-frame DICOM cines and volumes.

SimpleITK reads first, so pixels *and* geometry (DICOM pixel spacing, MHA/NRRD headers; unit
spacing for PNG/JPEG, whose resolution chunks ITK ignores) are exactly what Slicer, which uses
ITK too, shows for the same file; markups placed on it in Slicer land on the same pixels here. Palette images come back expanded to RGB.
Pillow is the fallback for what ITK cannot decode (grey+alpha PNG, GIF, some TIFF modes); such
images get unit spacing, as Slicer would give them.

A multi-frame DICOM (an ultrasound cine) is a 3D image whose axis 0 is time: its frames are the
``axial`` frames. RGB ultrasound DICOM arrives as vector pixels ``(H, W, 3)``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ultrasam.errors import ImageError
from ultrasam.frames import Frame, FrameStack, frames_along
from ultrasam.volume import Volume, check_finite, load_volume

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


def read_with_pillow(path: str | Path) -> Volume:
    """Read a 2D (or multi-page) raster image with Pillow; unit spacing, one slice per page."""
    from PIL import Image, ImageSequence, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            pages = [_pil_array(page) for page in ImageSequence.Iterator(image)]
    except (UnidentifiedImageError, OSError) as exc:
        raise ImageError(f"cannot read image {path}: {exc}") from exc
    shapes = {page.shape for page in pages}
    if len(shapes) != 1:
        raise ImageError(f"{path}: pages have different shapes {sorted(shapes)}")
    array = np.stack(pages)
    check_finite(array, f" in {path}")
    return Volume(array, source=Path(path))


def read_image_volume(path: str | Path) -> Volume:
    """Read a raster image (PNG/JPEG/BMP/TIFF/GIF) as a volume: SimpleITK first, Pillow as fallback."""
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
    volume = read_image_volume(path) if is_raster else load_volume(path)
    if volume.is_single_slice and axis != "axial":
        raise ImageError(f"{path} is a 2D image: it has only axial frames, not {axis!r}")
    return frames_along(volume, axis)


def load_frames(path: str | Path, axis: str = "axial") -> list[Frame]:
    """Every 2D frame of a file: one for a 2D image, one per time point for a cine, one per slice
    along ``axis`` for a volume. Each frame knows its pixel → voxel → physical mapping."""
    return list(load_stack(path, axis))
