# Mask2Former on LiteMedSAM's frozen encoder (pyramid: TinyViT stages 1-3 + neck, strides 2/4/4/4 of the
# 256-px input; mask features at 128x128), CPU-sized: 8 threads-worth of work does not fit 2 cores, so
# this is 1500 iterations of batch 2 (about 6.6 epochs of the 453 training images; several hours on 2
# cores, minutes on a GPU). A random Mask2Former head needs thousands of iterations: treat a shorter run
# as a smoke test, not a result. Trainable variants: model.variant=finetune | lora | medsa | scratch.
_base_ = ["./_downstream_segment_base.py"]

run_title = "BUSI lesions, Mask2Former on LiteMedSAM (frozen)"
max_iters = 1500
val_interval = 250
train_cfg = dict(max_iters=max_iters, val_interval=val_interval)
param_scheduler = [
    dict(type="LinearLR", start_factor=1e-3, by_epoch=False, begin=0, end=100),
    dict(type="MultiStepLR", by_epoch=False, begin=0, end=max_iters, milestones=[round(max_iters * 0.75)], gamma=0.1),
]
default_hooks = dict(logger=dict(interval=10), checkpoint=dict(interval=max_iters))
torch_threads = 2
