"""Synthetic B-mode ultrasound with a known lesion mask, for the demo, tests and benchmarks.

The image is built the way B-mode images form: a smooth echogenicity map (tissue layers, a
hypoechoic lesion with a slightly irregular border), multiplied by fully developed speckle
(the magnitude of blurred complex Gaussian noise, i.e. Rayleigh statistics with an anisotropic
point-spread function), attenuated with depth and log-compressed to 8 bits. Everything is
seeded, so a test can rely on the exact mask.

:func:`phantom_case` generates whole sweeps and cine loops of named kinds (:data:`CASE_KINDS`) for
the propagation tests and ``Testing/benchmarks/bench_volume.py``; the seeds in
:data:`VALIDATION_SEEDS` are kept for choosing propagation's thresholds and never used to test them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import numpy as np
from scipy import ndimage

if TYPE_CHECKING:
    from ultrasam.frames import FrameStack
    from ultrasam.prompts import FramePrompts
    from ultrasam.volume import Volume


@dataclass(frozen=True)
class Lesion:
    """An ellipse (2D) or ellipsoid (3D) in pixel/voxel units, centre and semi-axes in array order.

    ``rotation`` (rows: the semi-axes' unit directions in array order) tilts it; None keeps the
    semi-axes along the array axes.
    """

    center: tuple[float, ...]
    radii: tuple[float, ...]
    echogenicity: float = 0.18
    border_roughness: float = 0.08
    rotation: tuple[tuple[float, ...], ...] | None = None


def _speckle(shape: tuple[int, ...], rng: np.random.Generator, sigma: tuple[float, ...]) -> np.ndarray:
    real = ndimage.gaussian_filter(rng.standard_normal(shape), sigma)
    imag = ndimage.gaussian_filter(rng.standard_normal(shape), sigma)
    envelope = np.hypot(real, imag)
    return envelope / envelope.mean()


def _lesion_mask(shape: tuple[int, ...], lesion: Lesion, rng: np.random.Generator) -> np.ndarray:
    grids = np.meshgrid(*[np.arange(n, dtype=np.float64) for n in shape], indexing="ij")
    offsets = [g - c for g, c in zip(grids, lesion.center)]
    if lesion.rotation is not None:
        offsets = [sum(w * o for w, o in zip(row, offsets)) for row in lesion.rotation]
    radius = np.sqrt(sum((o / r) ** 2 for o, r in zip(offsets, lesion.radii)))
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


# ------------------------------------------------------------------------------ generated sweeps and cine
CASE_KINDS = ("small", "large", "lobulated", "two-lesions", "edge", "oblique", "low-contrast", "cine")
"""What :func:`phantom_case` generates: sagittal sweeps over a lesion of varied size and shape, two
lesions one after the other, a lesion cut by the end of the sweep, an oblique lesion in a strongly
anisotropic oblique volume, a faint lesion, and a 2D+t cine of a moving, deforming object that
passes through the imaging plane."""

VALIDATION_SEEDS = tuple(range(100, 106))
"""Seeds the propagation stop rule was tuned on (see :class:`ultrasam.propagate.StopRule`); tests
and benchmarks use seeds outside this set, so the rule is never scored on what it was fitted to."""

SWEEP_SHAPE = (64, 160, 40)
"""``(k, j, i)``: depth, lateral, sweep — 40 sagittal slices of 64 x 160, as in ``ultrasam demo``."""
CINE_SHAPE = (40, 128, 160)
"""``(t, rows, columns)``; rows are the depth."""
_DEMO_SPACING, _DEMO_TILT = (0.9, 0.4, 0.6), 20.0  # i, j, k mm; degrees about i (``ultrasam demo``'s sweep)


@dataclass(frozen=True, eq=False)
class PhantomCase:
    """A generated volume (with its geometry) and the exact object mask ``[k, j, i]``.

    ``axis`` names the frames propagation walks: ``sagittal`` slices of a sweep, or ``axial``
    frames of a cine stored as a volume (k is time).
    """

    name: str
    seed: int
    volume: "Volume"
    mask: np.ndarray
    axis: str

    def stack(self) -> "FrameStack":
        from ultrasam.frames import frames_along

        return frames_along(self.volume, self.axis)

    def truth(self) -> np.ndarray:
        """The mask frame by frame, ``(frames, H, W)``, on the stack's own frames."""
        from ultrasam.frames import frames_along

        masks = frames_along(self.volume.with_array(self.mask), self.axis)
        return np.stack([masks.image(n) for n in range(len(masks))])

    def object_frames(self) -> np.ndarray:
        return np.flatnonzero(self.truth().any(axis=(1, 2)))

    def keyframes(self, count: int) -> list[int]:
        """``count`` frames spread evenly over the frames the object is on (1: its middle frame)."""
        frames = self.object_frames()
        ranks = np.linspace(0, len(frames) - 1, count + 2)[1:-1]
        return sorted({int(frames[int(round(r))]) for r in ranks})

    def box_prompts(self, count: int = 1, margin: float = 3.0) -> dict[int, "FramePrompts"]:
        """The object's box on each of ``count`` keyframes, ``margin`` pixels loose (a user's box
        is never tight), clipped to the frame."""
        from ultrasam.prompts import FramePrompts
        from ultrasam.transforms import mask_to_box

        truth = self.truth()
        height, width = truth.shape[1:]
        prompts = {}
        for n in self.keyframes(count):
            x0, y0, x1, y1 = mask_to_box(truth[n]) + np.array([-margin, -margin, margin, margin])
            prompts[n] = FramePrompts(n, box=np.array([max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)]))
        return prompts


