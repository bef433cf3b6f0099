"""Result files: Slicer segmentations, labelmaps, PNG masks, COCO RLE and QC overlays.

Every writer refuses to replace an existing file unless ``overwrite=True``
(:class:`ultrasam.errors.OutputExistsError`) and writes atomically (:mod:`ultrasam.atomic`):
a failed write leaves nothing behind and the previous file, if any, untouched.

``.seg.nrrd`` is Slicer's segmentation format: an NRRD on the reference volume's exact grid
(``space directions``/``space origin`` in LPS) whose header carries the segmentation metadata
(``Segment{N}_ID/_Name/_Color/_LabelValue/_Layer/_Extent/_Tags``,
``Segmentation_MasterRepresentation``, ``Segmentation_ContainedRepresentationNames``, the
reference geometry). Segments that do not overlap share one layer (a 3D file); overlapping
segments go to further layers, stored as a 4D file whose first axis lists the layers, as Slicer
itself writes them.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ultrasam.atomic import UnwritableOutputError, atomic_write, probe_writable, refuse_existing, write_text_atomic
from ultrasam.errors import ImageError
from ultrasam.volume import Volume

DEFAULT_COLORS = (
    (0.902, 0.451, 0.361),
    (0.502, 0.682, 0.502),
    (0.565, 0.933, 0.565),
    (0.945, 0.839, 0.569),
    (0.847, 0.396, 0.310),
    (0.867, 0.510, 0.396),
)


VOLUME_SUFFIXES = (".seg.nrrd", ".nrrd", ".nii", ".nii.gz", ".mha")
# Formats whose writer adds a second, separately named data file, which an atomic rename cannot move.
DETACHED_SUFFIXES = (".mhd", ".nhdr", ".hdr", ".img")

PathArg = str | Path | None
NamedPaths = Mapping[str, PathArg] | Iterable[PathArg]


def _labelled(paths: NamedPaths, default: str) -> list[tuple[str, Path]]:
    """``(label, path)`` pairs for messages; ``None`` entries skipped, bare paths labelled ``default``."""
    pairs = paths.items() if isinstance(paths, Mapping) else ((default, p) for p in paths)
    return [(label, Path(path)) for label, path in pairs if path is not None]


def _same_file(a: Path, b: Path) -> bool:
    """Whether two spellings name one file: same resolved path, or (both existing) the same inode."""
    if os.path.normcase(os.path.realpath(a)) == os.path.normcase(os.path.realpath(b)):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _check_distinct(outputs: list[tuple[str, Path]], inputs: list[tuple[str, Path]]) -> None:
    """Two outputs on one path would leave only the last written; an output on an input destroys it."""
    for n, (label, path) in enumerate(outputs):
        for other_label, other in outputs[n + 1 :]:
            if _same_file(path, other):
                raise UnwritableOutputError(
                    f"{label} {path} and {other_label} {other} are the same file: give each output its own name"
                )
        for input_label, source in inputs:
            if _same_file(path, source):
                raise UnwritableOutputError(f"{label} {path} is {input_label}: writing it would destroy the input")


def _check_one(label: str, path: Path, overwrite: bool) -> None:
    """One output: not a folder, not existing unless ``overwrite``, and really writable where it goes."""
    if path.is_dir():
        raise UnwritableOutputError(f"{label} {path} is a folder: give a file name")
    if path.exists() and not overwrite:
        refuse_existing(path)
    try:
        probe_writable(path)
    except UnwritableOutputError as exc:
        raise UnwritableOutputError(f"{label}: {exc}") from None


def check_writable(paths: NamedPaths, overwrite: bool = False, inputs: NamedPaths = ()) -> None:
    """Fail before any work (minutes of inference) if the outputs cannot all be written as asked.

    ``paths``: output paths, or ``{label: path}`` so messages name the option (``None`` skipped).
    Refused: two outputs on one file, an output on one of ``inputs``, an output that is a folder,
    an existing file without ``overwrite`` (:class:`OutputExistsError`), and a folder that cannot
    be created or written, proven by creating and removing a file there (:class:`UnwritableOutputError`).
    """
    outputs = _labelled(paths, "output")
    _check_distinct(outputs, _labelled(inputs, "an input"))
    for label, path in outputs:
        _check_one(label, path, overwrite)


def check_mask_suffix(path: str | Path, one_frame: bool) -> None:
    """Refuse up front a mask file name no writer handles, or a PNG asked to hold several frames."""
    name = Path(path).name.lower()
    if name.endswith(".png"):
        if not one_frame:
            raise ImageError(f"{Path(path).name}: a PNG holds one frame; write several frames to .seg.nrrd or .nrrd")
        return
    if not name.endswith(VOLUME_SUFFIXES):
        raise ImageError(
            f"cannot write masks to {Path(path).name}: use .png (one frame), .seg.nrrd, .nrrd, .nii(.gz) or .mha"
        )


def _check_single_file_format(path: Path) -> None:
    """A detached header's data file would keep its temporary name and outlive the atomic rename."""
    if path.name.lower().endswith(DETACHED_SUFFIXES):
        raise ImageError(
            f"cannot write {path.name}: that format writes a second data file; use .nrrd, .nii(.gz) or .mha"
        )


