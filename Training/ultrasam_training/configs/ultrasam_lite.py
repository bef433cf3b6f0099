# UltraSam-Lite: LiteMedSAM (TinyViT-5M encoder, 256 px) fine-tuned with the UltraSam recipe on the
# shared BUSI + HC18 train split (653 images), sized for a CPU: the image encoder is frozen and its
# embeddings (each training image and its horizontal flip) are computed once and memory-mapped, so
# a step trains the prompt encoder and mask decoder only.
#
# Schedule: the paper's, compressed to `max_iters` (warm-up and milestones at the same fractions:
# 500/30000, 20000/30000, 28888/30000). `max_iters` = 800 was sized from a measurement on the
# project's 2 shared CPU cores: 2.8-3.3 s per batch of 8 with one thread at load ~3.5, i.e.
# about 45 minutes (plus ~55 minutes once, under load ~8, to cache the 1306 embeddings).
# For the full recipe on a GPU (encoder trained too):
#   --cfg-options model.freeze_image_encoder=False train_dataloader.dataset.embedding_cache=None
_base_ = ["./_ultrasam_base.py"]

family = "litemedsam"  # cv2 area resize to 256, per-image min-max normalisation
init_checkpoint = "litemedsam"
max_iters = 800
batch_size = 8
# One thread: on a CPU shared with other jobs, two spinning OpenMP threads ran the small decoder
# matrices up to 15x slower than one (measured: 115 s vs 7 s per batch of 8).
torch_threads = 1

model = dict(init_checkpoint=init_checkpoint, family=family, freeze_image_encoder=True)

train_dataloader = dict(
    batch_size=batch_size,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(
        family=family,
        embedding_cache=dict(
            checkpoint=init_checkpoint, family=family, directory="work_dirs/cache/embeddings", dtype="float32"
        ),
    ),
)

train_cfg = dict(max_iters=max_iters, val_interval=max_iters + 1)
param_scheduler = [
    dict(type="LinearLR", start_factor=1e-3, by_epoch=False, begin=0, end=max(1, round(max_iters * 500 / 30000))),
    dict(
        type="MultiStepLR",
        by_epoch=False,
        begin=0,
        end=max_iters,
        milestones=[round(max_iters * 20000 / 30000), round(max_iters * 28888 / 30000)],
        gamma=0.1,
    ),
]

default_hooks = dict(logger=dict(interval=10), checkpoint=dict(interval=100, max_keep_ckpts=2))
custom_hooks = [
    dict(type="RngStateHook"),
    dict(type="ExportWeightsHook", interval=100),
    dict(type="CurvePlotHook"),
]
log_processor = dict(window_size=10)

evaluation = dict(
    sets=dict(busi_val="shared:val", busi="shared:test_busi", hc18="shared:test_hc18", mmotu="shared:test_mmotu"),
    prompts=["point", "box"],
    refine=[True, False],
)
