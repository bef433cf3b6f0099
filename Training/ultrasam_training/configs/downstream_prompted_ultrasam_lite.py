# Prompted benign/malignant classification from UltraSam-Lite's decoder output (the default model: a
# classifier is only used with the model it was trained on, so the default needs its own). Same
# 832-d descriptor as downstream_prompted_litemedsam.py (mask token 256 + conditioned embedding 256 +
# pre-neck image descriptor 320); UltraSam-Lite segments from a click, so click descriptors pool inside a
# real mask. Learning rate as chosen for LiteMedSAM on val; descriptors are cached per model.
_base_ = ["./_downstream_prompted_base.py"]

run_title = "BUSI lesion benign/malignant from one prompt, UltraSam-Lite"
model_source = "ultrasam_lite"
_lesions = dict(
    type="LesionDescriptorDataset",
    data_root="{{$ULTRASAM_SHARED_DIR:../shared}}/data",
    model=model_source,
    family=None,
    cache_dir="work_dirs/cache/prompted",
    kinds=("box", "point"),
)
train_dataloader = dict(dataset=dict(_lesions, split="train", _delete_=True))
val_dataloader = dict(dataset=dict(_lesions, split="val", _delete_=True))
evaluation = dict(
    sets=dict(
        _delete_=True,
        val=dict(_lesions, split="val"),
        val_box=dict(_lesions, split="val", kinds=("box",)),
        val_point=dict(_lesions, split="val", kinds=("point",)),
        test_box=dict(_lesions, split="test", kinds=("box",)),
        test_point=dict(_lesions, split="test", kinds=("point",)),
    )
)
optim_wrapper = dict(optimizer=dict(lr=1e-3))
