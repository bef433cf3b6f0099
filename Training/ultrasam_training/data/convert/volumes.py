"""3-D and 2-D+t sources (.mha, .nii.gz, .nrrd) through SimpleITK: read, window to 8 bit, slice.

Slicing follows the released converters' ``extract_slices`` on SimpleITK's ``(z, y, x)`` array:
``axial`` iterates axis 0 (z, or time for a 2-D+t sequence) giving ``(y, x)`` slices; ``coronal``
iterates y giving ``(z, x)``; ``sagittal`` iterates x (constant x) giving ``(z, y)``. Intensities
are windowed to 8 bit **once per volume** (explicitly: the original cast with ``astype(uint8)``,
which wraps 256 to 0), so all slices of a volume share one grey scale.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, Literal

import numpy as np

from ultrasam.frames import AXES, frame_of, slice_axis_of
from ultrasam_training.data.errors import DatasetError
from ultrasam_training.data.limits import check_volume_size

View = Literal["axial", "coronal", "sagittal"]
VIEWS: tuple[str, ...] = tuple(AXES)


def read_volume(path: str | Path) -> np.ndarray:
    """``(z, y, x)`` (or ``(t, y, x)``) array of a volume file; a 2-D file gives one slice ``(1, y, x)``.

    The header's size is checked against ``limits.MAX_VOLUME_VOXELS`` before any voxel is decoded.
    Multi-component pixels (``(z, y, x, c)``) are returned as they are.
    """
    import SimpleITK as sitk

    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"missing file {path}")
    try:
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(path))
        reader.ReadImageInformation()
        check_volume_size(reader.GetSize(), str(path))  # before decoding: a header can declare anything
        array = sitk.GetArrayFromImage(reader.Execute())
    except RuntimeError as exc:
        raise DatasetError(f"cannot read volume {path}: {str(exc).strip().splitlines()[-1]}") from exc
    if array.ndim == 2:
        array = array[None]
    if array.ndim not in (3, 4):
        raise DatasetError(f"{path}: array of shape {array.shape} is not a volume")
    return array


def window_to_uint8(volume: np.ndarray, low: float | None = None, high: float | None = None) -> np.ndarray:
    """Map ``[low, high]`` (default: the volume's finite min..max; uint8 data untouched) linearly to 0..255.

    Values outside are clipped, never wrapped; NaN becomes 0.
    """
    if volume.dtype == np.uint8 and low is None and high is None:
        return volume
    data = volume.astype(np.float64)
    finite = np.isfinite(data)
    if not finite.any():
        raise DatasetError("volume holds no finite value")
    low = float(data[finite].min()) if low is None else float(low)
    high = float(data[finite].max()) if high is None else float(high)
    if (
        np.issubdtype(volume.dtype, np.integer)
        and low >= 0
        and high <= 255
        and (low, high) == (float(data[finite].min()), float(data[finite].max()))
    ):
        return volume.astype(np.uint8)  # already 8-bit values in a wider type: keep them as they are
    scale = 255.0 / (high - low) if high > low else 0.0
    return np.clip(np.nan_to_num((data - low) * scale, nan=0.0), 0, 255).round().astype(np.uint8)


def slices(volume: np.ndarray, view: View = "axial") -> Iterator[tuple[int, np.ndarray]]:
    """``(index, 2-D slice)`` along ``view``: the library's frame convention (``ultrasam.frames``) on
    SimpleITK's ``(z, y, x)`` = ``(k, j, i)`` array, which is the released converters' too."""
    try:
        count = volume.shape[2 - slice_axis_of(view)]
    except ValueError as exc:
        raise DatasetError(f"view must be one of {VIEWS}, not {view!r}") from exc
    for index in range(count):
        yield index, frame_of(volume, view, index)
