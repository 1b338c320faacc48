"""Weight drift per block, checked by hand on a tiny encoder."""

from __future__ import annotations

import copy

import pytest
import torch

from optical_lightning_study.drift import group_of, weight_drift


def test_block_names_follow_the_bert_layout():
    assert group_of("backbone.encoder.layer.3.attention.self.query.weight") == "layer03.attention"
    assert group_of("backbone.encoder.layer.11.intermediate.dense.weight") == "layer11.ffn"
    assert group_of("backbone.encoder.layer.11.output.LayerNorm.bias") == "layer11.layernorm"
    assert group_of("backbone.embeddings.word_embeddings.weight") == "embeddings.tokens"
    assert group_of("projection.weight") == "projection"


def test_only_the_changed_block_drifts_by_its_relative_norm(tiny_pair):
    _, start = tiny_pair
    trained = copy.deepcopy(start)
    name, w = next((n, p) for n, p in trained.named_parameters() if group_of(n) == "layer01.ffn")
    with torch.no_grad():
        w.mul_(1.1)  # a 10% change of one tensor of the block
    drift = weight_drift(start, trained)
    block = [p for n, p in start.named_parameters() if group_of(n) == "layer01.ffn"]
    expected = 0.1 * dict(start.named_parameters())[name].norm().item() / torch.sqrt(sum(p.pow(2).sum() for p in block)).item()
    assert drift["layer01.ffn"]["drift"] == pytest.approx(expected, rel=1e-4)
    assert all(row["drift"] == 0 for g, row in drift.items() if g != "layer01.ffn" and row["start_norm"] > 0)
    assert sum(row["params"] for row in drift.values()) == sum(p.numel() for p in start.parameters())
