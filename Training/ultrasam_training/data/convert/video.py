"""Video sources (.avi, .mp4) through OpenCV: frames as RGB arrays, read once, in order."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np

from ultrasam_training.data.errors import DatasetError


def read_frames(path: str | Path) -> Iterator[tuple[int, np.ndarray]]:
    """``(index, H×W×3 uint8 RGB frame)`` for every frame of a video file, from 0."""
    import cv2

    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"missing file {path}")
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise DatasetError(f"cannot open video {path}")
    try:
        index = 0
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            yield index, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            index += 1
    finally:
        capture.release()
    if index == 0:
        raise DatasetError(f"{path}: no frame could be decoded")


def read_all_frames(path: str | Path) -> list[np.ndarray]:
    """Every frame of ``path`` (short clips; traced-frame datasets index into this list)."""
    return [frame for _, frame in read_frames(path)]
