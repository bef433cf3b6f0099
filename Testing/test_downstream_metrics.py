"""Downstream metrics, bootstrap intervals and the paired comparison of two runs (no model involved).

Expected values are computed here from their definitions (brute-force pair counting, hand-made
confusion matrices), so a wrong implementation fails.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("mmengine")

from ultrasam_training.downstream import metrics as M  # noqa: E402
from ultrasam_training.downstream.paired import compare_runs  # noqa: E402
from ultrasam_training.evaluation.errors import EvaluationError  # noqa: E402


def _brute_auroc(positive: np.ndarray, scores: np.ndarray) -> float:
    pos, neg = scores[positive], scores[~positive]
    wins = (pos[:, None] > neg[None]).sum() + 0.5 * (pos[:, None] == neg[None]).sum()
    return wins / (len(pos) * len(neg))


def test_auroc_counts_pairs_with_ties_as_half():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 300).astype(bool)
    scores = np.round(rng.random(300) + 0.4 * labels, 1)  # rounding makes many ties
    assert M.binary_auroc(labels, scores) == pytest.approx(_brute_auroc(labels, scores), abs=1e-12)
    assert M.binary_auroc(labels, -scores) == pytest.approx(1 - _brute_auroc(labels, scores), abs=1e-12)
    assert np.isnan(M.binary_auroc(np.ones(4, bool), np.arange(4.0)))


def test_roc_curve_area_equals_auroc():
    rng = np.random.default_rng(4)
    labels = rng.integers(0, 2, 200).astype(bool)
    scores = rng.random(200) + 0.3 * labels
    fpr, tpr = M.roc_curve(labels, scores)
    assert fpr[0] == tpr[0] == 0 and fpr[-1] == tpr[-1] == 1
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
    assert np.trapezoid(tpr, fpr) == pytest.approx(M.binary_auroc(labels, scores), abs=1e-9)


def test_macro_f1_from_a_hand_made_confusion_matrix():
    # true:      0 0 0 0 1 1 1 2 2 2
    # predicted: 0 0 1 2 1 1 0 2 2 1
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 2])
    predicted = np.array([0, 0, 1, 2, 1, 1, 0, 2, 2, 1])
    matrix = M.confusion_matrix(labels, predicted, 3)
    assert matrix.tolist() == [[2, 1, 1], [1, 2, 0], [0, 1, 2]]
    f1 = [2 * 2 / (4 + 3), 2 * 2 / (3 + 4), 2 * 2 / (3 + 3)]
    assert M.f1_per_class(matrix) == pytest.approx(f1)
    assert M.macro_f1(labels, predicted, 3) == pytest.approx(np.mean(f1))
    assert M.accuracy(labels, predicted) == pytest.approx(0.6)


def test_bootstrap_is_seeded_and_brackets_the_estimate():
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 3, 150)
    probabilities = rng.dirichlet(np.ones(3), 150)
    probabilities[np.arange(150), labels] += 0.5
    first = M.classification_summary(labels, probabilities, ("a", "b", "c"), resamples=300, seed=7)
    again = M.classification_summary(labels, probabilities, ("a", "b", "c"), resamples=300, seed=7)
    other = M.classification_summary(labels, probabilities, ("a", "b", "c"), resamples=300, seed=8)
    assert first == again
    assert first["macro_f1"].low != other["macro_f1"].low
    for estimate in first.values():
        assert estimate.low <= estimate.value <= estimate.high
        assert estimate.n == 150
    assert first["macro_f1"].high - first["macro_f1"].low > 0.02  # 150 items leave real uncertainty


def _predictions(folder: Path, correct: list[int]) -> Path:
    path = folder / "results" / "predictions" / "test.csv"
    path.parent.mkdir(parents=True)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["key", "label", "correct", "true_probability"])
        for i, c in enumerate(correct):
            writer.writerow([f"img{i}.png", "benign", c, 0.4 + 0.5 * c])
    return folder


def test_paired_comparison_of_two_runs_uses_the_shared_statistics(tmp_path):
    base = _predictions(tmp_path / "base", [0] * 30 + [1] * 70)
    better = _predictions(tmp_path / "better", [1] * 30 + [1] * 70)
    same = _predictions(tmp_path / "same", [0] * 30 + [1] * 70)
    result = compare_runs(base, better, metric="correct", bootstrap=2000)
    assert (result.n, result.better, result.worse, result.equal) == (100, 30, 0, 70)
    assert result.mean_difference == pytest.approx(0.3)
    assert result.verdict == "better" and result.ci_low > 0
    assert compare_runs(better, base, metric="true_probability").verdict == "worse"
    assert compare_runs(base, same).verdict == "tie"


def test_paired_comparison_refuses_runs_on_different_items(tmp_path):
    base = _predictions(tmp_path / "base", [1] * 10)
    other = _predictions(tmp_path / "other", [1] * 11)
    with pytest.raises(EvaluationError, match="different instances"):
        compare_runs(base, other)
    with pytest.raises(EvaluationError, match="lesion_iou"):
        compare_runs(base, base, metric="lesion_iou")


def test_compare_command_prints_the_paired_table(tmp_path, capsys):
    from ultrasam.cli import main

    base = _predictions(tmp_path / "base", [0] * 20 + [1] * 80)
    new = _predictions(tmp_path / "new", [1] * 100)
    out = tmp_path / "compare.md"
    assert main(["downstream", "compare", str(base), str(new), "--metric", "correct", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| test |" in printed and "better" in printed and "20 / 0 / 80" in printed
    assert out.read_text() == printed


def _prediction_rows(folder, name, header, rows):
    path = folder / "results" / "predictions"
    path.mkdir(parents=True, exist_ok=True)
    (path / f"{name}.csv").write_text(",".join(header) + "\n" + "".join(",".join(map(str, r)) + "\n" for r in rows))


def test_lesion_auroc_against_the_image_level_classifier_on_the_same_lesions(tmp_path):
    """Image c holds two lesions. Image-level p(malignant | not normal): a 0.6, b 0.2, c 0.4, d 0.8; the
    lesion pairs (malignant, benign) it orders right: (c,b) twice, (d,a), (d,b) -> 4 of 6. The prompted
    run orders all 6 right. Intervals resample the 4 images, keeping c's lesions together."""
    from ultrasam_training.downstream.paired import lesion_auroc_against_image
    from ultrasam_training.evaluation.errors import EvaluationError

    image, prompted = tmp_path / "image", tmp_path / "prompted"
    _prediction_rows(image, "test", ["key", "label", "p_benign", "p_malignant", "p_normal"], [
        ["a.png", "benign", 0.30, 0.45, 0.25], ["b.png", "benign", 0.80, 0.20, 0.00],
        ["c.png", "malignant", 0.30, 0.20, 0.50], ["d.png", "malignant", 0.20, 0.80, 0.00],
        ["n.png", "normal", 0.10, 0.10, 0.80],
    ])
    _prediction_rows(prompted, "test_box", ["key", "label", "p_benign", "p_malignant"], [
        ["a.png|1|box", "benign", 0.9, 0.1], ["b.png|1|box", "benign", 0.8, 0.2],
        ["c.png|1|box", "malignant", 0.3, 0.7], ["c.png|2|box", "malignant", 0.4, 0.6], ["d.png|1|box", "malignant", 0.1, 0.9],
    ])
    from ultrasam.cli import main

    out = tmp_path / "versus.md"
    assert main(["downstream", "lesion-vs-image", str(prompted), str(image), "--bootstrap", "300", "--out", str(out)]) == 0
    assert "| 5 (4) | 1.000" in out.read_text()
    result = lesion_auroc_against_image(prompted, image, bootstrap=300, seed=1)
    assert (result.lesions, result.images) == (5, 4)
    assert result.prompted.value == 1.0 and result.image_level.value == pytest.approx(4 / 6)
    assert result.difference.value == pytest.approx(1 / 3)
    assert result.difference.low <= result.difference.value <= result.difference.high
    assert result.verdict in ("prompted better", "tie") and "| 5 (4) |" in result.markdown("p", "i")

    _prediction_rows(prompted, "test_point", ["key", "label", "p_benign", "p_malignant"], [["z.png|1|point", "benign", 0.5, 0.5]])
    with pytest.raises(EvaluationError, match="not in"):
        lesion_auroc_against_image(prompted, image, prompted_set="test_point")
