"""Slicer markups files (``.mrk.json``): point lists and ROIs as prompts, in physical space.

Reads what Slicer's markups JSON storage node writes (schema ``markups-schema-v1.0.x``):
``markups[]`` of ``type`` ``"Fiducial"`` (a point list) or ``"ROI"``; other types (lines, curves,
planes, angles) are refused. Positions are converted once, here, to **LPS** millimetres (the
ITK/SimpleITK frame of :class:`ultrasam.volume.Volume`); ``coordinateSystem`` may be ``"LPS"``
(Slicer's default when saving) or ``"RAS"``, ``coordinateUnits`` ``"mm"`` or ``"um"``.

ROI geometry: ``center`` and ``size`` (full edge lengths) in the file's coordinate system, and
``orientation``, 9 numbers forming a row-major 3x3 matrix whose *columns* are the ROI's x, y, z
axes (the schema: "[orientation[0], orientation[3], orientation[6]] is the x vector"). An
LPS file stores ``diag(-1, -1, 1) @ R`` where ``R`` is the orientation Slicer shows in RAS.

Control points whose ``positionStatus`` is ``"undefined"`` or ``"preview"`` (not yet placed) are
skipped. ``selected`` (the check box in Slicer's control-point table) is kept but does not
change a point's meaning.

**Negative (background) points.** A point is negative when

* its file is given as a negative list (``read_markups(path, negative=True)``, CLI
  ``--negative-points``), or
* its **label starts with "-"** (e.g. rename ``F-3`` to ``-F-3``), or
* its **description contains "negative"** (any case).

Both the label and the description are editable in Slicer's Markups module, in the control
point table (double-click the cell), so a single point list can carry both kinds of click.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ultrasam.atomic import write_text_atomic
from ultrasam.errors import PromptError
from ultrasam.volume import check_space

SCHEMA_URL = (
    "https://raw.githubusercontent.com/slicer/slicer/master/Modules/Loadable/Markups/Resources/Schema/"
    "markups-schema-v1.0.3.json#"
)
NEGATIVE_LABEL_PREFIX = "-"
NEGATIVE_DESCRIPTION_WORD = "negative"
_FLIP = np.array([-1.0, -1.0, 1.0])  # LPS <-> RAS for positions
_UNITS = {"mm": 1.0, "um": 1e-3}
_SKIPPED_STATUS = ("undefined", "preview")


def is_negative_point(label: str, description: str) -> bool:
    """The per-point negative convention (see the module docstring)."""
    return label.strip().startswith(NEGATIVE_LABEL_PREFIX) or NEGATIVE_DESCRIPTION_WORD in description.lower()


def _to_space(lps: np.ndarray, space: str) -> np.ndarray:
    return lps * _FLIP if check_space(space) == "ras" else lps.copy()


@dataclass(frozen=True, eq=False)
class MarkupPoint:
    """One control point: ``position`` in LPS mm, plus what Slicer's table shows."""

    position: np.ndarray
    label: str = ""
    description: str = ""
    selected: bool = True
    negative: bool = False
    list_name: str = ""
    number: int = 1  # 1-based place in the whole prompt set, for messages

    def position_in(self, space: str = "lps") -> np.ndarray:
        return _to_space(self.position, space)

    def describe(self) -> str:
        """``point 3 ('F-3', RAS (1.0, 2.0, 3.0))``: how errors name this point."""
        ras = self.position_in("ras")
        coords = ", ".join(f"{v:.2f}" for v in ras)
        return f"point {self.number} ({self.label!r}, RAS ({coords}))"


@dataclass(frozen=True, eq=False)
class MarkupRoi:
    """An oriented box: ``center`` (LPS mm), ``axes`` 3x3 whose columns are its unit axes in LPS,
    ``size`` the full edge lengths along those axes (mm)."""

    center: np.ndarray
    axes: np.ndarray = field(default_factory=lambda: np.eye(3))
    size: np.ndarray = field(default_factory=lambda: np.ones(3))
    name: str = "ROI"

    def corners(self, space: str = "lps") -> np.ndarray:
        """The 8 corners ``(8, 3)``; corner ``n`` takes ``±size/2`` along axis ``a`` by bit ``a`` of ``n``."""
        signs = np.array([[(n >> a) & 1 for a in range(3)] for n in range(8)], dtype=float) * 2 - 1
        lps = self.center + (signs * (np.asarray(self.size) / 2.0)) @ np.asarray(self.axes).T
        return lps * _FLIP if check_space(space) == "ras" else lps

    def describe(self) -> str:
        ras = self.center * _FLIP
        return f"ROI {self.name!r} (centre RAS ({', '.join(f'{v:.2f}' for v in ras)}), size {tuple(round(float(s), 2) for s in self.size)} mm)"


