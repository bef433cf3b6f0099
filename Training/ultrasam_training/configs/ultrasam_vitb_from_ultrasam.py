# Continue training from the released UltraSam weights (mmdet layout, mapped by the library,
# including the decoder's double-residual correction) with the paper recipe.
_base_ = ["./ultrasam_vitb_paper.py"]

init_checkpoint = "ultrasam"  # weights name (fetched) or a path to UltraSam.pth

model = dict(init_checkpoint=init_checkpoint, halve_decoder_mlp=False)  # the mapping already halves lin2
