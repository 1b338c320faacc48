"""The collapse monitor logged beside the OT term: mean cosine between two tokens of one sentence."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from optical_lightning.losses.terms import token_spread


def test_hand_solved_sentences():
    e = torch.eye(4)
    tokens = torch.zeros(3, 4, 4)
    tokens[0, :3] = e[0]  # three copies of one vector: every pair has cosine 1
    tokens[1, :4] = e  # four orthonormal tokens: every pair 0
    tokens[2, :1] = e[1]  # one token: no pair, left out of the mean
    tokens[0, 3] = e[3]  # padding, masked: must not count
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1], [1, 0, 0, 0]])
    assert token_spread(tokens, mask).item() == pytest.approx(0.5)  # (1 + 0) / 2


def test_it_equals_the_explicit_pairwise_mean():
    g = torch.Generator().manual_seed(0)
    tokens = F.normalize(torch.randn(2, 7, 16, generator=g), dim=-1)
    mask = torch.tensor([[1] * 7, [1] * 5 + [0] * 2])
    explicit = []
    for b in range(2):
        x = tokens[b][mask[b].bool()]
        c = x @ x.T
        n = len(x)
        explicit.append((c.sum() - c.diagonal().sum()) / (n * (n - 1)))
    assert token_spread(tokens, mask).item() == pytest.approx(torch.stack(explicit).mean().item(), abs=1e-6)
