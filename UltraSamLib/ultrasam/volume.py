"""Volumes as SimpleITK sees them, with their physical geometry kept exact.

A :class:`Volume` holds the voxels in SimpleITK/numpy order ``array[k, j, i]`` (z, y, x; plus a
trailing component axis for RGB/RGBA pixels) and the ITK geometry in **LPS**: for a voxel
index ``(i, j, k)``::

    lps = origin + direction @ (spacing * (i, j, k))

with ``direction`` a 3x3 matrix whose *columns* are the i, j, k axes. Slicer works in **RAS**
(``ras = diag(-1, -1, 1) @ lps``), so :meth:`Volume.ijk_to_ras` is exactly the IJKToRAS matrix of
the same file loaded into Slicer. Index ``(i, j, k)`` is the centre of the voxel, as in ITK.

2D images are volumes with one slice (``nk == 1``); a 2D+t cine stored as a volume is a 3D volume
whose axis 0 (``k``) is time, as the original UltraSam converters treated it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ultrasam.errors import ImageError

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
"""Homogeneous flip between ITK (LPS) and Slicer (RAS) physical coordinates; it is its own inverse."""

MAX_COMPONENTS = 4
SPACES = ("lps", "ras")


def check_space(space: str) -> str:
    """Normalise a physical-space name (``"lps"`` or ``"ras"``, any case)."""
    name = str(space).lower()
    if name not in SPACES:
        raise ValueError(f"physical space must be 'lps' or 'ras', got {space!r}")
    return name


def apply_affine(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 4x4 affine to ``(N, 3)`` (or ``(3,)``) points."""
    pts = np.asarray(points, dtype=float)
    single = pts.ndim == 1
    pts = np.atleast_2d(pts)
    if pts.shape[-1] != 3:
        raise ValueError(f"expected points with 3 coordinates, got shape {np.shape(points)}")
    out = pts @ matrix[:3, :3].T + matrix[:3, 3]
    return out[0] if single else out


