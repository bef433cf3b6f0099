# GPU: the paper's classification run on a ViT-b encoder at 1024 px (protocol §8.1): full fine-tune,
# 2000 iterations of batch 8, bf16 autocast (the runner's CUDA policy). The encoder defaults to UltraSam;
# compare with encoder=sam_vit_b family=sam_vit_b, or encoder=medsam family=medsam, e.g.
#   ultrasam downstream classify downstream_classify_vitb --cfg-options model.encoder=sam_vit_b \
#       model.family=sam_vit_b train_dataloader.dataset.family=sam_vit_b val_dataloader.dataset.family=sam_vit_b \
#       evaluation.sets.val.family=sam_vit_b evaluation.sets.test.family=sam_vit_b
# LoRA / Med-SA: model.variant=lora | medsa. Linear probe: copy downstream_classify_linear_litemedsam.py
# with encoder/family set to the ViT's (feature_dim 768).
_base_ = ["./_downstream_classify_base.py"]

run_title = "BUSI 3-class, ViT-b encoder"
_vit = dict(family="ultrasam")
model = dict(encoder="ultrasam", family="ultrasam", variant="finetune")
train_dataloader = dict(num_workers=4, dataset=_vit)
val_dataloader = dict(num_workers=2, dataset=_vit)
evaluation = dict(sets=dict(val=_vit, test=_vit))
