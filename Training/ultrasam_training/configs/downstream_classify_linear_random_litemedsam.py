# Baseline for the linear probes: the same probe on the pooled pre-neck features of LiteMedSAM's
# architecture with random weights (`encoders.reinitialise`, seed 0; frozen). What pretraining adds is
# then a paired comparison on the same test images:
#   ultrasam downstream compare work_dirs/downstream_classify_linear_random_litemedsam \
#       work_dirs/downstream_classify_linear_litemedsam
# (UltraSam-Lite's pre-neck features are LiteMedSAM's: the same comparison holds for it.)
# Learning rate chosen on val only (test switched off while choosing: --cfg-options evaluation.sets.test=None):
#   lr           1e-2   3e-2   1e-1
#   val macro-F1 0.661  0.612  0.613
_base_ = ["./downstream_classify_linear_litemedsam.py"]

run_title = "BUSI 3-class, linear probe, random-init LiteMedSAM architecture (pre-neck)"
_features = dict(
    mode="features",
    encoder="litemedsam",
    family="litemedsam",
    pool="pre_neck",
    flips=(False,),
    feature_dir="work_dirs/cache/downstream_features",
    random_init=0,
)
train_dataloader = dict(dataset=dict(_features, flip_prob=0.0))
val_dataloader = dict(dataset=_features)
evaluation = dict(sets=dict(val=_features, test=_features))
optim_wrapper = dict(optimizer=dict(lr=1e-2))
