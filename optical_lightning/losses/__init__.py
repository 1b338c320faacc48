"""Distillation losses: the OPTICAL optimal-transport head, the sentence-level MSE baseline and an
in-batch contrastive term."""

from optical_lightning.losses.contrastive import in_batch_infonce
from optical_lightning.losses.mse import pooled_mse
from optical_lightning.losses.ot import OTDistillationHead, OTOutput, cosine_cost

__all__ = ["OTDistillationHead", "OTOutput", "cosine_cost", "in_batch_infonce", "pooled_mse"]
