"""The prompt classifier deployed: the predictor, ``ultrasam segment --classifier`` and the model record.

Expected labels never come from the code under test's wiring: they are what the library's
``PromptClassifier.classify_prompt`` gives for the same prompt on an image encoded by
``encode_image`` (the functions the training run makes its descriptors with). Model: the real
LiteMedSAM weights; images: seeded synthetic B-mode frames (``ultrasam.phantom``). The classifier's
weights are seeded, not trained (``conftest.write_test_classifier``); the trained smoke run's file
is checked the same way in ``test_downstream_prompted.py``.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import write_test_classifier
from ultrasam.classifier import (
    SHORT_NOTICE,
    ClassifierError,
    encode_image,
    format_label,
    load_prompt_classifier,
    model_identity,
    sam_digest,
)
from ultrasam.cli import main
from ultrasam.phantom import synthetic_frame, synthetic_volume
from ultrasam.predictor import Predictor
from ultrasam.transforms import mask_to_box


@pytest.fixture(scope="module")
def frame():
    image, truth = synthetic_frame(96, 128, seed=3)
    return image, truth, np.asarray(mask_to_box(truth), float)


@pytest.fixture(scope="module")
def encoded(litemedsam_model, frame):
    return encode_image(litemedsam_model, frame[0])


def count_encoder_calls(model):
    calls = []
    handle = model.sam.image_encoder.register_forward_hook(lambda *_: calls.append(1))
    return calls, handle


def test_predictions_carry_the_label_classify_prompt_gives_from_one_encoder_pass(
    litemedsam_model, litemedsam_classifier, frame, encoded
):
    image, truth, box = frame
    classifier = load_prompt_classifier(litemedsam_classifier)
    predictor = Predictor(litemedsam_model, classifier=litemedsam_classifier)
    calls, handle = count_encoder_calls(litemedsam_model)
    try:
        predictor.set_image(image)
        by_box = predictor.predict(box=box)
        rows, cols = np.nonzero(truth)
        points = np.array([[np.median(cols), np.median(rows)], [2.0, 2.0]])
        by_points = predictor.predict(points=points, labels=np.array([1, 0]), box=box)
        other = box + np.array([-6, -4, 8, 5])
        batch = predictor.predict(box=np.stack([box, other]))
    finally:
        handle.remove()
    assert len(calls) == 1 and predictor.encoded == 1  # the descriptor comes from the same, only, encoder pass
    for prediction, kwargs in (
        (by_box, {"box": box}),
        (by_points, {"box": box, "points": points, "labels": np.array([1, 0])}),
    ):
        label, probabilities = classifier.classify_prompt(litemedsam_model, encoded, **kwargs)
        assert prediction.label == label
        assert prediction.probabilities == pytest.approx(probabilities, abs=1e-5)
        assert set(prediction.probabilities) == {"benign", "malignant"}
        assert sum(prediction.probabilities.values()) == pytest.approx(1.0)
    assert by_points.probabilities != pytest.approx(by_box.probabilities, abs=1e-6)  # the clicks count
    expected = [classifier.classify_prompt(litemedsam_model, encoded, box=b) for b in (box, other)]
    assert batch.labels == [e[0] for e in expected]
    for got, (_, want) in zip(batch.class_probabilities, expected):
        assert got == pytest.approx(want, abs=1e-5)
    assert predictor.predict(box=box, classify=False).label is None


def test_without_a_classifier_nothing_is_classified_or_kept(litemedsam_model, litemedsam_classifier, frame):
    image, _, box = frame
    predictor = Predictor(litemedsam_model)
    predictor.set_image(image)
    prediction = predictor.predict(box=box)
    assert prediction.label is None and prediction.probabilities is None and prediction.labels is None
    assert predictor._current.image_descriptor is None  # zero cost: no descriptor pooled or stored
    # a predictor with the classifier on the same store encodes again (the stored embedding has no
    # descriptor) rather than failing, and replaces the entry
    classified = Predictor(litemedsam_model, store=predictor.store, classifier=litemedsam_classifier)
    classified.set_image(image)
    assert classified.encoded == 1 and classified.predict(box=box).label is not None
    predictor.set_image(image)
    assert predictor.encoded == 1 and predictor._current.image_descriptor is not None
    predictor.attach_classifier(None)
    assert predictor.predict(box=box).label is None


def test_a_classifier_of_another_model_is_refused_naming_both(tmp_path, litemedsam_model, frame):
    other = copy.deepcopy(litemedsam_model)
    with torch.no_grad():
        next(other.sam.mask_decoder.parameters()).add_(1e-3)  # one decoder tensor fine-tuned a little
    assert sam_digest(other.sam) != sam_digest(litemedsam_model.sam)
    mine = model_identity(litemedsam_model)
    path = write_test_classifier(tmp_path / "other.safetensors", other)
    with pytest.raises(ClassifierError) as error:
        Predictor(litemedsam_model, classifier=path)
    message = str(error.value)
    assert model_identity(other)["digest"] in message and mine["digest"] in message and "litemedsam" in message
    relabelled = write_test_classifier(tmp_path / "family.safetensors", litemedsam_model, {**mine, "family": "ultrasam_lite"})
    with pytest.raises(ClassifierError, match="ultrasam_lite"):
        Predictor(litemedsam_model).attach_classifier(relabelled)
    unrecorded = write_test_classifier(tmp_path / "none.safetensors", litemedsam_model, identity=None)
    with pytest.raises(ClassifierError, match="does not record the model"):
        Predictor(litemedsam_model, classifier=unrecorded)
    # files exported before the header's model record kept it in their meta: still checked and accepted
    legacy = write_test_classifier(
        tmp_path / "legacy.safetensors",
        litemedsam_model,
        identity=None,
        meta={"model_digest": mine["digest"], "family": mine["family"]},
    )
    assert Predictor(litemedsam_model, classifier=legacy).classifier.model == mine


def test_a_file_that_is_not_a_classifier_is_one_clear_error(tmp_path):
    text = tmp_path / "notes.safetensors"
    text.write_text("not tensors")
    for path, message in ((text, "not an UltraSam prompt classifier"), (tmp_path / "gone.safetensors", "does not exist")):
        with pytest.raises(ClassifierError, match=message):
            load_prompt_classifier(path)


def test_segment_command_prints_the_label_and_refuses_another_models_classifier(
    tmp_path, capsys, litemedsam_checkpoint, litemedsam_model, litemedsam_classifier, frame, encoded
):
    image, _, box = frame
    png = tmp_path / "frame.png"
    Image.fromarray(image).save(png)
    args = ["segment", str(png), "--box", *map(str, box), "--checkpoint", str(litemedsam_checkpoint), "--device", "cpu"]
    assert main([*args, "--classifier", str(litemedsam_classifier), "--out", str(tmp_path / "m.png")]) == 0
    out = capsys.readouterr().out
    label, probabilities = load_prompt_classifier(litemedsam_classifier).classify_prompt(
        litemedsam_model, encoded, box=box
    )
    assert f"label: {format_label(label, probabilities)} ({SHORT_NOTICE})" in out.splitlines()
    assert main([*args, "--out", str(tmp_path / "plain.png")]) == 0
    assert "label:" not in capsys.readouterr().out  # no classifier, no label
    wrong = write_test_classifier(tmp_path / "wrong.safetensors", litemedsam_model, {"family": "litemedsam", "digest": "0" * 24})
    assert main([*args, "--classifier", str(wrong), "--out", str(tmp_path / "refused.png")]) == 1
    err = capsys.readouterr().err
    assert "was trained on the litemedsam " + "0" * 24 in err and model_identity(litemedsam_model)["digest"] in err
    assert not (tmp_path / "refused.png").exists()


def test_propagation_classifies_the_keyframe_and_encodes_each_frame_once(litemedsam_model, litemedsam_classifier):
    from ultrasam.prompts import FramePrompts
    from ultrasam.propagate import StopRule, propagate

    image, truth = synthetic_volume((48, 80, 6), seed=4)
    box = np.asarray(mask_to_box(truth[:, :, 3]), float)
    predictor = Predictor(litemedsam_model, classifier=litemedsam_classifier)
    results = propagate(
        predictor, lambda n: image[:, :, n], 6, {3: FramePrompts(3, box=box)},
        lookahead=2, progress=False, stop_rule=StopRule.legacy(0.0),
    )
    assert sorted(results) == list(range(6)) and results.encoded == 6  # the look-ahead worker's embeddings serve
    expected = predictor.classifier.classify_prompt(litemedsam_model, encode_image(litemedsam_model, image[:, :, 3]), box=box)
    assert results[3].label == expected[0] and results[3].probabilities == pytest.approx(expected[1], abs=1e-5)
    assert all(results[n].label is None for n in results if n != 3)  # carried boxes are not prompts it learnt


def test_segment_volume_prints_the_prompted_slices_label_and_refuses_another_models_classifier(
    tmp_path, capsys, litemedsam_checkpoint, litemedsam_model, litemedsam_classifier
):
    import SimpleITK as sitk

    image, truth = synthetic_volume((48, 80, 6), seed=4)  # [k, j, i]: sagittal slice n is image[:, :, n]
    volume = tmp_path / "sweep.nrrd"
    sitk.WriteImage(sitk.GetImageFromArray(image), str(volume))
    box = np.asarray(mask_to_box(truth[:, :, 3]), float)
    args = ["segment-volume", str(volume), "--slice", "3", "--box", *map(str, box), "--propagate",
            "--checkpoint", str(litemedsam_checkpoint), "--device", "cpu"]
    assert main([*args, "--classifier", str(litemedsam_classifier), "--out", str(tmp_path / "seg.seg.nrrd")]) == 0
    lines = capsys.readouterr().out.splitlines()
    label, probabilities = load_prompt_classifier(litemedsam_classifier).classify_prompt(
        litemedsam_model, encode_image(litemedsam_model, image[:, :, 3]), box=box
    )
    labelled = [line for line in lines if "label:" in line]
    assert labelled == [f"slice 3 label: {format_label(label, probabilities)} ({SHORT_NOTICE})"]  # propagated: none
    wrong = write_test_classifier(tmp_path / "wrong.safetensors", litemedsam_model, {"family": "litemedsam", "digest": "0" * 24})
    assert main([*args, "--classifier", str(wrong), "--out", str(tmp_path / "refused.seg.nrrd")]) == 1
    assert "was trained on the litemedsam " + "0" * 24 in capsys.readouterr().err
    assert not (tmp_path / "refused.seg.nrrd").exists()
