# Leave-organ-out UltraSam*: the paper recipe trained without any dataset of breast (9 datasets, e.g. BUSI, BUS-BRA),
# to measure transfer to an organ never seen in training. Organs come from the data registry
# (ultrasam_training.data.registry, the image's 'dataset' field); matching is a case-insensitive
# substring of the organ name.
_base_ = ["./ultrasam_vitb_paper.py"]

train_dataloader = dict(dataset=dict(exclude_organs=["breast"]))
custom_hooks = [
    dict(type="RngStateHook"),
    dict(type="ExportWeightsHook", interval=2000),
    dict(type="CurvePlotHook"),
]