@dataclass(frozen=True, eq=False)
class Segment:
    """One segment: a bool mask ``[k, j, i]`` on the reference volume's grid."""

    name: str
    mask: np.ndarray
    color: tuple[float, float, float] | None = None
    segment_id: str | None = None


def _segment_id(name: str, used: set[str]) -> str:
    base = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "Segment"
    candidate, n = base, 1
    while candidate in used:
        n += 1
        candidate = f"{base}_{n}"
    used.add(candidate)
    return candidate


def _extent(mask: np.ndarray) -> str:
    """``i0 i1 j0 j1 k0 k1`` of the non-zero voxels (Slicer's empty extent ``0 -1 ...`` if none)."""
    nonzero = np.nonzero(mask)
    if len(nonzero[0]) == 0:
        return "0 -1 0 -1 0 -1"
    k, j, i = nonzero
    return f"{i.min()} {i.max()} {j.min()} {j.max()} {k.min()} {k.max()}"


def _assign_layers(masks: list[np.ndarray]) -> list[int]:
    """First layer where each mask overlaps nothing already there."""
    layers: list[np.ndarray] = []
    chosen = []
    for mask in masks:
        for n, occupied in enumerate(layers):
            if not np.any(occupied & mask):
                occupied |= mask
                chosen.append(n)
                break
        else:
            layers.append(mask.copy())
            chosen.append(len(layers) - 1)
    return chosen


def _reference_geometry(volume: Volume) -> str:
    """Slicer's "Reference image geometry" string: IJK→RAS row-major, then the extent."""
    matrix = volume.ijk_to_ras().ravel()
    ni, nj, nk = volume.shape_ijk
    values = [f"{v:.17g}" for v in matrix] + [str(v) for v in (0, ni - 1, 0, nj - 1, 0, nk - 1)]
    return ";".join(values) + ";"


def write_seg_nrrd(
    path: str | Path,
    volume: Volume,
    segments: Sequence[Segment] | Mapping[str, np.ndarray],
    overwrite: bool = False,
    compress: bool = True,
) -> Path:
    """Write a Slicer ``.seg.nrrd`` on ``volume``'s grid; ``segments`` as :class:`Segment` or {name: mask}."""
    if isinstance(segments, Mapping):
        segments = [Segment(name, mask) for name, mask in segments.items()]
    if not segments:
        raise ImageError("no segments to write")
    grid = volume.array.shape[:3]
    masks = []
    for segment in segments:
        mask = np.asarray(segment.mask)
        if mask.shape != grid:
            raise ImageError(f"segment {segment.name!r} has shape {mask.shape}, the volume grid is {grid} ([k, j, i])")
        masks.append(mask.astype(bool))
    layer_of = _assign_layers(masks)
    n_layers = max(layer_of) + 1
    data = np.zeros((*grid, n_layers), np.uint8)
    used: set[str] = set()
    label_in_layer = [0] * n_layers
    metadata: dict[str, str] = {}
    for n, (segment, mask, layer) in enumerate(zip(segments, masks, layer_of)):
        label_in_layer[layer] += 1
        label = label_in_layer[layer]
        if label > 255:
            raise ImageError("more than 255 segments in one layer are not supported")
        data[..., layer][mask] = label
        color = segment.color if segment.color is not None else DEFAULT_COLORS[n % len(DEFAULT_COLORS)]
        segment_id = segment.segment_id or _segment_id(segment.name, used)
        metadata.update(
            {
                f"Segment{n}_ID": segment_id,
                f"Segment{n}_Name": segment.name,
                f"Segment{n}_NameAutoGenerated": "0",
                f"Segment{n}_Color": " ".join(f"{float(c):.6g}" for c in color),
                f"Segment{n}_ColorAutoGenerated": "0",
                f"Segment{n}_LabelValue": str(label),
                f"Segment{n}_Layer": str(layer),
                f"Segment{n}_Extent": _extent(mask),
                f"Segment{n}_Tags": "",
            }
        )
    metadata.update(
        {
            "Segmentation_MasterRepresentation": "Binary labelmap",
            "Segmentation_ContainedRepresentationNames": "Binary labelmap|",
            "Segmentation_ReferenceImageExtentOffset": "0 0 0",
            "Segmentation_ConversionParameters": "Reference image geometry|"
            + _reference_geometry(volume)
            + "|Image geometry description string determining the geometry of the labelmap.&",
        }
    )
    image = volume.to_sitk(data if n_layers > 1 else data[..., 0])
    for key, value in metadata.items():
        image.SetMetaData(key, value)
    return atomic_write(path, lambda tmp: sitk.WriteImage(image, str(tmp), useCompression=compress), overwrite)


