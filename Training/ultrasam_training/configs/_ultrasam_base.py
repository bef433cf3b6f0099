# Shared base of the UltraSam training configs (mmengine Python config).
#
# The recipe of the released UltraSam code (protocol §5): AdamW lr 1e-4, wd 1e-4, L2 grad clip 0.1,
# LinearLR warm-up (factor 1e-3, 500 iterations), ×0.1 at 20000 and 28888, 30000 iterations,
# batch 8 per GPU, focal 20 + dice 1 + IoU-MSE 1 per pass, one refinement pass.
# Relative paths are relative to the working directory (the repository root); the shared
# real data default to ../shared (override with ULTRASAM_SHARED_DIR or --cfg-options).
custom_imports = dict(
    imports=[
        "ultrasam_training.train.dataset",
        "ultrasam_training.train.sampler",
        "ultrasam_training.train.model",
        "ultrasam_training.train.hooks",
    ],
    allow_failed_imports=False,
)

shared_dir = "{{$ULTRASAM_SHARED_DIR:../shared}}"
shared_data_root = shared_dir + "/data"
splits_root = "work_dirs/data"  # where the shared splits are built (git-ignored)

family = "ultrasam"  # preprocessing: truncating cv2 resize to 1024, ImageNet normalisation
init_checkpoint = "sam_vit_b"  # weights name (fetched) or a path
seed = 0
max_iters = 30000
batch_size = 8

model = dict(
    type="UltraSamTrainModel",
    init_checkpoint=init_checkpoint,
    family=family,
    freeze_image_encoder=False,
    refine=True,
    detach_refinement_prompt=False,  # the original did not detach pass-1 logits
    halve_decoder_mlp=False,
    loss_weights=dict(focal=20.0, dice=1.0, iou=1.0),
    fast=True,
)

train_dataloader = dict(
    batch_size=batch_size,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type="SeededStreamSampler", shuffle=True),
    collate_fn=dict(type="ultrasam_collate"),
    dataset=dict(
        type="UltraSamCocoDataset",
        ann_file="shared:train",
        family=family,
        prompt_mode="train",
        flip_prob=0.5,
        max_instances=None,  # the original capped at 20; set an int to bound memory
        point_probability=0.5,
        box_jitter=0.05,
        shared_data_root=shared_data_root,
        splits_root=splits_root,
    ),
)

train_cfg = dict(type="SeekingIterBasedTrainLoop", max_iters=max_iters, val_interval=max_iters + 1)
val_cfg = None
val_dataloader = None
val_evaluator = None
test_cfg = None
test_dataloader = None
test_evaluator = None

amp = "auto"  # bf16 autocast (AmpOptimWrapper) on CUDA, fp32 on the CPU
compile = False  # torch.compile of the train step (CUDA only)
torch_threads = None  # CPU threads for torch (None: torch's default)
optim_wrapper = dict(
    type="OptimWrapper",
    optimizer=dict(type="AdamW", lr=1e-4, weight_decay=1e-4),
    clip_grad=dict(max_norm=0.1, norm_type=2),
)
param_scheduler = [
    dict(type="LinearLR", start_factor=1e-3, by_epoch=False, begin=0, end=500),
    dict(type="MultiStepLR", by_epoch=False, begin=0, end=max_iters, milestones=[20000, 28888], gamma=0.1),
]

default_hooks = dict(
    timer=dict(type="IterTimerHook"),
    logger=dict(type="LoggerHook", interval=50, log_metric_by_epoch=False),
    param_scheduler=dict(type="ParamSchedulerHook"),
    checkpoint=dict(
        type="CheckpointHook",
        by_epoch=False,
        interval=2000,
        max_keep_ckpts=2,
        save_optimizer=True,
        save_param_scheduler=True,
        save_last=True,
    ),
    sampler_seed=dict(type="DistSamplerSeedHook"),
)
custom_hooks = [
    dict(type="RngStateHook"),
    dict(type="ExportWeightsHook", interval=2000),
    dict(type="CurvePlotHook"),
]

evaluation = dict(
    sets=dict(busi="shared:test_busi", hc18="shared:test_hc18", mmotu="shared:test_mmotu"),
    prompts=["point", "box"],
    refine=[True],
    shared_data_root=shared_data_root,
    splits_root=splits_root,
)

randomness = dict(seed=seed, deterministic=False)
env_cfg = dict(
    cudnn_benchmark=False, mp_cfg=dict(mp_start_method="fork", opencv_num_threads=0), dist_cfg=dict(backend="nccl")
)
# DDP: the refinement-free variant leaves the mask-prompt encoder unused, so let DDP look for it.
model_wrapper_cfg = dict(type="MMDistributedDataParallel", find_unused_parameters=True)
vis_backends = [dict(type="LocalVisBackend"), dict(type="TensorboardVisBackend")]
visualizer = dict(type="Visualizer", vis_backends=vis_backends)
log_processor = dict(by_epoch=False, window_size=50)
log_level = "INFO"
load_from = None
resume = False