@dataclass(frozen=True, eq=False)
class Markups:
    """All prompts read from one or more markups files."""

    points: tuple[MarkupPoint, ...] = ()
    rois: tuple[MarkupRoi, ...] = ()
    sources: tuple[Path, ...] = ()

    def positions(self, space: str = "lps") -> np.ndarray:
        """``(N, 3)`` point positions in ``space``."""
        if not self.points:
            return np.zeros((0, 3))
        return np.stack([p.position_in(space) for p in self.points])

    @property
    def labels(self) -> np.ndarray:
        """``(N,)`` SAM point labels: 1 positive, 0 negative."""
        return np.array([0 if p.negative else 1 for p in self.points], dtype=np.int64)

    def __add__(self, other: "Markups") -> "Markups":
        points = tuple(
            MarkupPoint(p.position, p.label, p.description, p.selected, p.negative, p.list_name, n + 1)
            for n, p in enumerate(self.points + other.points)
        )
        return Markups(points, self.rois + other.rois, self.sources + other.sources)


def _vector(value, what: str, path: Path, count: int = 3) -> np.ndarray:
    try:
        array = np.asarray(value, dtype=float).reshape(count)
    except (TypeError, ValueError) as exc:
        raise PromptError(f"{path}: {what} must be {count} numbers, got {value!r}") from exc
    if not np.all(np.isfinite(array)):
        raise PromptError(f"{path}: {what} contains non-finite values {value!r}")
    return array


def _parse_markup(markup: dict, path: Path, negative: bool, first_number: int):
    kind = markup.get("type")
    name = str(markup.get("name", "") or kind or "")
    system = str(markup.get("coordinateSystem", "LPS"))
    if system.upper() not in ("LPS", "RAS"):
        raise PromptError(f"{path}: unknown coordinateSystem {system!r} in markup {name!r}; expected 'LPS' or 'RAS'")
    to_lps = _FLIP if system.upper() == "RAS" else np.ones(3)
    units = markup.get("coordinateUnits", "mm")
    if isinstance(units, list):  # DICOM-style code [value, scheme, meaning]
        units = units[0] if units else "mm"
    if units not in _UNITS:
        raise PromptError(f"{path}: unsupported coordinateUnits {units!r} in markup {name!r}; expected 'mm' or 'um'")
    scale = _UNITS[units]

    if kind == "Fiducial":
        points = []
        for index, cp in enumerate(markup.get("controlPoints", []) or []):
            if str(cp.get("positionStatus", "defined")) in _SKIPPED_STATUS:
                continue
            label = str(cp.get("label", "") or f"{name}-{index + 1}")
            if "position" not in cp:
                raise PromptError(f"{path}: control point {label!r} of {name!r} has no position")
            description = str(cp.get("description", "") or "")
            position = _vector(cp["position"], f"position of control point {label!r}", path) * scale * to_lps
            points.append(
                MarkupPoint(
                    position=position,
                    label=label,
                    description=description,
                    selected=bool(cp.get("selected", True)),
                    negative=negative or is_negative_point(label, description),
                    list_name=name,
                    number=first_number + len(points),
                )
            )
        return points, []

    if kind == "ROI":
        if markup.get("insideOut", False):
            raise PromptError(f"{path}: ROI {name!r} is inside-out (it selects everything outside the box); it cannot be a box prompt")
        if "center" in markup and "size" in markup:
            center = _vector(markup["center"], f"ROI {name!r} center", path)
            size = _vector(markup["size"], f"ROI {name!r} size", path)
        else:  # bounding-box ROI saved without its derived centre/size: rebuild from the points
            cps = [cp for cp in markup.get("controlPoints", []) or [] if "position" in cp]
            if len(cps) < 2:
                raise PromptError(f"{path}: ROI {name!r} has neither center/size nor two control points")
            coords = np.array([_vector(cp["position"], "ROI control point", path) for cp in cps])
            center, size = (coords.min(0) + coords.max(0)) / 2, coords.max(0) - coords.min(0)
        orientation = _vector(markup.get("orientation", np.eye(3).ravel()), f"ROI {name!r} orientation", path, 9)
        axes = orientation.reshape(3, 3)  # row-major; columns are the ROI axes in file coordinates
        if np.any(size < 0):
            raise PromptError(f"{path}: ROI {name!r} has a negative size {tuple(size)}")
        axes_lps = to_lps[:, None] * axes
        norms = np.linalg.norm(axes_lps, axis=0)
        if np.any(norms < 1e-9):
            raise PromptError(f"{path}: ROI {name!r} orientation has a zero axis")
        roi = MarkupRoi(center=center * scale * to_lps, axes=axes_lps / norms, size=size * scale, name=name or "ROI")
        return [], [roi]

    raise PromptError(
        f"{path}: markup {name!r} has type {kind!r}; only point lists ('Fiducial') and 'ROI' can be prompts"
    )


