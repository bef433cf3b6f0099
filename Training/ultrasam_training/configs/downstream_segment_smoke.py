# CI smoke run of Mask2Former on LiteMedSAM's frozen encoder: 1 real BUSI image per class (val split) at
# 128 px, a small Mask2Former (10 queries, 1 pixel-decoder layer, 2 decoder layers, 1024 points), a few
# iterations on one fixed batch so the loss must fall; trained and evaluated on the same images (mechanics).
_base_ = ["./_downstream_segment_base.py"]

run_title = "smoke: Mask2Former"
max_iters = 4
_small = dict(split="val", per_class=1, input_size=128)
model = dict(
    mask2former=dict(
        num_queries=10,
        encoder_layers=1,
        decoder_layers=3,
        train_num_points=1024,
        encoder_feedforward_dim=256,
        dim_feedforward=256,
    )
)
train_dataloader = dict(dataset=dict(_small, flip_prob=0.0))
val_dataloader = dict(dataset=_small)
evaluation = dict(sets=dict(val=_small, test=_small), bootstrap=20)
train_cfg = dict(max_iters=max_iters, val_interval=4)
optim_wrapper = dict(optimizer=dict(lr=1e-3))
param_scheduler = [dict(type="ConstantLR", factor=1.0, by_epoch=False, begin=0, end=max_iters)]
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval=max_iters))
log_processor = dict(window_size=1)
torch_threads = 2
