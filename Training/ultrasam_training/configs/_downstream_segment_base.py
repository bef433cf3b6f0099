# Mask2Former instance segmentation of BUSI lesions on an encoder's four feature levels (protocol §8.2):
# Hugging Face's Mask2Former (6 deformable pixel-decoder layers, FFN 1024; 9 masked-attention decoder
# layers, FFN 2048; 100 queries; class 2 / mask 5 / dice 5; 12,544 points) on our encoder. Per-class
# (benign, malignant) and class-agnostic COCO mask AP; selection on val (class-agnostic AP).
# Optimiser: AdamW 1e-4, wd 1e-4, clip 0.1, encoder lr x0.1, no decay on queries, level embeddings
# and norms; warm-up 100, x0.1 at 75 % of the iterations (the paper: 6000 of 8000); batch 2.
_base_ = ["./_downstream_classify_base.py"]

custom_imports = dict(
    imports=[
        "ultrasam_training.downstream.segmentation",
        "ultrasam_training.train.sampler",
        "ultrasam_training.train.plain_checkpoint",
    ],
    allow_failed_imports=False,
)
downstream_task = "segment"
run_title = "BUSI lesion instance segmentation, Mask2Former"
encoder = "litemedsam"
family = "litemedsam"
max_iters = 8000
val_interval = 500
batch_size = 2

model = dict(
    _delete_=True,
    type="Mask2FormerSegmenter",
    num_classes=2,
    encoder=encoder,
    family=family,
    variant="frozen",
    mask2former=dict(num_queries=100),
    lora=dict(rank=16, alpha=16, dropout=0.1, targets=("qkv",)),
    medsa=dict(ratio=0.25, scale=0.5, trainable_last_blocks=1),
    seed=0,
)
_lesions = dict(
    type="BusiLesionDataset", data_root="{{$ULTRASAM_SHARED_DIR:../shared}}/data", family=family, input_size=None
)
train_dataloader = dict(
    batch_size=batch_size,
    collate_fn=dict(type="lesion_collate"),
    dataset=dict(_lesions, split="train", flip_prob=0.5, _delete_=True),
)
val_dataloader = dict(
    batch_size=batch_size, collate_fn=dict(type="lesion_collate"), dataset=dict(_lesions, split="val", _delete_=True)
)
val_evaluator = dict(_delete_=True, type="LesionAPMetric")
evaluation = dict(
    sets=dict(_delete_=True, val=dict(_lesions, split="val"), test=dict(_lesions, split="test")),
    batch_size=batch_size,
    bootstrap=200,
)
train_cfg = dict(max_iters=max_iters, val_interval=val_interval)
optim_wrapper = dict(
    paramwise_cfg=dict(
        norm_decay_mult=0.0,
        custom_keys={
            "pixel_level_module.encoder": dict(lr_mult=0.1),
            "queries_embedder": dict(decay_mult=0.0),
            "queries_features": dict(decay_mult=0.0),
            "level_embed": dict(decay_mult=0.0),
        },
    )
)
param_scheduler = [
    dict(type="LinearLR", start_factor=1e-3, by_epoch=False, begin=0, end=100),
    dict(type="MultiStepLR", by_epoch=False, begin=0, end=max_iters, milestones=[round(max_iters * 0.75)], gamma=0.1),
]
default_hooks = dict(checkpoint=dict(interval=max_iters, save_best="busi/agnostic_AP", rule="greater"))
