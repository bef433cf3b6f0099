# Med-SA adapters on LiteMedSAM after a linear probe (LP-FT), the same recipe as
# downstream_classify_lora_lpft_litemedsam.py so the two adapters compare directly: the head starts from
# the selected linear probe (`downstream_classify_linear_litemedsam`, run it first), then the adapters
# and the last attention block train at 5e-4 and the warm head at 1e-4 for the CPU schedule (240 steps
# of batch 8). Not tuned: one run fits the 1-hour CPU budget. The adapters start as the identity
# (`identity_init`: output layers zeroed, as LoRA's B = 0) so the probe's head meets the features it was
# trained on; with Med-SA's default init the first steps' loss read 1.9-3.3 against the probe's 0.08.
_base_ = ["./downstream_classify_medsa_litemedsam.py"]

run_title = "BUSI 3-class, Med-SA adapters after a linear probe, LiteMedSAM"
model = dict(
    head=dict(hidden=(), standardize=True),
    head_init="work_dirs/downstream_classify_linear_litemedsam",
    medsa=dict(identity_init=True),
)
# The last block's pretrained weights train at 0.1x (5e-5): at the adapters' 5e-4 the first 40 iterations'
# loss rose from 0.14 to 1.5 (the probe's standardised head is sensitive to a moving last stage). mmengine
# matches the longest key first, so the adapters inside that block keep the full rate.
_last_block = "features.encoder.layers.3.blocks.1"
optim_wrapper = dict(
    optimizer=dict(lr=5e-4),
    paramwise_cfg=dict(
        custom_keys={
            "head": dict(lr_mult=0.2),
            _last_block + ".": dict(lr_mult=0.1),
            _last_block + ".attn.space_adapter": dict(lr_mult=1.0),
            _last_block + ".mlp.mlp_adapter": dict(lr_mult=1.0),
        }
    ),
)
