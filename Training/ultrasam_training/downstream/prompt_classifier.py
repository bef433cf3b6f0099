"""A lesion's class from one prompt's decoder output: the descriptor, the head, and a safe file format.

**Research benchmark, not a diagnosis.** The implementation is the library's
:mod:`ultrasam.classifier` (the inference half a deployed classifier needs: descriptor, head,
safetensors file with the model record, ``classify_prompt``); this module re-exports it under the
names the training code and its tests have always used, so training and deployment run the very
same functions.
"""

from __future__ import annotations

from ultrasam.classifier import (  # noqa: F401
    FORMAT,
    NOTICE,
    PARTS,
    SHORT_NOTICE,
    VERSION,
    ClassifierError,
    DecoderState,
    EncodedImage,
    PromptClassifier,
    Standardize,
    build_descriptor,
    capture_decoder_state,
    decode_prompt,
    describe_prompt,
    encode_features,
    encode_image,
    format_label,
    load_prompt_classifier,
    mlp_head,
    model_identity,
    pool_image_features,
    sam_digest,
    save_prompt_classifier,
    scores_to_probabilities,
    soft_or_hard_mask,
    valid_fraction,
    valid_weights,
)
