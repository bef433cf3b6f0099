# Linear probe of LiteMedSAM's encoder on BUSI 3-class (CPU) on every stage's pooled features: the masked
# means of the four TinyViT stages concatenated (64+128+160+320 = 672-d; the last 320 are the pre-neck
# descriptor of downstream_classify_linear_litemedsam), the multi-layer read-out of linear evaluations such
# as DINOv2's. Same cache, head, loss and schedule as the pre-neck probe; one more encoder pass over the 780
# images fills the `levels` entry of each cached file.
# Learning rate chosen on val (macro-F1, 78 images; test off while choosing): see README.
_base_ = ["./downstream_classify_linear_litemedsam.py"]

run_title = "BUSI 3-class, linear probe, LiteMedSAM every-stage features"
pool = "levels"
_features = dict(
    mode="features",
    encoder="litemedsam",
    family="litemedsam",
    pool=pool,
    flips=(False,),
    feature_dir="work_dirs/cache/downstream_features",
)
model = dict(feature_dim=672, pool=pool)
train_dataloader = dict(dataset=dict(_features, flip_prob=0.0))
val_dataloader = dict(dataset=_features)
evaluation = dict(sets=dict(val=_features, test=_features))
