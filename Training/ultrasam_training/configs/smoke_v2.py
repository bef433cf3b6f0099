# CI smoke run of the UltraSam-Lite v2 recipe: click simulation and the trained neck on cached
# neck-input features, 4 real frames, a few iterations (< 60 s on 2 cores).
_base_ = ["./smoke.py"]

model = dict(train_neck=True, click_rounds=dict(max_clicks=3), refine=False)
train_dataloader = dict(
    dataset=dict(embedding_cache=dict(directory="work_dirs/cache/embeddings_smoke", dtype="float16", level="neck_input")),
)
evaluation = dict(sets=dict(busi_val="shared:val"), prompts=["point", "box"], refine=[False])
custom_hooks = [
    dict(type="RngStateHook"),
    dict(type="ExportWeightsHook", interval=6, family="ultrasam_lite"),
    dict(type="CurvePlotHook"),
]
