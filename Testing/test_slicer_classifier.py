"""The Slicer module's prompt classifier on real MRML (``slicer-core``) with the real LiteMedSAM weights.

The label expected on the segment is what the library's ``PromptClassifier.classify_prompt`` gives
for the prompt the test placed (pixel box computed by the test), not what the logic reports.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "SlicerUltraSam"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

slicer = pytest.importorskip("slicer")
import vtk  # noqa: E402

import test_slicer_module as scene_helpers  # noqa: E402
from conftest import write_test_classifier  # noqa: E402
from SlicerUltraSamLib import SlicerUltraSamLogic  # noqa: E402
from SlicerUltraSamLib.segment_writer import LABEL_NOTICE_TAG, LABEL_TAG  # noqa: E402
from ultrasam.classifier import SHORT_NOTICE, ClassifierError, encode_image, format_label  # noqa: E402
from ultrasam.classifier import load_prompt_classifier  # noqa: E402
from ultrasam.phantom import synthetic_frame  # noqa: E402
from ultrasam.transforms import mask_to_box  # noqa: E402


def tag(segment, name):
    value = vtk.reference("")
    return str(value) if segment.GetTag(name, value) else None


def test_the_segment_and_the_status_line_get_the_label_with_the_notice_and_undo_puts_them_back(
    litemedsam_model, litemedsam_classifier, tmp_path
):
    app = scene_helpers.create_headless_slicer()
    image, truth = synthetic_frame(80, 104, seed=5)
    volume = scene_helpers.add_volume(app, image[None])
    x0, y0, x1, y1 = mask_to_box(truth)
    roi = scene_helpers.add_roi_around(app, volume, None, (x0 - 0.5, y0 - 0.5, -0.5), (x1 - 0.5, y1 - 0.5, 0.5))
    classifier = load_prompt_classifier(litemedsam_classifier)
    label, probabilities = classifier.classify_prompt(
        litemedsam_model, encode_image(litemedsam_model, image), box=np.array([x0, y0, x1, y1], float)
    )
    expected = format_label(label, probabilities)
    logic = SlicerUltraSamLogic(model=litemedsam_model, classifierFile=litemedsam_classifier)

    request = logic.buildRequest(volume, roiNode=roi)
    outcome = logic.run(request)
    logic.apply(request, outcome)

    assert outcome.label == label and outcome.probabilities == pytest.approx(probabilities, abs=1e-5)
    segmentation = logic.lastSegmentationNode
    segment = segmentation.GetSegmentation().GetSegment(logic.lastSegmentId)
    assert segment.GetName() == f"UltraSam 1 ({expected})"
    assert tag(segment, LABEL_TAG) == expected and tag(segment, LABEL_NOTICE_TAG) == SHORT_NOTICE
    message = logic.outcomeMessage(request, outcome)
    assert f"{expected} ({SHORT_NOTICE})" in message and "not a diagnosis" in message

    # again on the same segment: the suffix is replaced, not stacked; Undo puts the previous label back
    logic.segment(volume, roiNode=roi, segmentationNode=segmentation, segmentId=logic.lastSegmentId)
    assert segment.GetName() == f"UltraSam 1 ({expected})"
    logic.undo()
    assert segment.GetName() == f"UltraSam 1 ({expected})" and tag(segment, LABEL_TAG) == expected
    # without the classifier the stale label goes (it described the earlier masks); Undo brings it back
    logic.setClassifier(None)
    logic.segment(volume, roiNode=roi, segmentationNode=segmentation, segmentId=logic.lastSegmentId)
    assert segment.GetName() == "UltraSam 1" and tag(segment, LABEL_TAG) is None
    assert logic.lastOutcome.label is None and "diagnosis" not in logic.outcomeMessage(request, logic.lastOutcome)
    logic.undo()
    assert segment.GetName() == f"UltraSam 1 ({expected})" and tag(segment, LABEL_NOTICE_TAG) == SHORT_NOTICE
    logic.undo()  # the first run: its segment is removed
    assert segmentation.GetSegmentation().GetNumberOfSegments() == 0

    # a classifier trained on another model is refused when set, naming both models
    wrong = write_test_classifier(tmp_path / "wrong.safetensors", litemedsam_model, {"family": "medsam", "digest": "f" * 24})
    with pytest.raises(ClassifierError, match="medsam f{24}"):
        logic.setClassifier(wrong)
    assert logic.classifier is None
