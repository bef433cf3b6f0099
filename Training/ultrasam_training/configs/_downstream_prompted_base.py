# Prompted classification (protocol §8.3, beyond the paper): a BUSI lesion's class (benign / malignant)
# from one prompt, from the frozen SAM model's decoder output for that prompt (its mask token, the
# prompt-conditioned image embedding averaged inside the predicted mask, the encoder's pooled pre-neck
# image descriptor). Descriptors are made with the deployed classifier's code and cached per image; the head
# (standardise -> MLP 256 -> one sigmoid per class, focal loss) trains on box and click descriptors of
# the training lesions together; selection on val (macro-F1 over both prompts), test once per prompt.
# The selected head is written as <work_dir>/prompt_classifier.safetensors.
# Research benchmark, not a diagnosis.
_base_ = ["./_downstream_classify_base.py"]

custom_imports = dict(
    imports=[
        "ultrasam_training.downstream.classification",
        "ultrasam_training.downstream.prompted",
        "ultrasam_training.train.sampler",
        "ultrasam_training.train.plain_checkpoint",
    ],
    allow_failed_imports=False,
)
downstream_task = "prompted"
run_title = "BUSI lesion benign/malignant from one prompt"
model_source = "litemedsam"  # the SAM model whose decoder output is classified (name or file)
_lesions = dict(
    type="LesionDescriptorDataset",
    data_root="{{$ULTRASAM_SHARED_DIR:../shared}}/data",
    model=model_source,
    family=None,
    cache_dir="work_dirs/cache/prompted",
    kinds=("box", "point"),
)

model = dict(
    encoder=None,
    family=None,
    variant="linear",
    cached=True,
    feature_dim=832,
    num_classes=2,
    head=dict(hidden=(256,), dropout=0.0, standardize=True),
)
train_dataloader = dict(dataset=dict(_lesions, split="train", _delete_=True))
val_dataloader = dict(dataset=dict(_lesions, split="val", _delete_=True))
val_evaluator = dict(num_classes=2)
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
custom_hooks = [dict(type="FitStandardizeHook"), dict(type="CostRecordHook")]
torch_threads = 1
