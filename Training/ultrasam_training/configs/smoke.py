# CI smoke run: LiteMedSAM with the UltraSam objective, frozen encoder and cached embeddings, on the
# first 4 real frames of the shared train split, a few iterations. Must finish in < 60 s on 2 cores.
_base_ = ["./ultrasam_lite.py"]

max_iters = 12
batch_size = 2

train_dataloader = dict(
    batch_size=batch_size,
    dataset=dict(max_images=4, progress=False, embedding_cache=dict(directory="work_dirs/cache/embeddings_smoke")),
)

train_cfg = dict(max_iters=max_iters, val_interval=max_iters + 1)
param_scheduler = [
    dict(type="LinearLR", start_factor=0.1, by_epoch=False, begin=0, end=2),
    dict(type="MultiStepLR", by_epoch=False, begin=0, end=max_iters, milestones=[8, 11], gamma=0.1),
]
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval=6, max_keep_ckpts=3))
custom_hooks = [
    dict(type="RngStateHook"),
    dict(type="ExportWeightsHook", interval=6),
    dict(type="CurvePlotHook"),
]
log_processor = dict(window_size=1)
vis_backends = [dict(type="LocalVisBackend")]
visualizer = dict(type="Visualizer", vis_backends=vis_backends)
evaluation = dict(sets=dict(busi_val="shared:val"), prompts=["point", "box"], refine=[True])