def read_markups(path: str | Path, negative: bool = False) -> Markups:
    """Read a Slicer ``.mrk.json``; ``negative=True`` makes every point in it a negative click."""
    path = Path(path)
    if not path.is_file():
        raise PromptError(f"markups file not found: {path}")
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PromptError(f"{path} is not a valid markups JSON file: {exc}") from exc
    if not isinstance(document, dict) or not isinstance(document.get("markups"), list):
        raise PromptError(f"{path} is not a Slicer markups file: no 'markups' list")
    points: list[MarkupPoint] = []
    rois: list[MarkupRoi] = []
    for markup in document["markups"]:
        if not isinstance(markup, dict):
            raise PromptError(f"{path}: each entry of 'markups' must be an object")
        new_points, new_rois = _parse_markup(markup, path, negative, len(points) + 1)
        points += new_points
        rois += new_rois
    if not points and not rois:
        raise PromptError(f"{path} contains no placed control points and no ROI: nothing to prompt with")
    return Markups(tuple(points), tuple(rois), (path,))


def read_prompt_files(positive: Iterable[str | Path] = (), negative: Iterable[str | Path] = ()) -> Markups:
    """Merge several markups files; every point of a ``negative`` file is negative."""
    merged = Markups()
    for path in positive:
        merged = merged + read_markups(path)
    for path in negative:
        merged = merged + read_markups(path, negative=True)
    if not merged.points and not merged.rois:
        raise PromptError("no markups files given")
    return merged


def _number(value: float) -> float:
    return 0.0 if value == 0 else float(value)  # no "-0.0" in files


def write_mrk_json(
    path: str | Path,
    points: Sequence[Sequence[float]] | np.ndarray | None = None,
    labels: Sequence[int] | np.ndarray | None = None,
    roi: MarkupRoi | None = None,
    space: str = "lps",
    coordinate_system: str = "LPS",
    names: Sequence[str] | None = None,
    list_name: str = "F",
    overwrite: bool = False,
) -> Path:
    """Write points (given in ``space``) and/or an ROI as a Slicer markups file.

    ``labels`` (1 positive, 0 negative) follow the negative convention: a negative point gets a
    label starting with "-" and the description "negative". The file uses ``coordinate_system``;
    keep the default LPS for ROIs meant for Slicer: slicer-core 5.13's reader takes an ROI's
    ``center`` and ``orientation`` as LPS even when the file says RAS.
    """
    system = coordinate_system.upper()
    if system not in ("LPS", "RAS"):
        raise ValueError(f"coordinate_system must be 'LPS' or 'RAS', got {coordinate_system!r}")
    from_lps = _FLIP if system == "RAS" else np.ones(3)
    markups = []
    if points is not None and len(points):
        coords = np.atleast_2d(np.asarray(points, dtype=float))
        lps = coords * _FLIP if check_space(space) == "ras" else coords
        flags = np.ones(len(coords), int) if labels is None else np.asarray(labels).astype(int)
        control_points = []
        for n, (position, flag) in enumerate(zip(lps * from_lps, flags)):
            base = names[n] if names is not None else f"{list_name}-{n + 1}"
            negative = flag == 0
            label = base if not negative or base.startswith(NEGATIVE_LABEL_PREFIX) else NEGATIVE_LABEL_PREFIX + base
            control_points.append(
                {
                    "id": str(n + 1),
                    "label": label,
                    "description": NEGATIVE_DESCRIPTION_WORD if negative else "",
                    "position": [_number(v) for v in position],
                    "selected": True,
                    "locked": False,
                    "visibility": True,
                    "positionStatus": "defined",
                }
            )
        markups.append({"type": "Fiducial", "coordinateSystem": system, "coordinateUnits": "mm", "controlPoints": control_points})
    if roi is not None:
        center = np.asarray(roi.center, float) * from_lps
        axes = from_lps[:, None] * np.asarray(roi.axes, float)
        markups.append(
            {
                "type": "ROI",
                "coordinateSystem": system,
                "coordinateUnits": "mm",
                "roiType": "Box",
                "center": [_number(v) for v in center],
                "orientation": [_number(v) for v in axes.ravel()],
                "size": [_number(v) for v in roi.size],
                "insideOut": False,
                "controlPoints": [
                    {"id": "1", "label": roi.name, "position": [_number(v) for v in center], "positionStatus": "defined"}
                ],
            }
        )
    if not markups:
        raise PromptError("nothing to write: give points or an ROI")
    if not all(math.isfinite(v) for m in markups for cp in m["controlPoints"] for v in cp["position"]):
        raise PromptError("markups positions must be finite")
    text = json.dumps({"@schema": SCHEMA_URL, "markups": markups}, indent=4)
    return write_text_atomic(path, text + "\n", overwrite=overwrite)
