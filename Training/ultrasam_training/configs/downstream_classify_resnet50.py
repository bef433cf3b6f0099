# Baseline: torchvision ResNet-50 with ImageNet weights (global average pooling of layer4, 2048-d, linear
# head), fine-tuned like the encoders, ImageNet normalisation at 256 px on the CPU (the paper: 1024 px).
# The weights are read from a local file only (torch hub cache, or model.resnet_weights=PATH): they cannot
# be downloaded here, and without them the run is skipped with a message.
_base_ = ["./downstream_classify_finetune_litemedsam.py"]

run_title = "BUSI 3-class, ResNet-50 ImageNet"
_resnet = dict(family="sam_vit_b", input_size=256)  # SAM-style resize + ImageNet mean/std
model = dict(encoder="resnet50", family=None, resnet_weights=None)
train_dataloader = dict(dataset=_resnet)
val_dataloader = dict(dataset=_resnet)
evaluation = dict(sets=dict(val=_resnet, test=_resnet))
