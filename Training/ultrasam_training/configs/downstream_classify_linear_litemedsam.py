# Linear probe of LiteMedSAM's encoder on BUSI 3-class (CPU): the frozen encoder's pooled pre-neck
# features (320-d) are computed once and cached (keyed by image content + encoder digest), then a
# standardised linear head trains on them with the paper's focal loss and schedule. One encoder pass
# over the 780 images, then seconds per thousand iterations.
# Another encoder: --cfg-options encoder=... for every `encoder` entry below, or copy this file.
# Learning rate chosen on val (macro-F1 of the val split, 78 images; test untouched), all else the paper's:
#   lr       1e-4   1e-3   1e-2   3e-2   1e-1
#   pre_neck 0.561  0.714  0.779  0.797  0.787
#   neck     0.615  0.698  0.717  0.765  0.745
# (a linear head on standardised features barely moves at the paper's 1e-4 in 2000 iterations).
_base_ = ["./_downstream_classify_base.py"]

run_title = "BUSI 3-class, linear probe, LiteMedSAM pre-neck features"
encoder = "litemedsam"
family = "litemedsam"
pool = "pre_neck"
_features = dict(
    mode="features",
    encoder=encoder,
    family=family,
    pool=pool,
    flips=(False,),
    feature_dir="work_dirs/cache/downstream_features",
)

model = dict(
    variant="linear", encoder=None, cached=True, feature_dim=320, pool=pool, head=dict(hidden=(), standardize=True)
)
train_dataloader = dict(dataset=dict(_features, flip_prob=0.0))
val_dataloader = dict(dataset=_features)
evaluation = dict(sets=dict(val=_features, test=_features))
optim_wrapper = dict(optimizer=dict(lr=3e-2))
custom_hooks = [dict(type="FitStandardizeHook"), dict(type="CostRecordHook")]
torch_threads = 1
