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

**What the reader refuses** (a :class:`~ultrasam.errors.PromptError` naming the file and the field,
never a Python ``TypeError``/``RecursionError``): fields of the wrong JSON type (``controlPoints``
not a list of objects, ``position`` not a list of 3 finite numbers, ``coordinateUnits`` not a
string, ...), JSON nested deeper than Python's recursion limit, files over
:data:`MAX_MARKUPS_FILE_BYTES`, more than :data:`MAX_CONTROL_POINTS` control points, coordinates or
ROI sizes beyond :data:`MAX_COORDINATE_MM`, and ROI orientations that are not orthonormal within
:data:`ORTHONORMAL_TOLERANCE` (a skewed matrix describes no box).
"""

from __future__ import annotations

import json
import math
import reprlib
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

MAX_CONTROL_POINTS = 10_000
"""Control points per file, and per merged prompt set. Prompts are clicks: ten thousand is far
beyond any click set, and it bounds the work (and the messages) a single file can cause."""

MAX_MARKUPS_FILE_BYTES = 64 * 2**20
"""Largest markups file read (64 MiB). Slicer writes ~0.5 kB per control point, so
:data:`MAX_CONTROL_POINTS` points fit with room to spare."""

MAX_COORDINATE_MM = 1e6
"""Largest absolute coordinate, and largest ROI edge, accepted (1e6 mm = 1 km): beyond it a value
is an error in the file, not anatomy; 1e300 would otherwise overflow the geometry downstream."""

ORTHONORMAL_TOLERANCE = 1e-3
"""Largest deviation of ``orientation.T @ orientation`` from the identity: Slicer writes rotation
matrices to ~1e-16, so anything beyond 1e-3 is a skewed or scaled matrix, which describes no box."""

_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxlist, _REPR.maxdict, _REPR.maxstring, _REPR.maxother = 2, 9, 4, 40, 40


def _short(value: object) -> str:
    """A bounded ``repr`` for messages: a 10^6-item list or 1000-deep nesting stays one short line."""
    return _REPR.repr(value)


def _kind_of(value: object) -> str:
    """The JSON name of a parsed value's type, for messages."""
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number" if isinstance(value, (int, float)) else type(value).__name__)


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
        return Markups.combine([self, other])

    @staticmethod
    def combine(parts: Sequence["Markups"]) -> "Markups":
        """All parts in order, points renumbered 1..N once (linear, however many parts)."""
        every = [p for part in parts for p in part.points]
        points = tuple(
            MarkupPoint(p.position, p.label, p.description, p.selected, p.negative, p.list_name, n + 1)
            for n, p in enumerate(every)
        )
        rois = tuple(r for part in parts for r in part.rois)
        return Markups(points, rois, tuple(s for part in parts for s in part.sources))


def _vector(value: object, what: str, path: Path, count: int = 3) -> np.ndarray:
    """Exactly ``count`` finite JSON numbers (no strings, booleans, nulls or nested lists)."""
    numbers = isinstance(value, list) and len(value) == count
    numbers = numbers and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    if not numbers:
        raise PromptError(f"{path}: {what} must be a list of {count} numbers, got {_short(value)}")
    try:
        array = np.array(value, dtype=float)
    except OverflowError:  # an integer literal with hundreds of digits
        array = np.full(count, np.inf)
    if not np.all(np.isfinite(array)):
        raise PromptError(f"{path}: {what} contains non-finite values {_short(value)}")
    return array


def _within_limit(array: np.ndarray, what: str, path: Path) -> np.ndarray:
    """``array`` (mm) when every |value| is at most :data:`MAX_COORDINATE_MM`."""
    if np.any(np.abs(array) > MAX_COORDINATE_MM):
        raise PromptError(
            f"{path}: {what} {_short(array.tolist())} exceeds the limit of {MAX_COORDINATE_MM:g} mm "
            "in absolute value: no image is that large"
        )
    return array


def _text(value: object, what: str, path: Path, default: str = "") -> str:
    """A string field (numbers are accepted as text; null or absent gives ``default``)."""
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise PromptError(f"{path}: {what} must be a string, got {_kind_of(value)} {_short(value)}")
    return str(value)


