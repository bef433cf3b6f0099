"""Downstream benchmarks: is a SAM-family encoder a good starting point for other ultrasound tasks?

UltraSam's second claim (protocol §8) is that its encoder transfers better than SAM's, MedSAM's
or ImageNet's. This package measures that on BUSI with the same commands on a 2-core CPU
(256-px LiteMedSAM / UltraSam-Lite encoders) and on a GPU (ViT-b):

* ``ultrasam downstream classify``: image classification (benign / malignant / normal) from the
  encoder's globally pooled last feature map, as the paper (§8.1): linear probe on cached
  features, full fine-tune, LoRA, Med-SA adapters, random-init and ImageNet ResNet-50 baselines;
* ``ultrasam downstream segment``: Mask2Former instance segmentation on four encoder feature
  levels (§8.2), COCO mask AP class-agnostic and per class;
* ``ultrasam downstream prompted``: a lesion's class from one prompt (GT box or centroid click),
  from the decoder's output for that prompt (§8.3; beyond the paper);
* ``ultrasam downstream compare``: paired comparison of two runs on the same test items.

Everything here is a **research benchmark**. A number it prints is a property of a model on a
public dataset split, never a diagnosis of a patient.
"""
