# GPU: the paper's Mask2Former run (protocol §8.2) on a ViT-b encoder at 1024 px, encoder trained at lr x0.1,
# 8000 iterations of batch 2 (x0.1 at 6000), bf16 autocast. Pyramid: global blocks 2 (upsampled x2), 5, 8, 11.
# Default encoder UltraSam; SAM: --cfg-options model.encoder=sam_vit_b model.family=sam_vit_b and the datasets'
# family (train_dataloader.dataset.family, val_dataloader.dataset.family, evaluation.sets.{val,test}.family).
_base_ = ["./_downstream_segment_base.py"]

run_title = "BUSI lesions, Mask2Former on ViT-b"
_vit = dict(family="ultrasam")
model = dict(encoder="ultrasam", family="ultrasam", variant="finetune")
train_dataloader = dict(num_workers=4, dataset=_vit)
val_dataloader = dict(num_workers=2, dataset=_vit)
evaluation = dict(sets=dict(val=_vit, test=_vit))
