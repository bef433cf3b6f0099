"""Hostile output paths for ``ultrasam segment`` / ``segment-volume``, and killed writers.

Every bad output must be refused before any model is loaded (the up-front tests pass a checkpoint
that does not exist: the message must be about the output, not the checkpoint), with one
``ultrasam <cmd>: error:`` line and exit 1, leaving no file and no ``.tmp-*`` behind. The tests
run as root, which ignores permission bits, so "unwritable" is a path under a regular file or
under ``/proc``, which fail for every user.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ultrasam import outputs
from ultrasam.atomic import DEAD_WRITER_GRACE_S, STALE_AFTER_S, all_or_nothing, write_bytes_atomic
from ultrasam.cli import main

BOX = ["--box", "8", "8", "40", "40"]


def run_cli(*args: object) -> int:
    return main([str(a) for a in args])


def files_under(folder: Path) -> set[str]:
    """Every file below ``folder``, hidden ones included, relative to it."""
    return {str(Path(root, name).relative_to(folder)) for root, _, names in os.walk(folder) for name in names}


def temporaries(folder: Path) -> list[str]:
    return sorted(name for name in files_under(folder) if Path(name).name.startswith(".tmp-"))


@pytest.fixture
def image(tmp_path: Path) -> Path:
    """A small grey PNG: enough for the commands to get past their own argument checks."""
    path = tmp_path / "frame.png"
    Image.fromarray(np.tile(np.arange(64, dtype=np.uint8) * 4, (64, 1))).save(path)
    return path


@pytest.fixture
def no_checkpoint(tmp_path: Path) -> Path:
    """A checkpoint that does not exist: loading any model would fail with a message naming it."""
    return tmp_path / "absent-model.pth"


@pytest.fixture
def blocker(tmp_path: Path) -> Path:
    """A regular file: nothing can be created under it, not even by root."""
    path = tmp_path / "notes.txt"
    path.write_text("a file, not a folder\n")
    return path


def assert_refused_up_front(code: int, err: str, *needles: str) -> None:
    """Exit 1, one clear line naming the problem, no traceback, and the model never reached."""
    assert code == 1
    assert err.startswith("ultrasam segment"), err
    assert ": error: " in err and "Traceback" not in err
    assert "absent-model.pth" not in err, f"the checkpoint was reached before the output check: {err}"
    for needle in needles:
        assert needle in err, err


# ---- up-front refusals ------------------------------------------------------------------------
@pytest.mark.parametrize("option", ["--out", "--overlay", "--rle"])
def test_output_under_a_file_is_refused_before_the_model(tmp_path, image, no_checkpoint, blocker, capsys, option):
    paths = {"--out": tmp_path / "mask.png", "--overlay": tmp_path / "qc.png", "--rle": tmp_path / "mask.json"}
    paths[option] = blocker / "sub" / paths[option].name
    before = files_under(tmp_path)
    code = run_cli("segment", image, *BOX, "--checkpoint", no_checkpoint, *(a for kv in paths.items() for a in kv))
    assert_refused_up_front(code, capsys.readouterr().err, option, str(blocker), "not a folder")
    assert files_under(tmp_path) == before  # the mask is not written when only the overlay is unwritable


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc")
def test_output_under_proc_is_refused_before_the_model(tmp_path, image, no_checkpoint, capsys):
    before = files_under(tmp_path)
    code = run_cli(
        "segment",
        image,
        *BOX,
        "--checkpoint",
        no_checkpoint,
        "--out",
        tmp_path / "mask.png",
        "--overlay",
        "/proc/ultrasam-test/qc.png",
    )
    assert_refused_up_front(code, capsys.readouterr().err, "--overlay", "cannot create a file in /proc")
    assert files_under(tmp_path) == before


@pytest.mark.parametrize(
    "second_option, spelling",
    [
        ("--overlay", lambda p: p),
        ("--overlay", lambda p: p.parent / "sub" / ".." / p.name),
        ("--rle", lambda p: p),
    ],
    ids=["overlay-same", "overlay-dotdot", "rle-same"],
)
def test_two_outputs_on_one_file_are_refused_even_with_overwrite(
    tmp_path, image, no_checkpoint, capsys, second_option, spelling
):
    (tmp_path / "sub").mkdir()
    mask = tmp_path / "mask.png"
    mask.write_bytes(b"the previous mask")
    code = run_cli(
        "segment",
        image,
        *BOX,
        "--checkpoint",
        no_checkpoint,
        "--out",
        mask,
        second_option,
        spelling(mask),
        "--overwrite",
    )
    assert_refused_up_front(code, capsys.readouterr().err, "--out", second_option, "same file")
    assert mask.read_bytes() == b"the previous mask"
    assert temporaries(tmp_path) == []


def test_an_output_through_a_symlink_is_the_same_file(tmp_path, image, no_checkpoint, capsys):
    mask = tmp_path / "mask.png"
    mask.write_bytes(b"the previous mask")
    (tmp_path / "alias.png").symlink_to(mask)
    code = run_cli(
        "segment",
        image,
        *BOX,
        "--checkpoint",
        no_checkpoint,
        "--out",
        mask,
        "--overlay",
        tmp_path / "alias.png",
        "--overwrite",
    )
    assert_refused_up_front(code, capsys.readouterr().err, "same file")
    assert mask.read_bytes() == b"the previous mask"


def test_output_on_the_input_image_is_refused(tmp_path, image, no_checkpoint, capsys):
    original = image.read_bytes()
    code = run_cli(
        "segment",
        image,
        *BOX,
        "--checkpoint",
        no_checkpoint,
        "--out",
        tmp_path / "m.png",
        "--overlay",
        image,
        "--overwrite",
    )
    assert_refused_up_front(code, capsys.readouterr().err, "--overlay", "destroy the input")
    assert image.read_bytes() == original


def test_existing_output_is_refused_before_the_model(tmp_path, image, no_checkpoint, capsys):
    rle = tmp_path / "mask.json"
    rle.write_text("{}")
    before = files_under(tmp_path)
    code = run_cli("segment", image, *BOX, "--checkpoint", no_checkpoint, "--out", tmp_path / "mask.png", "--rle", rle)
    assert_refused_up_front(code, capsys.readouterr().err, "already exists", str(rle))
    assert files_under(tmp_path) == before and rle.read_text() == "{}"


def test_output_that_is_a_folder_is_refused(tmp_path, image, no_checkpoint, capsys):
    (tmp_path / "qc.png").mkdir()
    code = run_cli(
        "segment",
        image,
        *BOX,
        "--checkpoint",
        no_checkpoint,
        "--out",
        tmp_path / "mask.png",
        "--overlay",
        tmp_path / "qc.png",
        "--overwrite",
    )
    assert_refused_up_front(code, capsys.readouterr().err, "--overlay", "is a folder")
    assert files_under(tmp_path) == {"frame.png"}


def test_unknown_mask_format_is_refused_before_the_model(tmp_path, image, no_checkpoint, capsys):
    code = run_cli("segment", image, *BOX, "--checkpoint", no_checkpoint, "--out", tmp_path / "mask.mhd")
    assert_refused_up_front(code, capsys.readouterr().err, "mask.mhd")
    assert files_under(tmp_path) == {"frame.png"}


def test_png_for_propagated_frames_is_refused_before_the_model(tmp_path, no_checkpoint, capsys):
    import SimpleITK as sitk

    cine = tmp_path / "cine.nrrd"
    sitk.WriteImage(sitk.GetImageFromArray(np.random.default_rng(0).integers(0, 255, (5, 48, 48), np.uint8)), str(cine))
    code = run_cli("segment", cine, *BOX, "--propagate", "--checkpoint", no_checkpoint, "--out", tmp_path / "mask.png")
    assert_refused_up_front(code, capsys.readouterr().err, "PNG holds one frame")
    assert files_under(tmp_path) == {"cine.nrrd"}


def test_segment_volume_checks_its_outputs_first(tmp_path, no_checkpoint, blocker, capsys):
    """The volume need not even exist: the outputs are checked before anything is read."""
    code = run_cli(
        "segment-volume",
        tmp_path / "absent.nrrd",
        "--slice",
        0,
        *BOX,
        "--checkpoint",
        no_checkpoint,
        "--out",
        tmp_path / "seg.seg.nrrd",
        "--overlay",
        blocker / "qc.png",
    )
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("ultrasam segment-volume: error: ") and "Traceback" not in err
    assert "--overlay" in err and "absent" not in err
    assert files_under(tmp_path) == {"notes.txt"}


# ---- nothing half-written ----------------------------------------------------------------------
def test_all_or_nothing_removes_created_and_restores_replaced(tmp_path):
    kept, created = tmp_path / "kept.png", tmp_path / "created.json"
    kept.write_bytes(b"old")
    with pytest.raises(OSError, match="disk full"), all_or_nothing([kept, created, None]):
        write_bytes_atomic(kept, b"new", overwrite=True)
        write_bytes_atomic(created, b"{}")
        raise OSError(28, "disk full")
    assert kept.read_bytes() == b"old"
    assert files_under(tmp_path) == {"kept.png"}
    with all_or_nothing([kept, created]):  # success keeps the new files and drops the backups
        write_bytes_atomic(kept, b"new", overwrite=True)
        write_bytes_atomic(created, b"{}")
    assert kept.read_bytes() == b"new" and files_under(tmp_path) == {"kept.png", "created.json"}


@pytest.mark.parametrize("overwrite", [False, True])
def test_failed_overlay_write_after_inference_leaves_no_mask(
    tmp_path, tiny_checkpoint, data_dir, capsys, monkeypatch, overwrite
):
    """The disk fills between the mask and the overlay: a clear error, and no orphan mask."""
    frame = data_dir / "mmotu_sample" / "sample_images" / "test.MMOTU_2d__00002.png"
    mask = tmp_path / "mask.png"
    if overwrite:
        mask.write_bytes(b"the previous mask")

    def disk_full(path, *args, **kwargs):
        raise OSError(28, "No space left on device", str(path))

    monkeypatch.setattr(outputs, "write_overlay_png", disk_full)
    code = run_cli(
        "segment",
        frame,
        "--box",
        10,
        10,
        200,
        200,
        "--checkpoint",
        tiny_checkpoint,
        "--out",
        mask,
        "--overlay",
        tmp_path / "qc.png",
        *(["--overwrite"] if overwrite else []),
    )
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    assert err.strip() == f"ultrasam segment: error: No space left on device: {tmp_path / 'qc.png'}"
    assert files_under(tmp_path) == ({"mask.png"} if overwrite else set())
    if overwrite:
        assert mask.read_bytes() == b"the previous mask"


# ---- killed writers -----------------------------------------------------------------------------
def finished_pid() -> int:
    """The pid of a process that has exited and been reaped: a writer that is gone."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def make_temporary(folder: Path, name: str, age_s: float, pid: int | None, tag: str) -> Path:
    """A leftover temporary as a writer of ``pid`` (None: a legacy pid-less writer) leaves it."""
    hexpart = (tag * 12)[:12]
    path = folder / (f".tmp-{pid}-{hexpart}-{name}" if pid is not None else f".tmp-{hexpart}-{name}")
    path.write_bytes(b"half a PNG")
    stamp = time.time() - age_s
    os.utime(path, (stamp, stamp))
    return path