def phantom_case(kind: str, seed: int = 0) -> PhantomCase:
    """One generated case of ``kind`` (see :data:`CASE_KINDS`); sizes and positions vary with ``seed``."""
    if kind not in _KINDS:
        raise ValueError(f"unknown phantom kind {kind!r}; choose from {CASE_KINDS}")
    rng = np.random.default_rng([seed, CASE_KINDS.index(kind)])
    return _KINDS[kind](rng, f"{kind}-{seed}", seed)


def _u(rng: np.random.Generator, low: float, high: float) -> float:
    return float(rng.uniform(low, high))


def _sweep_center(rng: np.random.Generator) -> tuple[float, float, float]:
    return _u(rng, 28, 36), _u(rng, 70, 90), _u(rng, 17, 23)


def _single(radii: Callable[[np.random.Generator], tuple[float, float, float]], low: float = 0.06, high: float = 0.12):
    def make(rng: np.random.Generator, name: str, seed: int) -> PhantomCase:
        lesion = Lesion(_sweep_center(rng), radii(rng), echogenicity=_u(rng, low, high))
        return _sweep_case(rng, name, seed, [lesion])

    return make


def _lobulated(rng: np.random.Generator, name: str, seed: int) -> PhantomCase:
    main = Lesion(_sweep_center(rng), (_u(rng, 10, 13), _u(rng, 24, 30), _u(rng, 7, 9)), 0.12, border_roughness=0.15)
    lobes = [
        Lesion(
            tuple(c + sign * _u(rng, 0.4, 0.6) * r for c, r in zip(main.center, main.radii)),
            tuple(r * _u(rng, 0.5, 0.7) for r in main.radii),
            0.12,
            border_roughness=0.15,
        )
        for sign in (-1, 1)
    ]
    return _sweep_case(rng, name, seed, [main, *lobes])


def _two_lesions(rng: np.random.Generator, name: str, seed: int) -> PhantomCase:
    first = Lesion(
        (_u(rng, 26, 34), _u(rng, 45, 60), _u(rng, 9, 11)), (_u(rng, 8, 11), _u(rng, 16, 22), _u(rng, 4, 5)), 0.12
    )
    second = Lesion(
        (_u(rng, 26, 34), _u(rng, 100, 115), _u(rng, 28, 30)), (_u(rng, 8, 11), _u(rng, 16, 22), _u(rng, 4, 5)), 0.12
    )
    return _sweep_case(rng, name, seed, [first, second])


def _edge(rng: np.random.Generator, name: str, seed: int) -> PhantomCase:
    lesion = Lesion(
        (_u(rng, 28, 36), _u(rng, 70, 90), _u(rng, 2, 4)), (_u(rng, 10, 13), _u(rng, 24, 30), _u(rng, 8, 10)), 0.12
    )
    return _sweep_case(rng, name, seed, [lesion])


def _oblique(rng: np.random.Generator, name: str, seed: int) -> PhantomCase:
    angle = np.deg2rad(_u(rng, 20, 30))  # the lesion's long axis turned from j towards i
    rotation = ((1.0, 0.0, 0.0), (0.0, np.cos(angle), np.sin(angle)), (0.0, -np.sin(angle), np.cos(angle)))
    lesion = Lesion(_sweep_center(rng), (_u(rng, 10, 13), _u(rng, 20, 24), _u(rng, 6, 8)), 0.12, rotation=rotation)
    return _sweep_case(rng, name, seed, [lesion], spacing=(1.0, 0.3, 0.75), tilt=35.0)


