"""The volume half of ``ultrasam demo``: phantom volume + Slicer markups files in, ``.seg.nrrd``
and a QC montage out; 3D Dice, Dice per lesion slice, voxels written where there is no lesion, and
slices per second against the known lesion."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ultrasam.phantom import Lesion, dice, synthetic_volume

# Anisotropic in-plane spacing (j 0.4 mm, k 0.6 mm) and an oblique direction, as real sweeps have.
SPACING_IJK = (0.9, 0.4, 0.6)
TILT_DEGREES = 20.0


def phantom_volume(seed: int = 0):
    """A ``Volume`` with an ellipsoidal lesion and its ``[k, j, i]`` mask."""
    from ultrasam.volume import Volume

    shape = (64, 160, 40)  # k (depth), j, i
    lesion = Lesion(center=(32, 80, 20), radii=(15, 36, 10), echogenicity=0.1)
    image, mask = synthetic_volume(shape, lesion=lesion, seed=seed)
    angle = np.deg2rad(TILT_DEGREES)
    direction = np.array([[1, 0, 0], [0, np.cos(angle), -np.sin(angle)], [0, np.sin(angle), np.cos(angle)]])
    return Volume(image, spacing=SPACING_IJK, origin=(-12.0, 30.0, -8.0), direction=direction), mask


def lesion_markups(volume, mask: np.ndarray, slice_index: int, roi_path: Path, points_path: Path, overwrite: bool) -> None:
    """An ROI around the lesion's cross-section on sagittal slice ``slice_index``, and a file with one
    click inside it (for point-capable models; box-trained LiteMedSAM is prompted with the ROI only)."""
    from ultrasam.markups import MarkupRoi, write_mrk_json

    ks, js = np.nonzero(mask[:, :, slice_index])
    low = np.array([slice_index, js.min() - 3, ks.min() - 3], float)  # (i, j, k), a user's loose box
    high = np.array([slice_index, js.max() + 3, ks.max() + 3], float)
    center_ijk = (low + high) / 2
    axes = volume.direction  # ROI axes along the volume's axes: columns are unit i, j, k directions
    size = (high - low + np.array([0.0, 1.0, 1.0])) * volume.spacing
    size[0] = 0.0  # flat: drawn on one sagittal slice
    center = volume.index_to_physical(center_ijk[None], "lps")[0]
    write_mrk_json(roi_path, roi=MarkupRoi(center, axes, size, "lesion"), overwrite=overwrite)
    click = volume.index_to_physical(np.array([[slice_index, js.mean(), ks.mean()]]), "ras")
    write_mrk_json(points_path, points=click, labels=[1], space="ras", coordinate_system="RAS", overwrite=overwrite)


def run_volume(predictor, out: Path, overwrite: bool) -> dict[int, float]:
    import SimpleITK as sitk

    from ultrasam import pipeline
    from ultrasam.atomic import atomic_write

    volume, truth = phantom_volume()
    volume_path = out / "phantom_volume.nrrd"

    atomic_write(volume_path, lambda tmp: sitk.WriteImage(volume.to_sitk(), str(tmp), True), overwrite=overwrite)
    middle = volume.shape_ijk[0] // 2
    roi_path, points_path = out / "lesion_roi.mrk.json", out / "lesion_click.mrk.json"
    lesion_markups(volume, truth, middle, roi_path, points_path, overwrite)

    stack = pipeline.load(volume_path, axis="sagittal")
    runs = {"ROI": ([roi_path], "phantom_lesion", "phantom_overlay")}
    if predictor.model.spec.supports("point"):
        runs["one click"] = ([points_path], "phantom_lesion_click", "phantom_overlay_click")
    else:
        print(f"3D volume: {predictor.model.spec.family} takes boxes only, so the volume is prompted with the ROI only")
    per_slice: dict[int, float] = {}
    for label, (markups, seg_name, overlay_name) in runs.items():
        prompts = pipeline.prompts(stack, markups=markups)
        start = time.perf_counter()
        results = pipeline.segment(stack, prompts, predictor, propagate=True, progress=True)
        seconds = time.perf_counter() - start
        pipeline.save(out / f"{seg_name}.seg.nrrd", stack, results, overlay=out / f"{overlay_name}.png",
                      prompts=prompts, overwrite=overwrite)
        report_volume(stack, results, truth, prompts, seconds, label)
        if label == "ROI":
            per_slice = {i: dice(results[i].mask, truth[:, :, i]) if i in results else 0.0
                         for i in range(volume.shape_ijk[0]) if truth[:, :, i].any()}
    return per_slice


def report_volume(stack, results, truth: np.ndarray, prompts, seconds: float, label: str = "ROI") -> None:
    """Print how well the sweep did against the known lesion: over the volume, per slice, and how fast."""
    masks = stack.to_volume_array({n: r.mask for n, r in results.items()}, dtype=bool)
    lesion_slices = truth.any(axis=(0, 1))
    scores = [dice(masks[:, :, i], truth[:, :, i]) for i in np.flatnonzero(lesion_slices)]
    print(
        f"3D volume from {label}: {len(results)} of {len(stack)} sagittal slices segmented ({len(prompts)} prompted), "
        f"lesion on {int(lesion_slices.sum())}; 3D Dice {dice(masks, truth):.3f}; mean Dice over the lesion slices "
        f"{np.mean(scores):.3f}; {int(masks[:, :, ~lesion_slices].sum())} voxels written on the "
        f"{int((~lesion_slices).sum())} lesion-free slices; {len(results) / seconds:.2f} slices/s ({seconds:.1f} s)"
    )
    for end in results.sweeps:
        print(f"  propagation {end}")
