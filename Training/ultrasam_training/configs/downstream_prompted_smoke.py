# CI smoke run of prompted classification: descriptors of the lesions of 2 real BUSI images per class
# (val split), trained, selected and evaluated on those same lesions (mechanics, not accuracy), a few
# iterations on one fixed batch at a raised learning rate, so the loss must fall; exports the classifier.
_base_ = ["./_downstream_prompted_base.py"]

run_title = "smoke: prompted classification"
max_iters = 8
_small = dict(split="val", per_class=2, progress=False, cache_dir="work_dirs/cache/prompted_smoke")
_set = dict(
    type="LesionDescriptorDataset", data_root="{{$ULTRASAM_SHARED_DIR:../shared}}/data", model="litemedsam", **_small
)
train_dataloader = dict(batch_size=16, dataset=_small)
val_dataloader = dict(batch_size=16, dataset=_small)
evaluation = dict(
    sets=dict(_delete_=True, val=_set, test_box=dict(_set, kinds=("box",)), test_point=dict(_set, kinds=("point",))),
    batch_size=16,
    bootstrap=50,
)
train_cfg = dict(max_iters=max_iters, val_interval=4)
optim_wrapper = dict(optimizer=dict(lr=1e-2))
param_scheduler = [dict(type="ConstantLR", factor=1.0, by_epoch=False, begin=0, end=max_iters)]
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval=max_iters))
log_processor = dict(window_size=1)