def _control_points(markup: dict, what: str, path: Path) -> list[dict]:
    """The ``controlPoints`` list of a markup, each an object; at most :data:`MAX_CONTROL_POINTS`."""
    value = markup.get("controlPoints")
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(cp, dict) for cp in value):
        raise PromptError(
            f"{path}: 'controlPoints' of {what} must be a list of objects, got {_kind_of(value)} {_short(value)}"
        )
    if len(value) > MAX_CONTROL_POINTS:
        raise PromptError(
            f"{path}: {what} has {len(value)} control points; at most {MAX_CONTROL_POINTS} are supported per file"
        )
    return value


def _units_scale(markup: dict, name: str, path: Path) -> float:
    """Millimetres per file unit, from ``coordinateUnits`` (a string, or a DICOM code ``[value, scheme, meaning]``)."""
    units = markup.get("coordinateUnits", "mm")
    if isinstance(units, list):
        units = units[0] if units else "mm"
    if not isinstance(units, str) or units not in _UNITS:
        raise PromptError(
            f"{path}: unsupported coordinateUnits {_short(units)} in markup {name!r}; expected 'mm' or 'um'"
        )
    return _UNITS[units]


def _parse_point(
    cp: dict, index: int, name: str, path: Path, scale: float, to_lps: np.ndarray, negative: bool, number: int
) -> MarkupPoint | None:
    """One control point of a point list; None when it is not placed yet."""
    if (
        _text(cp.get("positionStatus"), f"positionStatus of control point {index + 1} of {name!r}", path, "defined")
        in _SKIPPED_STATUS
    ):
        return None
    label = _text(cp.get("label"), f"label of control point {index + 1} of {name!r}", path) or f"{name}-{index + 1}"
    if "position" not in cp:
        raise PromptError(f"{path}: control point {label!r} of {name!r} has no position")
    description = _text(cp.get("description"), f"description of control point {label!r}", path)
    what = f"position of control point {label!r}"
    position = _within_limit(_vector(cp["position"], what, path) * scale, what, path) * to_lps
    return MarkupPoint(
        position=position,
        label=label,
        description=description,
        selected=bool(cp.get("selected", True)),
        negative=negative or is_negative_point(label, description),
        list_name=name,
        number=number,
    )


def _roi_axes(markup: dict, name: str, path: Path) -> np.ndarray:
    """The ROI's 3x3 ``orientation`` (row-major, columns = axes), orthonormal within tolerance."""
    value = markup.get("orientation")
    if value is None:
        return np.eye(3)
    axes = _vector(value, f"ROI {name!r} orientation", path, 9).reshape(3, 3)
    deviation = float(np.abs(axes.T @ axes - np.eye(3)).max())
    if deviation > ORTHONORMAL_TOLERANCE:
        raise PromptError(
            f"{path}: ROI {name!r} orientation is not orthonormal: its columns (the ROI axes) depart from unit, "
            f"perpendicular vectors by {deviation:.3g} (tolerance {ORTHONORMAL_TOLERANCE:g}); a skewed or scaled "
            f"matrix describes no box: {_short(value)}"
        )
    return axes


def _parse_roi(markup: dict, name: str, path: Path, scale: float, to_lps: np.ndarray) -> MarkupRoi:
    if markup.get("insideOut", False):
        raise PromptError(
            f"{path}: ROI {name!r} is inside-out (it selects everything outside the box); it cannot be a box prompt"
        )
    if "center" in markup and "size" in markup:
        center = _vector(markup["center"], f"ROI {name!r} center", path)
        size = _vector(markup["size"], f"ROI {name!r} size", path)
    else:  # bounding-box ROI saved without its derived centre/size: rebuild from the points
        cps = [cp for cp in _control_points(markup, f"ROI {name!r}", path) if "position" in cp]
        if len(cps) < 2:
            raise PromptError(f"{path}: ROI {name!r} has neither center/size nor two control points")
        coords = np.array([_vector(cp["position"], f"ROI {name!r} control point position", path) for cp in cps])
        center, size = (coords.min(0) + coords.max(0)) / 2, coords.max(0) - coords.min(0)
    if np.any(size < 0):
        raise PromptError(f"{path}: ROI {name!r} has a negative size {tuple(size)}")
    center = _within_limit(center * scale, f"ROI {name!r} center", path)
    size = _within_limit(size * scale, f"ROI {name!r} size", path)
    axes_lps = to_lps[:, None] * _roi_axes(markup, name, path)
    axes_lps = axes_lps / np.linalg.norm(axes_lps, axis=0)  # exact unit axes (within tolerance already)
    return MarkupRoi(center=center * to_lps, axes=axes_lps, size=size, name=name or "ROI")


