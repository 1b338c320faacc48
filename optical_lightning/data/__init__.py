"""Bitext reading, cleaning and batching."""

from optical_lightning.data.bitext import BitextPair, BitextStats, clean_pairs, read_bitext, split_pairs
from optical_lightning.data.collate import PairCollator
from optical_lightning.data.datamodule import BitextDataModule

__all__ = ["BitextDataModule", "BitextPair", "BitextStats", "PairCollator", "clean_pairs", "read_bitext", "split_pairs"]
