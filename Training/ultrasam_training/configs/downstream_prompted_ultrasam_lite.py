# Prompted benign/malignant classification from UltraSam-Lite's decoder output (the default model: a
# classifier is only used with the model it was trained on, so the default needs its own). Same
# 832-d descriptor as downstream_prompted_litemedsam.py (mask token 256 + conditioned embedding 256 +
# pre-neck image descriptor 320); UltraSam-Lite segments from a click, so click descriptors pool inside a
# real mask. Learning rate as chosen for LiteMedSAM on val; descriptors are cached per model.
# Only the datasets' `model` changes (merged into the base's datasets).
_base_ = ["./_downstream_prompted_base.py"]

run_title = "BUSI lesion benign/malignant from one prompt, UltraSam-Lite"
model_source = "ultrasam_lite"
_model = dict(model=model_source)
train_dataloader = dict(dataset=_model)
val_dataloader = dict(dataset=_model)
evaluation = dict(sets={name: _model for name in ("val", "val_box", "val_point", "test_box", "test_point")})
optim_wrapper = dict(optimizer=dict(lr=1e-3))
