"""The trainable UltraSam model: a ``segment_anything`` Sam whose state dict *is* the plain SAM layout.

``image_encoder``, ``prompt_encoder`` and ``mask_decoder`` are direct children, so mmengine
checkpoints hold ``image_encoder.*`` … keys and the exported ``model_final.safetensors`` is loadable by
``ultrasam.models.load_model`` as it is.

Training step (protocol §1.5): pass 1 single-mask (token 0) with the no-mask dense embedding;
pass 2 multimask (tokens 1–3) with pass 1's logits as the dense mask prompt (not detached, as
the original, unless ``detach_refinement_prompt``), prompts unchanged. Each pass adds its
focal × 20 + dice × 1 + IoU-MSE × 1 (keys ``loss_*`` and ``loss_*.0`` as the original logged them).
"""

from __future__ import annotations

import hashlib
import logging

import numpy as np
import torch
from mmengine.model import BaseModel
from mmengine.registry import MODELS
from torch import Tensor

from ultrasam_training.train.click_rounds import (
    ClickSchedule,
    corrective_clicks,
    instance_generators,
    valid_regions,
)
from ultrasam_training.train.decoding import decode_all_tokens, embed_sparse, mask_dense, no_mask_dense
from ultrasam_training.train.errors import TrainingError
from ultrasam_training.train.losses import LossWeights, pass_losses

log = logging.getLogger(__name__)


def encoder_digest(encoder: torch.nn.Module) -> str:
    """Digest of the image encoder's tensors: ties a cache of embeddings to the weights that made it."""
    digest = hashlib.blake2b(digest_size=12)
    for name, tensor in sorted(encoder.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().float().numpy().tobytes())
    return digest.hexdigest()


