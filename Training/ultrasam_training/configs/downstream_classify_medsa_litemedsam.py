# Med-SA adapters (space adapter after attention, scaled MLP adapter; bottleneck dim/4) in every attention
# block of LiteMedSAM's encoder; the adapters, the last block and the linear head train (protocol §8.4).
_base_ = ["./downstream_classify_finetune_litemedsam.py"]

run_title = "BUSI 3-class, Med-SA adapters, LiteMedSAM"
model = dict(variant="medsa")
