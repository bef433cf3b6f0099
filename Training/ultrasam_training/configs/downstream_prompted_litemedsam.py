# Prompted benign/malignant classification from LiteMedSAM's decoder output (832-d descriptor: mask token
# 256 + conditioned embedding 256 + pre-neck image descriptor 320). LiteMedSAM gives empty masks for
# clicks, so click descriptors pool the conditioned embedding with soft weights (see prompt_classifier.py).
# Another SAM model (e.g. UltraSam-Lite): --cfg-options model_source=PATH and the datasets' `model`
# (simplest: copy this file), and model.feature_dim = 512 + its pre-neck width (ViT-b: 1280).
# 2000 iterations of batch 8 on cached descriptors: about a minute on a CPU after the one-off caching.
_base_ = ["./_downstream_prompted_base.py"]

run_title = "BUSI lesion benign/malignant from one prompt, LiteMedSAM"
optim_wrapper = dict(optimizer=dict(lr=1e-3))