def test_write_sweeps_temporaries_of_dead_writers_only(tmp_path):
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        old = DEAD_WRITER_GRACE_S + 60
        dead_writer = make_temporary(tmp_path, "mask.png", old, finished_pid(), "a")
        legacy_old = make_temporary(tmp_path, "mask.png", STALE_AFTER_S + 60, None, "b")
        live_writer = make_temporary(tmp_path, "mask.png", old, live.pid, "c")
        just_written = make_temporary(tmp_path, "mask.png", 0, finished_pid(), "d")  # maybe another host's
        legacy_recent = make_temporary(tmp_path, "mask.png", 60, None, "e")
        other_name = make_temporary(tmp_path, "qc.png", old, finished_pid(), "f")
        outputs.write_mask_png(tmp_path / "mask.png", np.ones((4, 4), bool))
        assert not dead_writer.exists() and not legacy_old.exists()
        assert live_writer.exists() and just_written.exists() and legacy_recent.exists() and other_name.exists()
    finally:
        live.kill()
        live.wait()


WRITER = textwrap.dedent(
    """
    import sys, time
    from ultrasam.atomic import atomic_write

    def slow(tmp):
        tmp.write_bytes(b"half")
        print("writing", flush=True)
        time.sleep(60)

    atomic_write(sys.argv[1], slow)
    """
)


def test_kill_9_leftover_is_swept_by_the_next_write(tmp_path):
    """Reproduce the defect for real: SIGKILL mid-write leaves a temporary; the next write removes it."""
    target = tmp_path / "mask.png"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(target)], stdout=subprocess.PIPE, text=True)
    assert writer.stdout.readline().strip() == "writing"
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    (leftover,) = temporaries(tmp_path)
    assert leftover.startswith(f".tmp-{writer.pid}-") and not target.exists()
    stamp = time.time() - DEAD_WRITER_GRACE_S - 1  # the rerun comes a while later
    os.utime(tmp_path / leftover, (stamp, stamp))
    outputs.write_mask_png(target, np.ones((4, 4), bool))
    assert files_under(tmp_path) == {"mask.png"}
