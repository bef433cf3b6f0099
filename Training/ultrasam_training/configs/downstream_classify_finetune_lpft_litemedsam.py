# Full fine-tune of LiteMedSAM's encoder after a linear probe (LP-FT), the recipe of the LoRA and Med-SA
# LP-FT configs so the three compare directly: the head starts from the selected linear probe
# (`downstream_classify_linear_litemedsam`, run it first), then every encoder weight and the head train.
# The 1-hour CPU budget holds one epoch at the full fine-tune's cost (a batch of 2 costs ~2.5x LoRA's),
# so the schedule is the fine-tune configs' fractions over 68 optimiser steps of batch 8 (546 images):
# warm-up to step 17, x0.1 at step 54, val every 17 steps.
# Learning rates: the warm head at 1e-4 as in the other LP-FT runs; the encoder's rate chosen on val
# (best val macro-F1 over the 4 evaluations, test off) from 2e-5 (0.2x the paper's 1e-4): 0.684, and
# 5e-6 (0.05x): 0.699 -> 5e-6. Both stay under the probe they start from (val 0.797): the training loss,
# 0.004 on the probe's own training images at the start, rose to 1-2 at 2e-5 (0.1-0.4 at 5e-6) as all
# 5.7 M weights moved at once, and one epoch of 546 images did not bring it back.
_base_ = ["./downstream_classify_finetune_litemedsam.py"]

run_title = "BUSI 3-class, full fine-tune after a linear probe, LiteMedSAM"
accumulate = 4
steps = 68
max_iters = steps * accumulate
val_interval = 17 * accumulate
model = dict(head=dict(hidden=(), standardize=True), head_init="work_dirs/downstream_classify_linear_litemedsam")
train_cfg = dict(max_iters=max_iters, val_interval=val_interval)
optim_wrapper = dict(optimizer=dict(lr=1e-4), paramwise_cfg=dict(custom_keys={"features.": dict(lr_mult=0.05)}))
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
default_hooks = dict(checkpoint=dict(interval=max_iters))