@dataclass(frozen=True, eq=False)
class Volume:
    """Voxels ``array[k, j, i(, c)]`` plus ITK (LPS) geometry; see the module docstring."""

    array: np.ndarray
    spacing: np.ndarray = field(default_factory=lambda: np.ones(3))
    origin: np.ndarray = field(default_factory=lambda: np.zeros(3))
    direction: np.ndarray = field(default_factory=lambda: np.eye(3))
    source: Path | None = None

    def __post_init__(self) -> None:
        spacing = np.asarray(self.spacing, dtype=float).reshape(3)
        origin = np.asarray(self.origin, dtype=float).reshape(3)
        direction = np.asarray(self.direction, dtype=float).reshape(3, 3)
        if self.array.ndim not in (3, 4):
            raise ImageError(f"a volume array must be [k, j, i] or [k, j, i, c]; got shape {self.array.shape}")
        if self.array.size == 0:
            raise ImageError(f"volume is empty (shape {self.array.shape})")
        if self.array.ndim == 4 and not 1 <= self.array.shape[3] <= MAX_COMPONENTS:
            raise ImageError(
                f"volume has {self.array.shape[3]} components per voxel; only scalar, RGB or RGBA "
                f"(at most {MAX_COMPONENTS}) are supported"
            )
        if not np.all(spacing > 0):
            raise ImageError(f"voxel spacing must be positive, got {tuple(spacing)}")
        if abs(np.linalg.det(direction)) < 1e-6:
            raise ImageError(f"direction matrix is singular: {direction.tolist()}")
        object.__setattr__(self, "spacing", spacing)
        object.__setattr__(self, "origin", origin)
        object.__setattr__(self, "direction", direction)

    # ---- shape ---------------------------------------------------------------------------
    @property
    def shape_ijk(self) -> tuple[int, int, int]:
        """Number of voxels along i, j, k (x, y, z)."""
        nk, nj, ni = self.array.shape[:3]
        return ni, nj, nk

    @property
    def components(self) -> int:
        """1 for scalar voxels, 3 for RGB, 4 for RGBA."""
        return 1 if self.array.ndim == 3 else int(self.array.shape[3])

    @property
    def is_single_slice(self) -> bool:
        """True for a 2D image stored as a volume (one slice along k)."""
        return self.array.shape[0] == 1

    # ---- geometry ------------------------------------------------------------------------
    def ijk_to_lps(self) -> np.ndarray:
        """4x4 affine: voxel index (i, j, k) → LPS millimetres."""
        matrix = np.eye(4)
        matrix[:3, :3] = self.direction * self.spacing[None, :]
        matrix[:3, 3] = self.origin
        return matrix

    def ijk_to_ras(self) -> np.ndarray:
        """4x4 affine: voxel index → RAS, the IJKToRAS matrix Slicer shows for this volume."""
        return LPS_TO_RAS @ self.ijk_to_lps()

    def ijk_to_physical(self, space: str = "lps") -> np.ndarray:
        """4x4 affine: voxel index → ``space`` ("lps" or "ras")."""
        return self.ijk_to_ras() if check_space(space) == "ras" else self.ijk_to_lps()

    def physical_to_ijk(self, space: str = "lps") -> np.ndarray:
        """4x4 affine: ``space`` coordinates → continuous voxel index."""
        return np.linalg.inv(self.ijk_to_physical(space))

    def index_to_physical(self, ijk: np.ndarray, space: str = "lps") -> np.ndarray:
        """Continuous voxel indices ``(N, 3)`` → physical points ``(N, 3)``."""
        return apply_affine(self.ijk_to_physical(space), ijk)

    def physical_to_index(self, points: np.ndarray, space: str = "lps") -> np.ndarray:
        """Physical points ``(N, 3)`` → continuous voxel indices ``(N, 3)`` (not rounded)."""
        return apply_affine(self.physical_to_ijk(space), points)

    def same_geometry(self, other: "Volume", tolerance: float = 1e-6) -> bool:
        """True when both volumes share grid size, spacing, origin and direction."""
        return self.array.shape[:3] == other.array.shape[:3] and np.allclose(
            self.ijk_to_lps(), other.ijk_to_lps(), atol=tolerance, rtol=0
        )

    def with_array(self, array: np.ndarray) -> "Volume":
        """A volume on the same grid with other voxels (e.g. a mask)."""
        if array.shape[:3] != self.array.shape[:3]:
            raise ImageError(f"array shape {array.shape[:3]} does not match the volume grid {self.array.shape[:3]}")
        return Volume(array, self.spacing, self.origin, self.direction, self.source)

    # ---- SimpleITK -----------------------------------------------------------------------
    def to_sitk(self, array: np.ndarray | None = None) -> sitk.Image:
        """A SimpleITK image with this geometry and ``array`` (default: the volume's voxels)."""
        voxels = self.array if array is None else array
        image = sitk.GetImageFromArray(np.ascontiguousarray(voxels), isVector=voxels.ndim == 4)
        image.SetSpacing(tuple(float(v) for v in self.spacing))
        image.SetOrigin(tuple(float(v) for v in self.origin))
        image.SetDirection(tuple(float(v) for v in self.direction.ravel()))
        return image

    @classmethod
    def from_sitk(cls, image: sitk.Image, source: str | Path | None = None) -> "Volume":
        """Convert a 2D or 3D SimpleITK image; 2D becomes a single-slice volume."""
        where = f" in {source}" if source else ""
        dimension = image.GetDimension()
        if dimension == 4 and image.GetSize()[3] == 1:
            image = image[:, :, :, 0]
            dimension = 3
        if dimension == 4:
            raise ImageError(
                f"4D image{where} (size {image.GetSize()}) is not supported: split it into 3D volumes "
                "or 2D+t frames first"
            )
        if dimension not in (2, 3):
            raise ImageError(f"unsupported image dimension {dimension}{where}")
        components = image.GetNumberOfComponentsPerPixel()
        if components > MAX_COMPONENTS:
            raise ImageError(
                f"image{where} has {components} components per pixel; only scalar, RGB or RGBA "
                f"(at most {MAX_COMPONENTS}) are supported"
            )
        if 0 in image.GetSize():
            raise ImageError(f"image{where} is empty (size {image.GetSize()})")
        array = sitk.GetArrayFromImage(image)
        if components == 1 and array.ndim == dimension + 1:
            array = array[..., 0]
        if dimension == 2:
            array = array[None]
            spacing = (*image.GetSpacing(), 1.0)
            origin = (*image.GetOrigin(), 0.0)
            direction = np.eye(3)
            direction[:2, :2] = np.asarray(image.GetDirection()).reshape(2, 2)
        else:
            spacing, origin = image.GetSpacing(), image.GetOrigin()
            direction = np.asarray(image.GetDirection()).reshape(3, 3)
        check_finite(array, where)
        return cls(array, np.array(spacing), np.array(origin), direction, Path(source) if source else None)


def check_finite(array: np.ndarray, where: str = "") -> None:
    """Refuse NaN or infinite voxels: they have no grey level and would poison windowing."""
    if not np.issubdtype(array.dtype, np.floating):
        return
    nan = int(np.isnan(array).sum())
    inf = int(np.isinf(array).sum())
    if nan or inf:
        parts = [f"NaN in {nan} voxels"] if nan else []
        parts += [f"infinity in {inf} voxels"] if inf else []
        raise ImageError(f"image{where} contains {' and '.join(parts)}; replace them with a finite value first")


def read_sitk_image(path: str | Path) -> sitk.Image:
    """Read any SimpleITK-readable file, or a DICOM series from a folder, with a clear error."""
    path = Path(path)
    if not path.exists():
        raise ImageError(f"image file not found: {path}")
    try:
        if path.is_dir():
            reader = sitk.ImageSeriesReader()
            series = reader.GetGDCMSeriesIDs(str(path))
            if not series:
                raise ImageError(f"no DICOM series found in folder {path}")
            if len(series) > 1:
                raise ImageError(
                    f"folder {path} holds {len(series)} DICOM series; pass one file or a one-series folder"
                )
            reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(path), series[0]))
            return reader.Execute()
        return sitk.ReadImage(str(path))
    except RuntimeError as exc:
        first_line = str(exc).strip().splitlines()[-1] if str(exc).strip() else repr(exc)
        raise ImageError(f"cannot read image {path}: {first_line}") from exc


def load_volume(path: str | Path) -> Volume:
    """Load NRRD, NIfTI, MHA/MHD, DICOM (file or one-series folder) or any SimpleITK-readable image."""
    return Volume.from_sitk(read_sitk_image(path), source=path)
