# Baseline: LiteMedSAM's architecture from random initialisation (seeded), trained like the full fine-tune.
_base_ = ["./downstream_classify_finetune_litemedsam.py"]

run_title = "BUSI 3-class, TinyViT from scratch"
model = dict(variant="scratch")
