# The linear probe on LiteMedSAM's neck output (256-d) instead of the pre-neck tokens: which map is
# "the last feature map" for a TinyViT encoder, measured (same cache, same head, same schedule).
_base_ = ["./downstream_classify_linear_litemedsam.py"]

run_title = "BUSI 3-class, linear probe, LiteMedSAM neck features"
_features = dict(pool="neck")
model = dict(feature_dim=256, pool="neck")
train_dataloader = dict(dataset=_features)
val_dataloader = dict(dataset=_features)
evaluation = dict(sets=dict(val=_features, test=_features))
