"""The evaluator's per-instance journal: records written as produced, an interrupted run resumed
exactly, other settings refused; clicks run exactly N unless NoC is asked for."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_evaluation import write_synthetic_coco

from ultrasam_training.evaluation import EvaluationError, evaluate_dataset
from ultrasam_training.evaluation.dataset import EvalDataset
from ultrasam_training.evaluation.segmenters import Segmentation


class Interrupted(Exception):
    pass


class GrowingSegmenter:
    """Test double: a mask that grows by one row of the GT per call, so IoU depends on the click count."""

    name, refine, prompt_kinds = "grower", None, frozenset({"box", "point"})

    def __init__(self, fail_after: int | None = None) -> None:
        self.calls = 0
        self.images = 0
        self.fail_after = fail_after

    def set_image(self, image, key=None):
        self.shape = image.shape[:2]
        self.images += 1

    def segment(self, points=None, labels=None, box=None, mask_input=None):
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise Interrupted
        mask = np.zeros(self.shape, bool)
        clicks = 1 if points is None else len(points)
        mask[5 : 5 + 2 * clicks, 5:20] = True
        return Segmentation(mask=mask, score=0.5, logits=np.zeros((256, 256), np.float32))


@pytest.fixture
def dataset(tmp_path):
    boxes = [[(5, 5, 15, 30)], [(5, 5, 15, 30), (40, 5, 15, 20)], [(5, 5, 15, 30)], [(5, 5, 15, 30)]]
    return EvalDataset.load(write_synthetic_coco(tmp_path / "data", boxes))


def test_clicks_run_exactly_n_without_noc_and_to_the_cap_with_it(dataset):
    plain = GrowingSegmenter()
    [result] = evaluate_dataset(plain, dataset, ["box"], clicks=3, progress=False)
    assert plain.calls == dataset.instance_count * (3 + 1)  # 3 clicks + the box, never the NoC cap
    assert result.summary["NoC@85"] is None
    with_noc = GrowingSegmenter()
    [result] = evaluate_dataset(with_noc, dataset, ["box"], clicks=3, noc=True, noc_cap=7, progress=False)
    assert with_noc.calls > plain.calls
    assert 1 <= result.summary["NoC@85"] <= 7


def test_an_interrupted_run_resumes_from_its_journal_exactly(dataset, tmp_path):
    reference = evaluate_dataset(GrowingSegmenter(), dataset, ["box", "point"], clicks=2, progress=False)
    journal = tmp_path / "records.jsonl"
    calls_per_instance = 2 + 2  # two clicks, then box and point
    with pytest.raises(Interrupted):
        evaluate_dataset(
            GrowingSegmenter(fail_after=3 * calls_per_instance + 1), dataset, ["box", "point"], clicks=2,
            progress=False, journal=journal,
        )
    lines = journal.read_text().splitlines()
    assert len(lines) == 1 + 3  # the settings, then the three instances finished before the failure
    resumed_model = GrowingSegmenter()
    resumed = evaluate_dataset(resumed_model, dataset, ["box", "point"], clicks=2, progress=False, journal=journal)
    assert resumed_model.calls == (dataset.instance_count - 3) * calls_per_instance
    assert resumed_model.images == 2  # images whose instances were all journalled are not encoded again
    for before, after in zip(reference, resumed):
        assert [r.to_row() for r in before.records] == [r.to_row() for r in after.records]
        assert before.detections == after.detections
        for key in ("mAP", "mean Dice", "IoU@1", "IoU@2"):
            assert before.summary[key] == after.summary[key]


def test_a_torn_last_line_is_recomputed(dataset, tmp_path):
    journal = tmp_path / "records.jsonl"
    evaluate_dataset(GrowingSegmenter(), dataset, ["box"], progress=False, journal=journal)
    text = journal.read_text()
    journal.write_text(text[: len(text) - 10])  # a kill in the middle of the last record
    model = GrowingSegmenter()
    evaluate_dataset(model, dataset, ["box"], progress=False, journal=journal)
    assert model.calls == 1
    assert [json.loads(line) for line in journal.read_text().splitlines()][1:] == [
        json.loads(line) for line in text.splitlines()
    ][1:]


def test_a_journal_of_other_settings_is_refused_and_kept(dataset, tmp_path):
    journal = tmp_path / "records.jsonl"
    evaluate_dataset(GrowingSegmenter(), dataset, ["box"], clicks=2, progress=False, journal=journal)
    before = journal.read_bytes()
    with pytest.raises(EvaluationError, match="other settings"):
        evaluate_dataset(GrowingSegmenter(), dataset, ["box"], clicks=3, progress=False, journal=journal)
    assert journal.read_bytes() == before


def test_cli_resume_and_refusal(tmp_path, capsys):
    from ultrasam.cli import main

    coco = write_synthetic_coco(tmp_path / "data", [[(5, 5, 40, 20)], [(10, 30, 30, 20)]])
    out = tmp_path / "results"
    argv = ["evaluate", "--model", "filled-box", "--coco", str(coco), "--out", str(out), "--quiet"]
    assert main(argv) == 0
    journals = list((out / "records").glob("*.jsonl"))
    assert len(journals) == 1 and len(journals[0].read_text().splitlines()) == 3
    import shutil

    for path in out.iterdir():  # as if the run had died after its last instance: only the records are left
        if path.name != "records":
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    assert main(argv) == 1
    assert "--resume" in capsys.readouterr().err
    assert main([*argv, "--resume"]) == 0
    assert (out / "summary.md").exists()
