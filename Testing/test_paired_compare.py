"""``ultrasam compare``: paired per-instance statistics of two evaluation results folders."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("ultrasam_training")

from ultrasam_training.evaluation.errors import EvaluationError  # noqa: E402
from ultrasam_training.evaluation.paired import compare_results, compare_values  # noqa: E402

COLUMNS = ("image_id", "annotation_id", "file_name", "area", "score", "dice", "iou", "noc85", "noc90")


def write_results(root: Path, dataset: str, stem: str, dice: list[float], noc85: list[int] | None = None) -> Path:
    """A results folder as ``ultrasam evaluate`` lays it out, one per-instance CSV."""
    folder = root / "instances" / dataset
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"{stem}.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        for i, value in enumerate(dice):
            writer.writerow(
                {
                    "image_id": i + 1,
                    "annotation_id": 100 + i,
                    "file_name": f"{i}.png",
                    "area": 50,
                    "score": 0.9,
                    "dice": value,
                    "iou": value / (2 - value),
                    "noc85": (noc85 or [20] * len(dice))[i],
                    "noc90": 20,
                }
            )
    return root


def test_a_uniform_gain_is_better_with_the_exact_wilcoxon_p(tmp_path):
    base_dice = [0.5 + 0.04 * i for i in range(10)]
    base = write_results(tmp_path / "base", "busi", "litemedsam__box__single", base_dice)
    new = write_results(tmp_path / "new", "busi", "model_final__box__single", [d + 0.05 for d in base_dice])
    [result] = compare_results(base, new)
    assert (result.dataset, result.prompt, result.n) == ("busi", "box", 10)
    assert result.mean_difference == pytest.approx(0.05)
    assert result.ci_low == pytest.approx(0.05) and result.ci_high == pytest.approx(0.05)
    assert (result.better, result.worse, result.equal) == (10, 0, 0)
    # All ten signed ranks positive: the exact two-sided p is 2 / 2**10.
    assert result.p_value == pytest.approx(2 / 2**10)
    assert result.verdict == "better"
    assert result.base == "base: litemedsam (single)" and result.new == "new: model_final (single)"


def test_clicks_to_85_percent_count_fewer_as_better(tmp_path):
    base = write_results(tmp_path / "a", "hc18", "m__box__single", [0.9] * 6, noc85=[5, 5, 5, 5, 5, 5])
    new = write_results(tmp_path / "b", "hc18", "m__box__single", [0.9] * 6, noc85=[2, 3, 4, 5, 5, 5])
    [result] = compare_results(base, new, metric="noc85")
    assert result.mean_difference == pytest.approx(-1.0)
    assert (result.better, result.worse, result.equal) == (3, 0, 3)
    assert result.verdict == "better"
    [same] = compare_results(base, base, metric="dice")
    assert (same.p_value, same.verdict, same.equal) == (1.0, "tie", 6)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 1), st.floats(0, 1)), min_size=2, max_size=40))
def test_swapping_the_two_sides_mirrors_every_statistic(pairs):
    base = {(str(i), "1"): a for i, (a, _) in enumerate(pairs)}
    new = {(str(i), "1"): b for i, (_, b) in enumerate(pairs)}
    forward = compare_values(base, new, metric="dice", bootstrap=500)
    backward = compare_values(new, base, metric="dice", bootstrap=500)
    assert backward["mean_difference"] == pytest.approx(-forward["mean_difference"], abs=1e-12)
    assert backward["ci_low"] == pytest.approx(-forward["ci_high"], abs=1e-9)
    assert backward["ci_high"] == pytest.approx(-forward["ci_low"], abs=1e-9)
    assert (backward["better"], backward["worse"]) == (forward["worse"], forward["better"])
    assert forward["ci_low"] <= forward["mean_difference"] + 1e-9 or np.isclose(forward["ci_low"], forward["ci_high"])
    assert backward["p_value"] == pytest.approx(forward["p_value"])


def test_different_instances_or_ambiguous_folders_are_refused(tmp_path):
    base = write_results(tmp_path / "a", "busi", "m__box__single", [0.8, 0.9])
    new = write_results(tmp_path / "b", "busi", "m__box__single", [0.8, 0.9, 0.7])
    with pytest.raises(EvaluationError, match=r"different instances \(0 only in the first, 1 only in the second\)"):
        compare_results(base, new)
    write_results(tmp_path / "a", "busi", "ellipse__box__none", [0.8, 0.9])
    with pytest.raises(EvaluationError, match="--base-model.*ellipse \\(refine none\\), m \\(refine single\\)"):
        compare_results(base, new)
    with pytest.raises(EvaluationError, match="not an `ultrasam evaluate` results folder"):
        compare_results(tmp_path / "nothing", base)
    with pytest.raises(EvaluationError, match="unknown metric"):
        compare_results(base, base, metric="hausdorff")
    other = write_results(tmp_path / "c", "hc18", "m__box__single", [0.8, 0.9])
    with pytest.raises(EvaluationError, match="no dataset and prompt scored in both"):
        compare_results(other, new)


def test_command_prints_and_writes_without_overwriting(tmp_path, capsys):
    from ultrasam.cli import main

    base = write_results(tmp_path / "a", "busi", "litemedsam__box__single", [0.6, 0.7, 0.8])
    write_results(tmp_path / "a", "busi", "ellipse__box__none", [0.5, 0.5, 0.5])
    new = write_results(tmp_path / "b", "busi", "lite__box__single", [0.7, 0.8, 0.9])
    out = tmp_path / "compare.md"
    assert main(["compare", str(base), str(new), "--base-model", "litemedsam", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| busi | box | a: litemedsam (single) | b: lite (single) | 3 |" in printed
    assert out.read_text() in printed
    [row] = json.loads(out.with_suffix(".json").read_text())
    assert row["mean_difference"] == pytest.approx(0.1) and row["verdict"] == "better"
    before = out.read_text()
    assert main(["compare", str(base), str(new), "--base-model", "ellipse", "--out", str(out)]) == 1
    assert "already exists" in capsys.readouterr().err
    assert out.read_text() == before
    assert main(["compare", str(base), str(new), "--base-model", "ellipse", "--out", str(out), "--overwrite"]) == 0
    assert "a: ellipse (none)" in out.read_text()