def _parse_markup(markup: dict, path: Path, negative: bool, first_number: int):
    raw_kind = markup.get("type")
    kind = raw_kind if isinstance(raw_kind, str) else None
    name = _text(markup.get("name"), "name of a markup", path) or kind or ""
    system = _text(markup.get("coordinateSystem"), f"coordinateSystem of markup {name!r}", path, "LPS")
    if system.upper() not in ("LPS", "RAS"):
        raise PromptError(f"{path}: unknown coordinateSystem {system!r} in markup {name!r}; expected 'LPS' or 'RAS'")
    to_lps = _FLIP if system.upper() == "RAS" else np.ones(3)
    scale = _units_scale(markup, name, path)

    if kind == "Fiducial":
        points = []
        for index, cp in enumerate(_control_points(markup, f"point list {name!r}", path)):
            point = _parse_point(cp, index, name, path, scale, to_lps, negative, first_number + len(points))
            if point is not None:
                points.append(point)
        return points, []
    if kind == "ROI":
        return [], [_parse_roi(markup, name, path, scale, to_lps)]
    raise PromptError(
        f"{path}: markup {name!r} has type {_short(raw_kind)}; only point lists ('Fiducial') and 'ROI' can be prompts"
    )


def _load_document(path: Path) -> dict:
    """The parsed JSON of a markups file, with every way it can be unreadable as a PromptError."""
    if not path.is_file():
        raise PromptError(f"markups file not found: {path}")
    size = path.stat().st_size
    if size > MAX_MARKUPS_FILE_BYTES:
        raise PromptError(f"{path} is {size:,} bytes; the limit is {MAX_MARKUPS_FILE_BYTES:,} bytes for a markups file")
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except RecursionError as exc:
        raise PromptError(f"{path} is not a valid markups JSON file: nested too deeply") from exc
    except (UnicodeDecodeError, ValueError) as exc:  # JSONDecodeError, or a 5000-digit integer
        raise PromptError(f"{path} is not a valid markups JSON file: {exc}") from exc
    if not isinstance(document, dict) or not isinstance(document.get("markups"), list):
        raise PromptError(f"{path} is not a Slicer markups file: no 'markups' list")
    return document


def read_markups(path: str | Path, negative: bool = False) -> Markups:
    """Read a Slicer ``.mrk.json``; ``negative=True`` makes every point in it a negative click."""
    path = Path(path)
    document = _load_document(path)
    points: list[MarkupPoint] = []
    rois: list[MarkupRoi] = []
    for markup in document["markups"]:
        if not isinstance(markup, dict):
            raise PromptError(
                f"{path}: each entry of 'markups' must be an object, got {_kind_of(markup)} {_short(markup)}"
            )
        new_points, new_rois = _parse_markup(markup, path, negative, len(points) + 1)
        points += new_points
        rois += new_rois
        if len(points) > MAX_CONTROL_POINTS:
            raise PromptError(f"{path} has more than {MAX_CONTROL_POINTS} control points, the limit per file")
    if not points and not rois:
        raise PromptError(f"{path} contains no placed control points and no ROI: nothing to prompt with")
    return Markups(tuple(points), tuple(rois), (path,))


def read_prompt_files(positive: Iterable[str | Path] = (), negative: Iterable[str | Path] = ()) -> Markups:
    """Merge several markups files; every point of a ``negative`` file is negative."""
    parts = [read_markups(path) for path in positive] + [read_markups(path, negative=True) for path in negative]
    if not parts:
        raise PromptError("no markups files given")
    total = sum(len(part.points) for part in parts)
    if total > MAX_CONTROL_POINTS:
        raise PromptError(
            f"{', '.join(str(s) for part in parts for s in part.sources)}: {total} control points in all; "
            f"at most {MAX_CONTROL_POINTS} are supported"
        )
    return Markups.combine(parts)


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
        markups.append(
            {"type": "Fiducial", "coordinateSystem": system, "coordinateUnits": "mm", "controlPoints": control_points}
        )
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
                    {
                        "id": "1",
                        "label": roi.name,
                        "position": [_number(v) for v in center],
                        "positionStatus": "defined",
                    }
                ],
            }
        )
    if not markups:
        raise PromptError("nothing to write: give points or an ROI")
    if not all(math.isfinite(v) for m in markups for cp in m["controlPoints"] for v in cp["position"]):
        raise PromptError("markups positions must be finite")
    text = json.dumps({"@schema": SCHEMA_URL, "markups": markups}, indent=4)
    return write_text_atomic(path, text + "\n", overwrite=overwrite)