def write_labelmap(
    path: str | Path, volume: Volume, labels: np.ndarray, overwrite: bool = False, compress: bool = True
) -> Path:
    """A labelmap on ``volume``'s grid as NRRD, NIfTI or MHA (format from the extension)."""
    _check_single_file_format(Path(path))
    labels = np.asarray(labels)
    if labels.shape != volume.array.shape[:3]:
        raise ImageError(f"labelmap shape {labels.shape} does not match the volume grid {volume.array.shape[:3]}")
    if labels.dtype == bool:
        labels = labels.astype(np.uint8)
    if not np.issubdtype(labels.dtype, np.integer):
        raise ImageError(f"a labelmap must hold integers, got {labels.dtype}")
    dtype = np.uint8 if labels.min() >= 0 and labels.max() <= 255 else np.int32
    image = volume.to_sitk(labels.astype(dtype))
    return atomic_write(path, lambda tmp: sitk.WriteImage(image, str(tmp), useCompression=compress), overwrite)


def _png_bytes(array: np.ndarray) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def write_mask_png(path: str | Path, mask: np.ndarray, overwrite: bool = False) -> Path:
    """A 2D mask as an 8-bit PNG: 255 inside, 0 outside."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ImageError(f"a PNG mask must be 2D (H, W), got shape {mask.shape}")
    data = _png_bytes((mask > 0).astype(np.uint8) * 255)
    return atomic_write(path, lambda tmp: tmp.write_bytes(data), overwrite)


def write_image_png(path: str | Path, image: np.ndarray, overwrite: bool = False) -> Path:
    """A frame as PNG: 8/16-bit grey and 8-bit RGB/RGBA as they are, anything else windowed to 8-bit RGB."""
    image = np.asarray(image)
    keep = (image.ndim == 2 and image.dtype in (np.uint8, np.uint16)) or (
        image.ndim == 3 and image.shape[2] in (3, 4) and image.dtype == np.uint8
    )
    if not keep:
        from ultrasam.transforms import to_rgb_uint8

        image = to_rgb_uint8(image)
    data = _png_bytes(np.ascontiguousarray(image))
    return atomic_write(path, lambda tmp: tmp.write_bytes(data), overwrite)


def write_frame_masks(
    path: str | Path, stack, masks: Mapping[int, np.ndarray], overwrite: bool = False, name: str = "Segment_1"
) -> Path:
    """Per-frame masks of a :class:`ultrasam.frames.FrameStack` as one file on the volume's grid.

    ``.seg.nrrd`` → a Slicer segmentation with one segment ``name``; ``.nrrd``, ``.nii``,
    ``.nii.gz``, ``.mha`` → a 0/1 labelmap. Frames without a mask are 0.
    """
    path = Path(path)
    labels = stack.to_volume_array({n: np.asarray(m, dtype=bool) for n, m in masks.items()}, dtype=np.uint8)
    if path.name.lower().endswith(".seg.nrrd"):
        return write_seg_nrrd(path, stack.volume, [Segment(name, labels.astype(bool))], overwrite=overwrite)
    if not path.name.lower().endswith(VOLUME_SUFFIXES):
        raise ImageError(f"cannot write a mask volume to {path.name}: use .seg.nrrd, .nrrd, .nii(.gz) or .mha")
    return write_labelmap(path, stack.volume, labels, overwrite=overwrite)


def coco_rle(mask: np.ndarray) -> dict:
    """COCO compressed RLE ``{"size": [h, w], "counts": str}`` of a 2D mask."""
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(np.asarray(mask, dtype=np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def write_coco_rle(
    path: str | Path,
    masks: Sequence[np.ndarray | None] | Mapping[int, np.ndarray | None],
    file_names: Sequence[str] | Mapping[int, str] | None = None,
    scores: Sequence[float] | Mapping[int, float] | None = None,
    category: str = "object",
    image_name: str | None = None,
    overwrite: bool = False,
) -> Path:
    """COCO JSON: one image per mask entry (id = index + 1), one RLE annotation per non-empty mask.

    Image ``file_name``: ``file_names[index]`` when given; else, with ``image_name``, that name for
    a single mask and ``{stem}__{index:05d}.png`` per frame otherwise (the US-43d naming); else
    ``frame_{index:05d}.png``. ``scores`` (predicted IoU) are stored as ``score`` on each
    annotation; ``bbox`` and ``area`` come from pycocotools.
    """
    from pycocotools import mask as mask_utils

    items = sorted(masks.items()) if isinstance(masks, Mapping) else list(enumerate(masks))
    if file_names is None and image_name is not None:
        stem = Path(image_name).name.split(".")[0]
        file_names = {index: image_name if len(items) == 1 else f"{stem}__{index:05d}.png" for index, _ in items}
    images, annotations = [], []
    for index, mask in items:
        if mask is None:
            continue
        mask = np.asarray(mask)
        if mask.ndim != 2:
            raise ImageError(f"mask {index} must be 2D (H, W), got shape {mask.shape}")
        name = file_names[index] if file_names is not None else f"frame_{index:05d}.png"
        image_id = int(index) + 1
        images.append({"id": image_id, "file_name": name, "height": int(mask.shape[0]), "width": int(mask.shape[1])})
        if not mask.any():
            continue
        rle = coco_rle(mask)
        encoded = {"size": rle["size"], "counts": rle["counts"].encode("ascii")}
        annotation = {
            "id": len(annotations) + 1,
            "image_id": image_id,
            "category_id": 1,
            "segmentation": rle,
            "area": int(mask_utils.area(encoded)),
            "bbox": [float(v) for v in mask_utils.toBbox(encoded)],
            "iscrowd": 0,
        }
        if scores is not None:
            annotation["score"] = float(scores[index])
        annotations.append(annotation)
    document = {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": 1, "name": category, "supercategory": "none"}],
    }
    return write_text_atomic(path, json.dumps(document, indent=1) + "\n", overwrite)


# ---- QC overlays --------------------------------------------------------------------------------
MASK_TINT = (255, 64, 64)
POSITIVE_COLOR = (64, 255, 64)
NEGATIVE_COLOR = (255, 48, 48)
BOX_COLOR = (255, 220, 0)


def overlay_image(image: np.ndarray, mask: np.ndarray | None = None, prompts=None, alpha: float = 0.35) -> np.ndarray:
    """RGB uint8 picture of ``image`` with the mask tinted and outlined and the prompts drawn.

    ``prompts`` is a :class:`ultrasam.prompts.FramePrompts` in this image's pixels (or None):
    positive points green, negative red, the box yellow (drawn just outside its pixels).
    """
    from skimage.draw import disk, rectangle_perimeter
    from skimage.segmentation import find_boundaries

    from ultrasam.transforms import to_rgb_uint8

    rgb = to_rgb_uint8(image).copy()
    height, width = rgb.shape[:2]
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != (height, width):
            raise ImageError(f"mask shape {mask.shape} does not match the image {(height, width)}")
        tint = np.array(MASK_TINT, dtype=np.float32)
        rgb[mask] = np.clip((1 - alpha) * rgb[mask] + alpha * tint, 0, 255).astype(np.uint8)
        rgb[find_boundaries(mask, mode="inner")] = MASK_TINT
    if prompts is not None:
        radius = max(2.0, min(height, width) / 100.0)
        if prompts.box is not None:
            x0, y0, x1, y1 = prompts.box
            start = (int(np.clip(round(y0), 0, height - 1)), int(np.clip(round(x0), 0, width - 1)))
            end = (int(np.clip(round(y1) - 1, 0, height - 1)), int(np.clip(round(x1) - 1, 0, width - 1)))
            rows, cols = rectangle_perimeter(start, end=end, shape=(height, width), clip=True)
            rgb[rows, cols] = BOX_COLOR
        for (x, y), label in zip(prompts.points, prompts.labels):
            rows, cols = disk((y, x), radius + 1, shape=(height, width))
            rgb[rows, cols] = (0, 0, 0)
            rows, cols = disk((y, x), radius, shape=(height, width))
            rgb[rows, cols] = POSITIVE_COLOR if label == 1 else NEGATIVE_COLOR
    return rgb


def write_overlay_png(
    path: str | Path, image: np.ndarray, mask: np.ndarray | None = None, prompts=None, overwrite: bool = False
) -> Path:
    """Save :func:`overlay_image` as a PNG."""
    data = _png_bytes(overlay_image(image, mask, prompts))
    return atomic_write(path, lambda tmp: tmp.write_bytes(data), overwrite)


def montage_indices(
    n_frames: int, masks: Mapping[int, np.ndarray], prompted: Sequence[int], max_tiles: int = 12
) -> list[int]:
    """Which frames a QC montage shows: every prompted frame, then evenly spread frames with a mask."""
    chosen = list(dict.fromkeys(int(n) for n in prompted))[:max_tiles]
    with_mask = [n for n in sorted(masks) if n not in chosen and masks[n] is not None and np.any(masks[n])]
    room = max_tiles - len(chosen)
    if room > 0 and with_mask:
        picks = np.linspace(0, len(with_mask) - 1, num=min(room, len(with_mask))).round().astype(int)
        chosen += [with_mask[p] for p in dict.fromkeys(picks.tolist())]
    if not chosen:
        chosen = [n_frames // 2]
    return sorted(chosen)


def montage_image(
    stack,
    masks: Mapping[int, np.ndarray],
    prompts: Mapping | None = None,
    max_tiles: int = 12,
    tile: int = 256,
    prompted: Sequence[int] = (),
) -> np.ndarray:
    """A grid of overlays of a :class:`ultrasam.frames.FrameStack`'s prompted and propagated frames.

    ``prompts`` ({index: FramePrompts}) are drawn; ``prompted`` names further prompted frames
    (shown first, captioned "prompt") when their prompts are not at hand.
    """
    from PIL import Image, ImageDraw

    prompts = prompts or {}
    prompted = list(dict.fromkeys([*prompts, *prompted]))
    indices = montage_indices(len(stack), masks, prompted, max_tiles)
    tiles = []
    for n in indices:
        picture = overlay_image(stack.image(n), masks.get(n), prompts.get(n))
        pil = Image.fromarray(picture)
        pil.thumbnail((tile, tile))
        canvas = Image.new("RGB", (tile, tile + 14), (0, 0, 0))
        canvas.paste(pil, ((tile - pil.width) // 2, 14 + (tile - pil.height) // 2))
        caption = f"{stack.axis} {n}" + (" (prompt)" if n in prompted else "")
        ImageDraw.Draw(canvas).text((2, 1), caption, fill=(255, 255, 255))
        tiles.append(np.asarray(canvas))
    columns = int(np.ceil(np.sqrt(len(tiles))))
    rows = int(np.ceil(len(tiles) / columns))
    height, width = tiles[0].shape[:2]
    grid = np.zeros((rows * height, columns * width, 3), np.uint8)
    for t, picture in enumerate(tiles):
        r, c = divmod(t, columns)
        grid[r * height : (r + 1) * height, c * width : (c + 1) * width] = picture
    return grid


def write_montage_png(
    path: str | Path,
    stack,
    masks: Mapping[int, np.ndarray],
    prompts: Mapping | None = None,
    max_tiles: int = 12,
    overwrite: bool = False,
    prompted: Sequence[int] = (),
) -> Path:
    """Save :func:`montage_image` as a PNG (QC for a propagated volume)."""
    data = _png_bytes(montage_image(stack, masks, prompts, max_tiles, prompted=prompted))
    return atomic_write(path, lambda tmp: tmp.write_bytes(data), overwrite)
