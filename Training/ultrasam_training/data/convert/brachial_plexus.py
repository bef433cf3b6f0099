"""Supraclavicular brachial plexus ultrasound videos (Regional-US, github.com/Regional-US/brachial_plexus) -> COCO.

Raw layout (the repository's ``data/``): ``<machine>/videos/<video>.mp4`` with one JPG mask per
frame in ``<machine>/ac_masks/<video>/<video>_<NNN>.jpg`` (active-contour nerve masks; also
``demo/<video>_masks/``) and, for some Sonosite videos, ``Sonosite/needle/needle_masks/<video>/
<video>_<NNN>.jpg``. ``NNN`` is the 0-based frame number (the ac masks of a video run 000..n-1).
Any ``.jpg`` named ``<video>_<NNN>`` of a known video is a mask: ``needle`` when a folder on its
path mentions "needle", else ``nerve_plexus``. JPG masks are compressed, so they are thresholded:
luminance >= 100 of 255, the released converter's cut (well above JPEG ringing, below white).

Every frame with a mask file becomes an image (frames whose masks are empty are excluded unless
``keep_empty=True``); frames without any mask file are excluded and counted per video. Patient
and case id = video name (no patient key is published; frames of a video stay together).

Fixed from the released converter: masks are paired with frames by their frame number, not as
"the i-th sorted file" -- the needle masks skip frames (e.g. s071 has no 033, 034, 055, 068-100),
so the released pairing put needle masks on the wrong frames; a frame without a nerve mask no
longer stops the conversion; the demo video ``P_021_09`` keeps its name (it was keyed "P").
"""

from __future__ import annotations

import re
from collections import defaultdict
from functools import partial
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ultrasam_training.data.convert._volume_pairs import find_root, index_ranges
from ultrasam_training.data.convert.options import DEFAULTS, ConvertOptions
from ultrasam_training.data.convert.samples import Loaded, Sample, convert_samples, natural_key
from ultrasam_training.data.convert.video import read_frames
from ultrasam_training.data.errors import DatasetError
from ultrasam_training.data.images import read_array
from ultrasam_training.data.report import ConversionReport

DATASET = "brachial_plexus"
CATEGORIES = ("nerve_plexus", "needle")
URL = "https://github.com/Regional-US/brachial_plexus"
THRESHOLD = 100
_MASK_NAME = re.compile(r"^(?P<video>.+)_(?P<frame>\d+)$")
_LUMINANCE = np.array([0.299, 0.587, 0.114])
EXPECTED = "<machine>/videos/<video>.mp4 + <machine>/ac_masks/<video>/<video>_<NNN>.jpg, optionally inside data/"
FrameMasks = dict[str, dict[int, Path]]  #: category -> frame number -> mask file


def _has_videos(folder: Path) -> bool:
    """A folder with videos of its own below it, not only through a ``data/`` sub-folder (found first)."""
    return not (folder / "data").is_dir() and not (folder / "brachial_plexus").is_dir() and any(folder.rglob("*.mp4"))


def _mask(path: Path, threshold: int) -> np.ndarray:
    array = read_array(path)
    if array.ndim == 3:
        array = array[..., :3] @ _LUMINANCE
    return array >= threshold


def _load(pixels: np.ndarray, masks: dict[str, Path], threshold: int) -> Loaded:
    return Loaded(pixels, [(name, _mask(path, threshold)) for name, path in masks.items()])


def _index_masks(root: Path, videos: dict[str, Path], report: ConversionReport) -> dict[str, FrameMasks]:
    masks: dict[str, FrameMasks] = defaultdict(lambda: {name: {} for name in CATEGORIES})
    unmatched = []
    for path in sorted(root.rglob("*.jpg")):
        relative = path.relative_to(root)
        match = _MASK_NAME.match(path.stem)
        if match is None or match["video"] not in videos:
            unmatched.append(relative.as_posix())
            continue
        category = "needle" if any("needle" in part.lower() for part in relative.parts[:-1]) else "nerve_plexus"
        masks[match["video"]][category][int(match["frame"])] = path
    if unmatched:
        report.note(f"{len(unmatched)} .jpg file(s) name no video frame, left out (e.g. {', '.join(unmatched[:3])})")
    return masks


def _video_samples(
    video: Path, source: str, masks: FrameMasks, threshold: int, report: ConversionReport
) -> Iterator[Sample]:
    stem, without_mask, count = video.stem, [], 0
    try:
        for index, pixels in read_frames(video):
            count = index + 1
            present = {name: frames[index] for name, frames in masks.items() if index in frames}
            if not present:
                without_mask.append(index)
                continue
            yield Sample(
                f"{source}#frame={index}",
                partial(_load, pixels, present, threshold),
                patient_id=stem,
                case_id=stem,
                extra={"frame": index},
            )
    except DatasetError as exc:
        report.skip(source, str(exc))
        return
    if without_mask:
        report.exclude(f"{source}#frame={index_ranges(without_mask)}", "frames without a mask file")
    for name, frames in masks.items():
        if beyond := sorted(frame for frame in frames if frame >= count):
            report.skip(f"{source}#frame={index_ranges(beyond)}", f"{name} mask(s) beyond the video's {count} frames")


#: dataset-specific options (``--option NAME=VALUE``) and their defaults
OPTIONS: dict[str, Any] = {"threshold": THRESHOLD}


def convert(raw_dir: str | Path, out_dir: str | Path, options: ConvertOptions = DEFAULTS) -> ConversionReport:
    """Convert every masked frame of the brachial plexus videos into ``out_dir``."""
    threshold = options.extras(OPTIONS, DATASET)["threshold"]
    root = find_root(raw_dir, ["data", "brachial_plexus/data"], _has_videos, EXPECTED)
    report = ConversionReport(DATASET)
    videos: dict[str, Path] = {}
    for path in sorted(root.rglob("*.mp4")):
        if path.stem in videos:
            report.skip(
                path.relative_to(root).as_posix(), f"second video named {path.stem} (masks are matched by name)"
            )
        else:
            videos[path.stem] = path
    masks = _index_masks(root, videos, report)
    for stem in sorted(set(videos) - set(masks), key=natural_key):
        report.skip(videos[stem].relative_to(root).as_posix(), "no mask file for this video")
    samples = (
        sample
        for stem in sorted(masks, key=natural_key)
        for sample in _video_samples(
            videos[stem], videos[stem].relative_to(root).as_posix(), masks[stem], threshold, report
        )
    )
    return convert_samples(
        DATASET,
        CATEGORIES,
        samples,
        out_dir,
        options,
        description="Brachial plexus ultrasound videos (Regional-US)",
        url=URL,
        report=report,
        unit="frame",
    )
