"""EchoNet ``VolumeTracings.csv`` -> one filled left-ventricle mask per traced video frame.

Shared by the EchoNet-Dynamic and EchoNet-Pediatric converters. Two published column layouts:

* ``FileName,X1,Y1,X2,Y2,Frame`` (EchoNet-Dynamic): each row is one chord across the ventricle;
  the first row of a frame is the long axis. The outline is side A of rows 2.. followed by side B
  of rows 2.. in reverse order, as the EchoNet code and the released UltraSam converter build it;
* ``FileName,X,Y,Frame`` (EchoNet-Pediatric): the outline points in order. A ``Frame`` of
  ``No Systolic`` / ``No Diastolic`` marks a phase that was not traced (counted in a note).

The outline is filled with ``cv2.fillPoly`` (boundary pixels included) on coordinates rounded to
the nearest pixel, as the released converters filled it. Videos are decoded once, frame by frame,
and only the traced frames are kept in memory.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from ultrasam_training.data.convert._volume_pairs import index_ranges
from ultrasam_training.data.convert.samples import Loaded, Sample, natural_key
from ultrasam_training.data.convert.video import read_frames
from ultrasam_training.data.errors import DatasetError
from ultrasam_training.data.report import ConversionReport

CHORDS = ("FileName", "X1", "Y1", "X2", "Y2", "Frame")
OUTLINE = ("FileName", "X", "Y", "Frame")
UNTRACED = ("No Systolic", "No Diastolic")
CATEGORY = "left_ventricle"


@dataclass
class Tracings:
    """Outline points ``(n, 2)`` as ``x, y`` per video stem and CSV frame number, and what was left out."""

    outlines: dict[str, dict[int, np.ndarray]] = field(default_factory=dict)
    untraced: int = 0  #: "No Systolic"/"No Diastolic" rows
    bad_rows: list[int] = field(default_factory=list)  #: CSV line numbers that could not be parsed


def video_stem(file_name: str) -> str:
    """``"0X1A.avi"`` and ``"0X1A"`` both give ``"0X1A"`` (FileList.csv omits the extension in EchoNet-Dynamic)."""
    name = file_name.strip()
    return name[:-4] if name.lower().endswith(".avi") else name


def read_csv_rows(path: Path, required: tuple[str, ...]) -> list[dict[str, str]]:
    """Rows of a CSV file that must have the ``required`` columns; ``DatasetError`` otherwise."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            columns = [c.strip() for c in reader.fieldnames or []]
            missing = [c for c in required if c not in columns]
            if missing:
                raise DatasetError(f"{path.name}: missing column(s) {', '.join(missing)} (has {', '.join(columns)})")
            return [{k.strip(): (v or "").strip() for k, v in row.items() if k is not None} for row in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DatasetError(f"cannot read {path}: {exc}") from exc


def _outline(rows: list[tuple[float, ...]]) -> np.ndarray:
    if len(rows[0]) == 2:
        return np.asarray(rows, dtype=np.float64)
    chords = np.asarray(rows[1:], dtype=np.float64).reshape(-1, 4)
    side_a, side_b = chords[:, 0:2], chords[::-1, 2:4]
    return np.concatenate([side_a, side_b])


def read_tracings(path: Path) -> Tracings:
    """Parse either published layout of ``VolumeTracings.csv`` (see the module docstring)."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            header = tuple(c.strip() for c in next(csv.reader(handle), []))
    except OSError as exc:
        raise DatasetError(f"cannot read {path}: {exc}") from exc
    if header not in (CHORDS, OUTLINE):
        raise DatasetError(
            f"{path.name}: columns {', '.join(header)} are neither {','.join(CHORDS)} nor {','.join(OUTLINE)}"
        )
    values = header[1:-1]
    points: dict[str, dict[int, list[tuple[float, ...]]]] = defaultdict(lambda: defaultdict(list))
    tracings = Tracings()
    for line, row in enumerate(read_csv_rows(path, header), start=2):
        if row["Frame"] in UNTRACED:
            tracings.untraced += 1
            continue
        try:
            frame = int(float(row["Frame"]))
            point = tuple(float(row[c]) for c in values)
        except ValueError:
            tracings.bad_rows.append(line)
            continue
        points[video_stem(row["FileName"])][frame].append(point)
    for stem, frames in points.items():
        tracings.outlines[stem] = {frame: _outline(rows) for frame, rows in frames.items()}
    return tracings


def fill_outline(outline: np.ndarray, height: int, width: int) -> np.ndarray:
    """Boolean ``(height, width)`` mask of a closed outline ``[[x, y], ...]`` (>= 3 points), boundary included."""
    import cv2

    if len(outline) < 3:
        raise DatasetError(f"a traced outline needs at least 3 points, got {len(outline)}")
    canvas = np.zeros((height, width), np.uint8)
    cv2.fillPoly(canvas, [np.rint(outline).astype(np.int32).reshape(-1, 1, 2)], 1)
    return canvas.astype(bool)


def _frame_sample(pixels: np.ndarray, outline: np.ndarray) -> Loaded:
    height, width = pixels.shape[:2]
    return Loaded(pixels, [(CATEGORY, fill_outline(outline, height, width))])


def traced_frame_samples(
    video: Path,
    source: str,
    outlines: dict[int, np.ndarray],
    report: ConversionReport,
    *,
    frame_offset: int = 0,
    **sample_fields,
) -> Iterator[Sample]:
    """One :class:`Sample` per traced frame of ``video`` (CSV frame + ``frame_offset`` = 0-based video index).

    A video that cannot be read, and traced frames outside the video, are reported as skipped
    with ``source`` and the frame; ``sample_fields`` (patient_id, split, extra, ...) go to every sample.
    """
    wanted = {frame + frame_offset: frame for frame in sorted(outlines)}
    extra = sample_fields.pop("extra", {})
    if negative := sorted(index for index in wanted if index < 0):
        _skip_outside(report, source, wanted, negative, "before the first frame")
    remaining = {index for index in wanted if index >= 0}
    if not remaining:
        return
    count = 0
    try:
        for index, pixels in read_frames(video):
            count = index + 1
            if index in remaining:
                remaining.discard(index)
                yield Sample(
                    f"{source}#frame={index}",
                    partial(_frame_sample, pixels, outlines[wanted[index]]),
                    extra={**extra, "frame": index},
                    **sample_fields,
                )
            if not remaining:
                return
    except DatasetError as exc:
        report.skip(f"{source}#frame={index_ranges(sorted(remaining))}", str(exc))
        return
    _skip_outside(report, source, wanted, sorted(remaining), f"after the video's {count} frames")


def _skip_outside(
    report: ConversionReport, source: str, wanted: dict[int, int], indices: list[int], where: str
) -> None:
    csv_frames = ", ".join(str(wanted[index]) for index in indices)
    frames = index_ranges(indices) if indices[0] >= 0 else ",".join(str(index) for index in indices)
    report.skip(f"{source}#frame={frames}", f"traced frame {where} (CSV Frame {csv_frames})")


def folder_samples(
    folder: Path,
    prefix: str,
    report: ConversionReport,
    fields: Callable[[str, dict[str, str] | None], dict],
    *,
    frame_offset: int = 0,
) -> Iterator[Sample]:
    """Samples of one EchoNet folder (``Videos/*.avi``, ``VolumeTracings.csv``, optional ``FileList.csv``).

    ``fields(video_stem, file_list_row or None)`` gives the sample fields (patient_id, split, extra);
    ``prefix`` starts every ``source_path`` (``"A4C/"`` for a view folder, else ``""``).
    """
    tracings = read_tracings(folder / "VolumeTracings.csv")
    if tracings.untraced:
        report.note(
            f"{prefix}VolumeTracings.csv: {tracings.untraced} row(s) mark an untraced phase (No Systolic/No Diastolic)"
        )
    if tracings.bad_rows:
        lines = ", ".join(str(n) for n in tracings.bad_rows[:10])
        report.note(f"{prefix}VolumeTracings.csv: {len(tracings.bad_rows)} unreadable row(s) left out (lines {lines})")
    rows: dict[str, dict[str, str]] = {}
    if (folder / "FileList.csv").is_file():
        listed = read_csv_rows(folder / "FileList.csv", ("FileName", "Split"))
        rows = {video_stem(row["FileName"]): row for row in listed}
        if untraced := len(set(rows) - set(tracings.outlines)):
            report.note(f"{prefix}FileList.csv: {untraced} video(s) without any tracing (not converted)")
        if unlisted := len(set(tracings.outlines) - set(rows)):
            report.note(f"{prefix}VolumeTracings.csv: {unlisted} traced video(s) not in FileList.csv (no split)")
    else:
        report.note(f"{prefix}FileList.csv not found: no split recorded")
    for stem in sorted(tracings.outlines, key=natural_key):
        video, source = folder / "Videos" / f"{stem}.avi", f"{prefix}Videos/{stem}.avi"
        if not video.is_file():
            report.skip(source, "video named in VolumeTracings.csv not found")
            continue
        yield from traced_frame_samples(
            video, source, tracings.outlines[stem], report, frame_offset=frame_offset, **fields(stem, rows.get(stem))
        )
