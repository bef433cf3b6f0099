# LoRA (rank 16, alpha 16, dropout 0.1 on every attention block's qkv projection, via peft) on
# LiteMedSAM's frozen encoder: only the LoRA matrices and the linear head train (protocol §8.4).
# Same CPU schedule as the full fine-tune, so trainable parameters and time per epoch compare directly.
_base_ = ["./downstream_classify_finetune_litemedsam.py"]

run_title = "BUSI 3-class, LoRA r16, LiteMedSAM"
model = dict(variant="lora")
