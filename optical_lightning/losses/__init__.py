"""Distillation heads: the OPTICAL optimal-transport head and the sentence-level MSE baseline."""

from optical_lightning.losses.mse import pooled_mse
from optical_lightning.losses.ot import OTDistillationHead, OTOutput, cosine_cost

__all__ = ["OTDistillationHead", "OTOutput", "cosine_cost", "pooled_mse"]