@MODELS.register_module()
class UltraSamTrainModel(BaseModel):
    """Sam + the UltraSam two-pass objective.

    Args:
        init_checkpoint: weights to start from (path or registry name), any layout
            ``ultrasam.models.load_model`` reads (SAM, MedSAM, UltraSam mmdet, LiteMedSAM).
        family: model family whose preprocessing the data use (``ultrasam`` for ViT-b,
            ``litemedsam``); ``None`` detects it from the checkpoint.
        freeze_image_encoder: train prompt encoder and decoder only (encoder kept in eval mode);
            required for batches of cached embeddings.
        refine: add the second (refinement) pass; without it a single multimask pass is trained.
        detach_refinement_prompt: detach pass-1 logits before they become pass 2's mask prompt.
        halve_decoder_mlp: multiply the decoder's ``mlp.lin2`` by 0.5 after loading, so a SAM
            initialisation computes what the original's double-residual block computed at step 0.
        fast: the library's SDPA attention in the ViT encoder.
        train_neck: with a frozen encoder, still train its neck (TinyViT): the cheapest encoder
            adaptation, fed by embeddings cached at the neck's input.
        click_rounds: ``dict(max_clicks=K)`` trains interactively (``click_rounds.py``): the initial
            prompt, then 1..K corrective clicks with the previous logits as mask prompt; loss on the
            first and the last round. Replaces the refinement pass (``refine`` is ignored).
    """

    def __init__(
        self,
        init_checkpoint: str,
        family: str | None = None,
        freeze_image_encoder: bool = False,
        refine: bool = True,
        detach_refinement_prompt: bool = False,
        halve_decoder_mlp: bool = False,
        loss_weights: dict | None = None,
        fast: bool = True,
        train_neck: bool = False,
        click_rounds: dict | None = None,
        data_preprocessor: dict | None = None,
    ) -> None:
        super().__init__(data_preprocessor=data_preprocessor or dict(type="BaseDataPreprocessor"))
        from ultrasam.models import open_model

        loaded = open_model(init_checkpoint, family=family, device="cpu", fast=fast)  # the runner places it
        self.spec = loaded.spec
        self.image_encoder = loaded.sam.image_encoder
        self.prompt_encoder = loaded.sam.prompt_encoder
        self.mask_decoder = loaded.sam.mask_decoder
        self.freeze_image_encoder = freeze_image_encoder
        self.refine = refine
        self.detach_refinement_prompt = detach_refinement_prompt
        self.loss_weights = LossWeights(**(loss_weights or {}))
        if halve_decoder_mlp:
            with torch.no_grad():
                for layer in self.mask_decoder.transformer.layers:
                    layer.mlp.lin2.weight.mul_(0.5)
                    layer.mlp.lin2.bias.mul_(0.5)
        if freeze_image_encoder:
            self.image_encoder.requires_grad_(False)
        self.train_neck = train_neck
        if train_neck:
            if not freeze_image_encoder or not hasattr(self.image_encoder, "neck"):
                raise TrainingError("train_neck needs freeze_image_encoder=True and an encoder with a neck (TinyViT)")
            self.image_encoder.neck.requires_grad_(True)
        self.click_schedule = ClickSchedule(**click_rounds) if click_rounds else None
        # Taken now, from the initial weights the embedding cache was made with: a resumed run
        # loads a trained neck afterwards, and a digest taken then would refuse its own cache.
        self._encoder_digest: str | None = encoder_digest(self.image_encoder) if freeze_image_encoder else None

    # ----------------------------------------------------------------- helpers
    def train(self, mode: bool = True) -> "UltraSamTrainModel":
        super().train(mode)
        if self.freeze_image_encoder:
            self.image_encoder.eval()  # frozen BatchNorm / DropPath stay in inference behaviour
        return self

    @property
    def encoder_digest(self) -> str:
        if self._encoder_digest is None:
            self._encoder_digest = encoder_digest(self.image_encoder)
        return self._encoder_digest

    def sam_state_dict(self) -> dict[str, Tensor]:
        """Plain segment_anything-layout tensors on the CPU (what ``model_final.safetensors`` holds)."""
        return {k: v.detach().cpu().clone() for k, v in self.state_dict().items()}

    def _features(
        self, inputs: Tensor, embedded: bool, encoder_digests: list[str] | None, level: str = "output"
    ) -> Tensor:
        if not embedded:
            return self.image_encoder(inputs)
        if not self.freeze_image_encoder:
            raise TrainingError("cached embeddings need freeze_image_encoder=True: the encoder would never be trained")
        for digest in set(encoder_digests or ()):
            if digest != self.encoder_digest:
                raise TrainingError(
                    f"cached embeddings were computed by another image encoder ({digest} vs {self.encoder_digest}); "
                    "give the dataset's embedding cache the same checkpoint as the model"
                )
        if level == "neck_input":
            return self.image_encoder.neck(inputs.float())
        if self.train_neck:
            raise TrainingError("train_neck needs embeddings cached at the neck input (embedding_cache level='neck_input')")
        return inputs.float()

    # ----------------------------------------------------------------- forward
    def forward(
        self,
        inputs: Tensor,
        targets: Tensor | None = None,
        coords: Tensor | None = None,
        labels: Tensor | None = None,
        counts: list[int] | None = None,
        embedded: bool = False,
        encoder_digests: list[str] | None = None,
        mode: str = "loss",
        embedding_level: str = "output",
        seeds: list[int] | None = None,
        draws: list[int] | None = None,
        valid_hw: list[tuple[int, int]] | None = None,
        **_: object,
    ) -> dict[str, Tensor] | tuple[Tensor, Tensor]:
        """``mode='loss'``: the loss dict; ``mode='tensor'``: final logits ``(N, K, 256, 256)`` and IoU ``(N, K)``."""
        if mode not in ("loss", "tensor"):
            raise TrainingError(f"mode {mode!r} is not supported; evaluation runs through ultrasam.predictor")
        features = self._features(inputs, embedded, encoder_digests, embedding_level or "output")
        counts = [int(c) for c in counts]
        sparse = embed_sparse(self.prompt_encoder, coords, labels)
        image_pe = self.prompt_encoder.get_dense_pe()
        count = sum(counts)
        logits, iou = decode_all_tokens(
            self.mask_decoder, image_pe, features, counts, sparse, no_mask_dense(self.prompt_encoder, count)
        )
        if self.click_schedule is not None and mode == "loss":
            return self._interactive_losses(
                features, image_pe, logits, iou, targets, coords, labels, counts, seeds, draws, valid_hw
            )
        if not self.refine:  # the original without refinement: one multimask pass
            if mode == "tensor":
                return logits[:, 1:], iou[:, 1:]
            losses, _ = pass_losses(logits[:, 1:], iou[:, 1:], targets, self.loss_weights)
            return losses
        first_logits, first_iou = logits[:, :1], iou[:, :1]
        losses: dict[str, Tensor] = {}
        if mode == "loss":
            losses, _ = pass_losses(first_logits, first_iou, targets, self.loss_weights)
        prompt = first_logits.detach() if self.detach_refinement_prompt else first_logits
        logits2, iou2 = decode_all_tokens(
            self.mask_decoder, image_pe, features, counts, sparse, mask_dense(self.prompt_encoder, prompt)
        )
        if mode == "tensor":
            return logits2[:, 1:], iou2[:, 1:]
        second, _ = pass_losses(logits2[:, 1:], iou2[:, 1:], targets, self.loss_weights, suffix=".0")
        losses.update(second)
        return losses

    def _interactive_losses(
        self, features, image_pe, logits, iou, targets, coords, labels, counts, seeds, draws, valid_hw
    ) -> dict[str, Tensor]:
        """Round 0 (initial prompt, token 0) + k corrective-click rounds; loss on rounds 0 and k."""
        losses, _ = pass_losses(logits[:, :1], iou[:, :1], targets, self.loss_weights)
        size = targets.shape[-1]
        seeds = list(seeds) if seeds is not None else [0] * len(counts)
        draws = list(draws) if draws is not None else list(range(len(counts)))
        rounds = self.click_schedule.clicks_for_batch(seeds, draws)
        rngs = instance_generators(seeds, draws, counts)
        valid = valid_regions(list(valid_hw) if valid_hw is not None else [(size, size)] * len(counts), counts, size)
        clicked = np.zeros(targets.shape, bool)
        scale = self.prompt_encoder.input_image_size[0] / size
        previous = logits[:, :1].detach()
        for round_index in range(1, rounds + 1):
            new_coords, new_labels = corrective_clicks(previous, targets, valid, clicked, rngs, scale)
            coords = torch.cat([coords, new_coords], dim=1)
            labels = torch.cat([labels, new_labels], dim=1)
            last = round_index == rounds
            with torch.set_grad_enabled(last and torch.is_grad_enabled()):
                sparse = embed_sparse(self.prompt_encoder, coords, labels)
                dense = mask_dense(self.prompt_encoder, previous)
                round_logits, round_iou = decode_all_tokens(
                    self.mask_decoder, image_pe, features if last else features.detach(), counts, sparse, dense
                )
            previous = round_logits[:, :1].detach()
        final, _ = pass_losses(round_logits[:, :1], round_iou[:, :1], targets, self.loss_weights, suffix=".clicks")
        losses.update(final)
        losses["clicks"] = torch.tensor(float(rounds))
        return losses
