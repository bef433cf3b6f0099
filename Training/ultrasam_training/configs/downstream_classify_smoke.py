# CI smoke run of the classification pipeline: the linear probe on cached LiteMedSAM features of 2 real
# BUSI images per class, trained, selected and evaluated on those same 6 images (the val split; a test of
# the mechanics, not of accuracy), a few iterations at a raised learning rate on one fixed batch, so the
# loss must fall. The 6 encoder passes are cached: a second run only trains.
_base_ = ["./downstream_classify_linear_litemedsam.py"]

run_title = "smoke: BUSI 3-class linear probe"
max_iters = 8
_small = dict(split="val", per_class=2, progress=False, feature_dir="work_dirs/cache/downstream_features_smoke")
train_dataloader = dict(batch_size=6, dataset=_small)
val_dataloader = dict(batch_size=6, dataset=_small)
evaluation = dict(sets=dict(val=_small, test=_small), batch_size=6, bootstrap=50)
train_cfg = dict(max_iters=max_iters, val_interval=4)
optim_wrapper = dict(optimizer=dict(lr=1e-2))
param_scheduler = [dict(type="ConstantLR", factor=1.0, by_epoch=False, begin=0, end=max_iters)]
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval=max_iters))
log_processor = dict(window_size=1)
