"""Synthetic B-mode ultrasound with a known lesion mask, for the demo and end-to-end tests.

The image is built the way B-mode images form: a smooth echogenicity map (tissue layers, a
hypoechoic lesion with a slightly irregular border), multiplied by fully developed speckle
(the magnitude of blurred complex Gaussian noise, i.e. Rayleigh statistics with an anisotropic
point-spread function), attenuated with depth and log-compressed to 8 bits. Everything is
seeded, so a test can rely on the exact mask.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage


@dataclass(frozen=True)
class Lesion:
    """An ellipse (2D) or ellipsoid (3D) in pixel/voxel units, centre and semi-axes in array order."""

    center: tuple[float, ...]
    radii: tuple[float, ...]
    echogenicity: float = 0.18
    border_roughness: float = 0.08


def _speckle(shape: tuple[int, ...], rng: np.random.Generator, sigma: tuple[float, ...]) -> np.ndarray:
    real = ndimage.gaussian_filter(rng.standard_normal(shape), sigma)
    imag = ndimage.gaussian_filter(rng.standard_normal(shape), sigma)
    envelope = np.hypot(real, imag)
    return envelope / envelope.mean()


def _lesion_mask(shape: tuple[int, ...], lesion: Lesion, rng: np.random.Generator) -> np.ndarray:
    grids = np.meshgrid(*[np.arange(n, dtype=np.float64) for n in shape], indexing="ij")
    radius = np.sqrt(sum(((g - c) / r) ** 2 for g, c, r in zip(grids, lesion.center, lesion.radii)))
    wobble = ndimage.gaussian_filter(rng.standard_normal(shape), max(lesion.radii) / 3)
    wobble *= lesion.border_roughness / (np.abs(wobble).max() + 1e-12)
    return radius < 1.0 + wobble


def _echo_map(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    rows = np.arange(shape[-2], dtype=np.float64)
    layers = 0.55 + 0.15 * np.sin(rows / shape[-2] * 7.0 + rng.uniform(0, np.pi))
    layers[: max(2, shape[-2] // 12)] = 0.9  # bright skin line
    texture = ndimage.gaussian_filter(rng.standard_normal(shape), 6.0)
    texture = 0.12 * texture / (np.abs(texture).max() + 1e-12)
    base = np.broadcast_to(layers[:, None], shape[-2:])
    return np.clip(base + texture, 0.05, 1.0)


def _to_bmode(echo: np.ndarray, speckle: np.ndarray, row_axis: int) -> np.ndarray:
    rows = echo.shape[row_axis]
    attenuation = np.exp(-1.2 * np.linspace(0.0, 1.0, rows))
    shape = [1] * echo.ndim
    shape[row_axis] = rows
    amplitude = echo * speckle * attenuation.reshape(shape)
    db = 20.0 * np.log10(amplitude + 1e-3)
    db = np.clip(db, -40.0, db.max())
    return np.round(255.0 * (db + 40.0) / (db.max() + 40.0)).astype(np.uint8)


def synthetic_frame(
    height: int = 360, width: int = 480, lesion: Lesion | None = None, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """An ``H×W`` uint8 B-mode frame and its ``H×W`` bool lesion mask."""
    rng = np.random.default_rng(seed)
    lesion = lesion or Lesion(center=(height * 0.5, width * 0.55), radii=(height * 0.16, width * 0.17))
    mask = _lesion_mask((height, width), lesion, rng)
    echo = _echo_map((height, width), rng)
    echo = np.where(mask, lesion.echogenicity, echo)
    echo = ndimage.gaussian_filter(echo, 1.5)
    image = _to_bmode(echo, _speckle((height, width), rng, (1.2, 2.5)), row_axis=0)
    return image, mask


def synthetic_volume(
    shape_zyx: tuple[int, int, int] = (48, 160, 40), lesion: Lesion | None = None, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """A ``(z, y, x)`` uint8 volume and bool mask: an ellipsoidal lesion in speckled tissue.

    Depth (the ultrasound axial direction, attenuation and layers) runs along z, so the default
    sagittal frames (constant x; rows z, columns y) look like B-mode frames.
    """
    rng = np.random.default_rng(seed)
    z, y, x = shape_zyx
    lesion = lesion or Lesion(center=(z * 0.5, y * 0.5, x * 0.5), radii=(z * 0.22, y * 0.2, x * 0.3))
    mask = _lesion_mask(shape_zyx, lesion, rng)
    rows = np.arange(z, dtype=np.float64)
    layers = 0.55 + 0.15 * np.sin(rows / z * 7.0 + rng.uniform(0, np.pi))
    layers[: max(2, z // 12)] = 0.9
    texture = ndimage.gaussian_filter(rng.standard_normal(shape_zyx), 4.0)
    echo = np.clip(layers[:, None, None] + 0.12 * texture / (np.abs(texture).max() + 1e-12), 0.05, 1.0)
    echo = ndimage.gaussian_filter(np.where(mask, lesion.echogenicity, echo), 1.0)
    image = _to_bmode(echo, _speckle(shape_zyx, rng, (1.2, 2.0, 1.0)), row_axis=0)
    return image, mask


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice overlap of two boolean masks (1.0 when both are empty)."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    total = a.sum() + b.sum()
    return 1.0 if total == 0 else float(2.0 * np.logical_and(a, b).sum() / total)
