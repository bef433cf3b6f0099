# Leave-organ-out UltraSam*: the paper recipe trained without any dataset of the GI tract (GIST514-DB, endoscopic ultrasound of the stomach),
# to measure transfer to an organ never seen in training. Organs come from the data registry
# (ultrasam_training.data.registry, the image's 'dataset' field); matching is a case-insensitive
# substring of the organ name.
_base_ = ["./ultrasam_vitb_paper.py"]

train_dataloader = dict(dataset=dict(exclude_organs=["stomach"]))
custom_hooks = [
    dict(type="RngStateHook"),
    dict(type="ExportWeightsHook", interval=2000),
    dict(type="CurvePlotHook"),
]
