"""What one conversion is asked to do, built once (CLI or :func:`run_converter`) and passed whole.

Every converter takes ``convert(raw_dir, out_dir, options)``. The common choices mean the same for
all 43 datasets because the shared loop (``samples.convert_samples``) applies them; a dataset's own
choices (``--option NAME=VALUE``, e.g. BUS-BRA's ``test_fold``) travel in ``extra`` and are
checked against the defaults its module declares as ``OPTIONS``, so a misspelt option is an error
rather than silently ignored.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Mapping

from ultrasam_training.data.errors import DatasetError
from ultrasam_training.data.images import IMAGE_MODES


@dataclass(frozen=True)
class ConvertOptions:
    """The choices every converter honours, plus the dataset-specific ones in ``extra``."""

    image_mode: str = "copy"  #: "copy", "symlink" or "reference" (see ``output.py``)
    overwrite: bool = False  #: replace an earlier conversion into the same folder
    keep_empty: bool = False  #: keep images, frames and slices without any annotated structure
    limit: int | None = None  #: stop after this many converted images
    progress: bool = True  #: show a progress bar
    extra: Mapping[str, Any] = field(default_factory=dict)  #: dataset-specific options by name

    def __post_init__(self) -> None:
        """Refuse bad values before any file is read, whichever converter gets them."""
        if self.image_mode not in IMAGE_MODES:
            raise DatasetError(f"image_mode must be one of {IMAGE_MODES}, not {self.image_mode!r}")
        if self.limit is not None and self.limit < 1:
            raise DatasetError(f"limit must be a positive number of images, not {self.limit}")

    @classmethod
    def from_keywords(cls, **keywords: Any) -> ConvertOptions:
        """Common options by their field names; every other keyword is a dataset-specific one."""
        common = {f.name for f in fields(cls)} - {"extra"}
        extra = {key: value for key, value in keywords.items() if key not in common}
        return cls(**{key: value for key, value in keywords.items() if key in common}, extra=extra)

    def extras(self, defaults: Mapping[str, Any], converter: str) -> dict[str, Any]:
        """``defaults`` updated by ``extra``; a name ``defaults`` does not have is a ``DatasetError``."""
        unknown = sorted(set(self.extra) - set(defaults))
        if unknown:
            raise DatasetError(f"converter {converter!r} does not take option(s) {', '.join(unknown)}")
        return {**defaults, **self.extra}


#: what a converter does when called without options
DEFAULTS = ConvertOptions()
