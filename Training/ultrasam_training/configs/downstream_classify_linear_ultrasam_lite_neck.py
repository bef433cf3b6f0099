# Linear probe of UltraSam-Lite's encoder on BUSI 3-class (CPU), on the neck output (256-d).
# UltraSam-Lite v2 shares LiteMedSAM's TinyViT trunk and trained only the neck (plus the prompt
# encoder and decoder), so its pre-neck features are LiteMedSAM's exactly: the encoders differ only
# after the neck, and this run is paired with downstream_classify_linear_litemedsam_neck.py (same
# images, head, schedule and learning rate, chosen on val for LiteMedSAM).
_base_ = ["./downstream_classify_linear_litemedsam.py"]

run_title = "BUSI 3-class, linear probe, UltraSam-Lite neck features"
encoder = "ultrasam_lite"
family = "litemedsam"
_features = dict(
    mode="features",
    encoder=encoder,
    family=family,
    pool="neck",
    flips=(False,),
    feature_dir="work_dirs/cache/downstream_features",
)
model = dict(feature_dim=256, pool="neck")
train_dataloader = dict(dataset=_features)
val_dataloader = dict(dataset=_features)
evaluation = dict(sets=dict(val=_features, test=_features))
