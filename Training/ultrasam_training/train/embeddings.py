"""Image embeddings of a frozen encoder, computed once per (image, flip) and memory-mapped.

With the image encoder frozen, the only per-step work left is the prompt encoder and the mask
decoder: training on a CPU becomes many iterations per minute. The random horizontal flip happens
before the resize, so the flipped image has its own embedding; both are cached.

``level="neck_input"`` caches what the TinyViT trunk hands to the neck instead of the encoder's
output, so the neck can be trained (encoder adaptation) while the expensive trunk stays cached.

Layout: ``<directory>/<encoder digest>-<family>[-neck_input]/embeddings.npy`` (``[images, flips, C, h, w]``)
and ``index.json`` listing, in order, every image as ``path|size|blake2b(content)``: contents, not
modification times, so a data folder re-laid in place (or touched) keeps its cache. The cache is reused
only when the digest of the encoder's tensors and that list both match; otherwise it is rebuilt.
An interrupted build resumes where it stopped (``.partial-*`` files record the progress); one
builder per cache folder at a time.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from tqdm import tqdm

from ultrasam.atomic import atomic_write
from ultrasam.transforms import prepare_input
from ultrasam_training.train.errors import TrainingError

log = logging.getLogger(__name__)

FLIPS = (False, True)
LEVELS = ("output", "neck_input")


def trunk_without_neck(encoder: torch.nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """The encoder up to (not including) its neck: TinyViT's stem and stages."""
    if not (hasattr(encoder, "patch_embed") and hasattr(encoder, "layers") and hasattr(encoder, "neck")):
        raise TrainingError("caching the neck input needs a TinyViT encoder (patch_embed, layers, neck)")

    def run(x: torch.Tensor) -> torch.Tensor:
        x = encoder.patch_embed(x)
        for stage in encoder.layers:
            x = stage(x)
        return x

    return run


def _file_signature(path: Path) -> str:
    """``path|size|content digest`` — a re-laid or touched file with the same bytes keeps its embedding."""
    digest = hashlib.blake2b(Path(path).read_bytes(), digest_size=16).hexdigest()
    return f"{path.resolve()}|{path.stat().st_size}|{digest}"


class EmbeddingCache:
    """Read access to cached embeddings; build with :func:`build_embedding_cache`."""

    def __init__(self, folder: Path, digest: str, level: str = "output") -> None:
        self.folder = Path(folder)
        self.digest = digest
        self.level = level
        self._array: np.ndarray | None = None  # opened lazily, once per process (dataloader workers)

    @property
    def array(self) -> np.ndarray:
        if self._array is None:
            self._array = np.load(self.folder / "embeddings.npy", mmap_mode="r")
        return self._array

    def get(self, index: int, flipped: bool) -> torch.Tensor:
        """The float32 ``(C, h, w)`` embedding of image ``index`` (flipped or not)."""
        return torch.from_numpy(np.array(self.array[index, int(flipped)], dtype=np.float32))

    def __getstate__(self) -> dict:
        return {"folder": self.folder, "digest": self.digest, "level": self.level, "_array": None}


def build_embedding_cache(
    image_paths: Sequence[Path],
    load_rgb: Callable[[Path], np.ndarray],
    checkpoint: str | Path,
    family: str | None,
    directory: str | Path,
    dtype: str = "float32",
    batch_size: int = 8,
    progress: bool = True,
    level: str = "output",
) -> EmbeddingCache:
    """Compute (or reuse) the embeddings of ``image_paths`` and their horizontal flips.

    ``load_rgb`` turns a path into the ``H×W×3`` uint8 image the model sees before resizing
    (the dataset's own reader, so cached and uncached training see the same pixels).
    """
    from ultrasam.models import open_model
    from ultrasam_training.train.model import encoder_digest

    if dtype not in ("float32", "float16"):
        raise TrainingError(f"embedding cache dtype must be float32 or float16, not {dtype!r}")
    if level not in LEVELS:
        raise TrainingError(f"embedding cache level must be one of {LEVELS}, not {level!r}")
    model = open_model(checkpoint, family=family, device="cpu", fast=True)
    encoder_module = model.sam.image_encoder.eval()
    digest = encoder_digest(encoder_module)
    encoder = encoder_module if level == "output" else trunk_without_neck(encoder_module)
    suffix = "" if level == "output" else f"-{level}"
    folder = Path(directory) / f"{digest}-{model.spec.family}{suffix}"
    signatures = [_file_signature(Path(p)) for p in image_paths]
    index_path = folder / "index.json"
    if index_path.exists():
        index = json.loads(index_path.read_text())
        if index.get("images") == signatures and index.get("dtype") == dtype and index.get("flips") == list(FLIPS):
            log.info("reusing %d cached embeddings in %s", len(signatures), folder)
            return EmbeddingCache(folder, digest, level)
        log.info("embedding cache %s is for other images or settings: rebuilding it", folder)
    folder.mkdir(parents=True, exist_ok=True)
    index_path.unlink(missing_ok=True)  # the index is written last: without it the array is never trusted
    with torch.inference_mode():
        probe, _ = prepare_input(load_rgb(Path(image_paths[0])), model.spec)
        shape = tuple(encoder(probe).shape[1:])
    full_shape = (len(image_paths), len(FLIPS), *shape)
    array_path = folder / "embeddings.npy"
    partial_path = folder / ".partial-embeddings.npy"
    progress_path = folder / ".partial-progress.json"
    plan = {"images": signatures, "dtype": dtype, "shape": list(full_shape)}
    done = 0
    if partial_path.exists() and progress_path.exists():
        state = json.loads(progress_path.read_text())
        if state.get("plan") == plan:  # an interrupted build of the same cache: continue it
            done = int(state["done"])
            log.info("continuing an interrupted embedding cache at %d of %d", done, len(image_paths) * len(FLIPS))
    if done:
        array = np.load(partial_path, mmap_mode="r+")
    else:
        array = np.lib.format.open_memmap(partial_path, mode="w+", dtype=np.dtype(dtype), shape=full_shape)
    jobs = [(i, f) for i in range(len(image_paths)) for f in range(len(FLIPS))]
    bar = tqdm(total=len(jobs), initial=done, desc="caching embeddings", unit="img", disable=not progress)
    for start in range(done, len(jobs), batch_size):
        chunk = jobs[start : start + batch_size]
        rgbs = {i: load_rgb(Path(image_paths[i])) for i in {i for i, _ in chunk}}
        tensors = [
            prepare_input(np.ascontiguousarray(rgbs[i][:, ::-1]) if FLIPS[f] else rgbs[i], model.spec)[0]
            for i, f in chunk
        ]
        with torch.inference_mode():
            features = encoder(torch.cat(tensors)).float().numpy()
        for (i, f), feature in zip(chunk, features):
            array[i, f] = feature
        array.flush()
        record = json.dumps({"plan": plan, "done": start + len(chunk)})
        atomic_write(progress_path, lambda tmp: tmp.write_text(record), overwrite=True)
        bar.update(len(chunk))
    bar.close()
    del array
    os.replace(partial_path, array_path)
    progress_path.unlink(missing_ok=True)
    index = {
        "digest": digest,
        "family": model.spec.family,
        "dtype": dtype,
        "flips": list(FLIPS),
        "shape": shape,
        "images": signatures,
    }
    atomic_write(index_path, lambda tmp: tmp.write_text(json.dumps(index, indent=1)), overwrite=True)
    return EmbeddingCache(folder, digest, level)
