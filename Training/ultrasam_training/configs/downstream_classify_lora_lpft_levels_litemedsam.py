# LoRA after the every-stage linear probe (LP-FT on `pool="levels"`): the recipe of
# downstream_classify_lora_lpft_litemedsam.py (LoRA r16 on every qkv at 5e-4, the warm head at 1e-4, 240
# steps of batch 8) with the head reading the four TinyViT stages' means (672-d), started from the selected
# every-stage probe (`downstream_classify_linear_levels_litemedsam`, run it first). The every-stage probe
# was the best 3-class probe here; LoRA adapts the three attention stages whose means it reads.
# Not tuned: one run fits the 1-hour CPU budget.
_base_ = ["./downstream_classify_lora_lpft_litemedsam.py"]

run_title = "BUSI 3-class, LoRA r16 after the every-stage linear probe, LiteMedSAM"
model = dict(pool="levels", head_init="work_dirs/downstream_classify_linear_levels_litemedsam")
