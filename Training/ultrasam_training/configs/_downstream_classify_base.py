# Downstream image classification on BUSI (benign / malignant / normal), the paper's recipe (protocol §8.1):
# encoder -> global average pooling of the pre-neck feature map -> linear multi-label head, focal loss
# (gamma 2, alpha 0.25); AdamW lr 1e-4, wd 1e-4, L2 grad clip 0.1; warm-up 500 (x1e-3), x0.1 at 1600 of
# 2000 iterations, batch 8, horizontal flip 0.5. Selection on the val split (macro-F1, every
# `val_interval` iterations); the selected checkpoint is tested once (`evaluation.sets`).
# Research benchmark, not a diagnosis.
custom_imports = dict(
    imports=[
        "ultrasam_training.downstream.classification",
        "ultrasam_training.train.sampler",
        "ultrasam_training.train.plain_checkpoint",
    ],
    allow_failed_imports=False,
)

downstream_task = "classify"
run_title = "BUSI 3-class classification"
shared_dir = "{{$ULTRASAM_SHARED_DIR:../shared}}"
data_root = shared_dir + "/data"
encoder = "litemedsam"  # registry name or checkpoint file (open_model); e.g. an UltraSam-Lite model_final.safetensors
family = "litemedsam"  # preprocessing of that encoder
variant = "finetune"  # linear | finetune | lora | medsa | scratch (see ultrasam_training.downstream.backbones)
seed = 0
max_iters = 2000
val_interval = 100
batch_size = 8

model = dict(
    type="DownstreamClassifier",
    num_classes=3,
    encoder=encoder,
    family=family,
    variant=variant,
    pool="pre_neck",
    head=dict(hidden=(), dropout=0.0, standardize=False),
    focal=dict(alpha=0.25, gamma=2.0),
    lora=dict(rank=16, alpha=16, dropout=0.1, targets=("qkv",)),
    medsa=dict(ratio=0.25, scale=0.5, trainable_last_blocks=1),
    seed=seed,
)

_data = dict(type="BusiImageDataset", data_root=data_root, mode="pixels", family=family, input_size=None)
train_dataloader = dict(
    batch_size=batch_size,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type="SeededStreamSampler", shuffle=True),
    collate_fn=dict(type="default_collate"),
    dataset=dict(_data, split="train", flip_prob=0.5),
)
val_dataloader = dict(
    batch_size=batch_size,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type="DefaultSampler", shuffle=False),
    collate_fn=dict(type="default_collate"),
    dataset=dict(_data, split="val"),
)
val_evaluator = dict(type="DownstreamClassificationMetric", num_classes=3)
val_cfg = dict(type="ValLoop")
train_cfg = dict(type="SeekingIterBasedTrainLoop", max_iters=max_iters, val_interval=val_interval)
test_cfg = None
test_dataloader = None
test_evaluator = None

# after training: the selected checkpoint on val (for reference) and test (the reported figure)
evaluation = dict(
    sets=dict(val=dict(_data, split="val"), test=dict(_data, split="test")),
    batch_size=batch_size,
    bootstrap=2000,
    seed=0,
)

amp = "auto"
compile = False
torch_threads = None
optim_wrapper = dict(
    type="OptimWrapper",
    optimizer=dict(type="AdamW", lr=1e-4, weight_decay=1e-4),
    clip_grad=dict(max_norm=0.1, norm_type=2),
)
param_scheduler = [
    dict(type="LinearLR", start_factor=1e-3, by_epoch=False, begin=0, end=500),
    dict(type="MultiStepLR", by_epoch=False, begin=0, end=max_iters, milestones=[1600], gamma=0.1),
]
default_hooks = dict(
    timer=dict(type="IterTimerHook"),
    logger=dict(type="LoggerHook", interval=20, log_metric_by_epoch=False),
    param_scheduler=dict(type="ParamSchedulerHook"),
    checkpoint=dict(
        type="CheckpointHook",
        by_epoch=False,
        interval=max_iters,
        max_keep_ckpts=1,
        save_last=True,
        save_best="busi/macro_f1",
        rule="greater",
    ),
    sampler_seed=dict(type="DistSamplerSeedHook"),
)
custom_hooks = [dict(type="CostRecordHook")]

randomness = dict(seed=seed, deterministic=False)
env_cfg = dict(
    cudnn_benchmark=False, mp_cfg=dict(mp_start_method="fork", opencv_num_threads=0), dist_cfg=dict(backend="nccl")
)
vis_backends = [dict(type="LocalVisBackend")]
visualizer = dict(type="Visualizer", vis_backends=vis_backends)
log_processor = dict(by_epoch=False, window_size=20)
log_level = "INFO"
load_from = None
resume = False
