# LoRA on LiteMedSAM after a linear probe (LP-FT): the head starts from the selected linear probe on
# the same pooled pre-neck features (`downstream_classify_linear_litemedsam`, run it first: seconds once its
# features are cached), then LoRA (rank 16, alpha 16, dropout 0.1 on every qkv) and the head train for
# the CPU schedule of the fine-tune configs (240 steps of batch 8). The paper trains a fresh head for 2000
# steps at 1e-4; in 240 steps such a head barely moves (a linear probe reaches val macro-F1 0.56 at 1e-4
# even in 2000), so the CPU run would measure the head, not the encoder's adaptation.
# Learning rates (not tuned: one run fits the 1-hour CPU budget): LoRA 5e-4, LoRA's usual range for
# short schedules (Hu et al. 2021: 2e-4 to 5e-4); the warm head 1e-4, the paper's.
# UltraSam-Lite shares LiteMedSAM's trunk up to the neck, so on pre-neck features this run is the same
# for both models.
_base_ = ["./downstream_classify_lora_litemedsam.py"]

run_title = "BUSI 3-class, LoRA r16 after a linear probe, LiteMedSAM"
model = dict(head=dict(hidden=(), standardize=True), head_init="work_dirs/downstream_classify_linear_litemedsam")
optim_wrapper = dict(optimizer=dict(lr=5e-4), paramwise_cfg=dict(custom_keys={"head": dict(lr_mult=0.2)}))