def _sweep_case(
    rng, name: str, seed: int, lesions: list[Lesion], spacing=_DEMO_SPACING, tilt: float = _DEMO_TILT
) -> PhantomCase:
    """Lesions in speckled tissue on :data:`SWEEP_SHAPE`, an oblique, anisotropic sweep (sagittal frames)."""
    from ultrasam.volume import Volume

    mask = np.zeros(SWEEP_SHAPE, bool)
    echo = _tissue(SWEEP_SHAPE, rng, texture_shape=SWEEP_SHAPE)
    for lesion in lesions:
        inside = _lesion_mask(SWEEP_SHAPE, lesion, rng)
        echo = np.where(inside, lesion.echogenicity, echo)
        mask |= inside
    image = _to_bmode(ndimage.gaussian_filter(echo, 1.0), _speckle(SWEEP_SHAPE, rng, (1.2, 2.0, 1.0)), row_axis=0)
    angle = np.deg2rad(tilt)
    direction = np.array([[1, 0, 0], [0, np.cos(angle), -np.sin(angle)], [0, np.sin(angle), np.cos(angle)]])
    return PhantomCase(
        name, seed, Volume(image, spacing=spacing, origin=(-12.0, 30.0, -8.0), direction=direction), mask, "sagittal"
    )


def _tissue(
    shape: tuple[int, ...], rng: np.random.Generator, texture_shape: tuple[int, ...], depth_axis: int = 0
) -> np.ndarray:
    """Layered echogenicity along ``depth_axis`` with a smooth texture (broadcast where ``texture_shape`` has 1s)."""
    rows = np.arange(shape[depth_axis], dtype=np.float64)
    layers = 0.55 + 0.15 * np.sin(rows / shape[depth_axis] * 7.0 + rng.uniform(0, np.pi))
    layers[: max(2, shape[depth_axis] // 12)] = 0.9
    profile = [1] * len(shape)
    profile[depth_axis] = shape[depth_axis]
    texture = ndimage.gaussian_filter(rng.standard_normal(texture_shape), 4.0)
    return np.clip(layers.reshape(profile) + 0.12 * texture / (np.abs(texture).max() + 1e-12), 0.05, 1.0)


def _cine(rng: np.random.Generator, name: str, seed: int) -> PhantomCase:
    """An object drifting sideways and bobbing, breathing in shape, that enters and leaves the plane."""
    from ultrasam.volume import Volume

    frames, height, width = CINE_SHAPE
    t = np.arange(frames, dtype=np.float64)[:, None, None]
    middle, half = _u(rng, 18, 22), _u(rng, 13, 15)  # frames where the object crosses the plane
    through = np.sqrt(np.clip(1.0 - ((t - middle) / half) ** 2, 0.0, None))  # its section grows, then shrinks
    breathing = np.sin(2 * np.pi * t / _u(rng, 10, 14))
    center_y = _u(rng, 58, 70) + _u(rng, 4, 8) * np.sin(2 * np.pi * t / _u(rng, 16, 24))
    center_x = _u(rng, 55, 65) + _u(rng, 1.0, 1.8) * t
    radius_y = _u(rng, 20, 26) * through * (1 + 0.12 * breathing)
    radius_x = _u(rng, 28, 34) * through * (1 - 0.10 * breathing)
    rows, cols = np.arange(height)[None, :, None], np.arange(width)[None, None, :]
    wobble = ndimage.gaussian_filter(rng.standard_normal(CINE_SHAPE), (2.0, 6.0, 6.0))
    wobble *= 0.1 / (np.abs(wobble).max() + 1e-12)
    with np.errstate(divide="ignore", invalid="ignore"):
        radius = np.hypot((rows - center_y) / radius_y, (cols - center_x) / radius_x)
    mask = (radius < 1.0 + wobble) & (through > 0)
    echo = np.where(mask, _u(rng, 0.1, 0.2), _tissue(CINE_SHAPE, rng, (1, height, width), depth_axis=1))
    echo = ndimage.gaussian_filter(echo, (0.0, 1.0, 1.0))
    image = _to_bmode(echo, _speckle(CINE_SHAPE, rng, (1.5, 1.2, 2.0)), row_axis=1)
    return PhantomCase(name, seed, Volume(image, spacing=(0.3, 0.3, 1.0)), mask, "axial")


_KINDS: dict[str, Callable[[np.random.Generator, str, int], PhantomCase]] = {
    "small": _single(lambda rng: (_u(rng, 7, 9), _u(rng, 14, 20), _u(rng, 4, 6))),
    "large": _single(lambda rng: (_u(rng, 16, 19), _u(rng, 34, 44), _u(rng, 11, 14))),
    "lobulated": _lobulated,
    "two-lesions": _two_lesions,
    "edge": _edge,
    "oblique": _oblique,
    "low-contrast": _single(lambda rng: (_u(rng, 11, 13), _u(rng, 26, 32), _u(rng, 8, 10)), low=0.28, high=0.34),
    "cine": _cine,
}
