# Full fine-tune of LiteMedSAM's encoder + linear head on BUSI 3-class, sized for 2 CPU cores (<= 1 h):
# the paper's recipe with its schedule compressed at the same fractions (warm-up 500/2000, step 1600/2000)
# to 240 optimiser steps of batch 8 (1920 images, about 3.5 epochs of the 546 training images).
# Batch 8 is 4 accumulated batches of 2: TinyViT keeps its 256x256 stage's activations for the backward
# pass, and a batch of 8 took 14.5 GB of memory on the shared 24 GB machine; `max_iters` counts batches of 2.
# TinyViT's BatchNorm keeps its pretrained statistics (batches this small cannot re-estimate them).
# On a GPU use the paper's schedule (2000 steps of 8) or downstream_classify_vitb.py.
_base_ = ["./_downstream_classify_base.py"]

run_title = "BUSI 3-class, full fine-tune, LiteMedSAM"
accumulate = 4
max_iters = 240 * accumulate
val_interval = 60 * accumulate
batch_size = 2
model = dict(variant="finetune")
train_cfg = dict(max_iters=max_iters, val_interval=val_interval)
train_dataloader = dict(batch_size=batch_size)
optim_wrapper = dict(accumulative_counts=accumulate)
param_scheduler = [
    dict(type="LinearLR", start_factor=1e-3, by_epoch=False, begin=0, end=round(max_iters * 500 / 2000)),
    dict(
        type="MultiStepLR",
        by_epoch=False,
        begin=0,
        end=max_iters,
        milestones=[round(max_iters * 1600 / 2000)],
        gamma=0.1,
    ),
]
default_hooks = dict(logger=dict(interval=20), checkpoint=dict(interval=max_iters))
log_processor = dict(window_size=10)
