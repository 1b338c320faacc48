"""``ot.center``: the OT head's cost with each cloud's mean removed (a shift shared by every token is free)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from optical_lightning.losses.ot import OTDistillationHead
from optical_lightning.utils.errors import ConfigError


def _cloud(n: int, seed: int) -> torch.Tensor:
    return torch.randn(1, n, 8, generator=torch.Generator().manual_seed(seed))


def test_a_shared_shift_costs_nothing_once_centred():
    """Student tokens that are the teacher's plus one vector: the plain cosine cost sees the shift, the centred
    cost is the floor of two identical clouds (hand-solved: centring both sides gives the same unit vectors)."""
    x = _cloud(6, 0)
    shifted = x + 3.0 * torch.randn(1, 1, 8, generator=torch.Generator().manual_seed(1))
    w = torch.ones(1, 6)
    plain, centred = OTDistillationHead(blur=0.05), OTDistillationHead(blur=0.05, center=True)
    floor = centred(x, w, x, w).transport_cost
    assert plain(F.normalize(x, dim=-1), w, F.normalize(shifted, dim=-1), w).transport_cost > floor + 0.1
    assert torch.allclose(centred(x, w, shifted, w).transport_cost, floor, atol=1e-5)
    assert torch.allclose(floor, plain(*(F.normalize(x - x.mean(1, keepdim=True), dim=-1), w) * 2).transport_cost, atol=1e-6)


def test_centring_follows_the_token_weights_and_ignores_padding():
    """The mean is the weighted one: a padded copy of a cloud (weight 0 on the pad) costs what the cloud does."""
    x, y = _cloud(5, 2), _cloud(4, 3)
    padded = torch.cat([y, 50 * torch.ones(1, 2, 8)], dim=1)
    head = OTDistillationHead(blur=0.1, center=True)
    alone = head(x, torch.ones(1, 5), y, torch.ones(1, 4)).transport_cost
    with_pad = head(x, torch.ones(1, 5), padded, torch.tensor([[1.0, 1, 1, 1, 0, 0]])).transport_cost
    assert torch.allclose(alone, with_pad, atol=1e-5)


def test_center_must_be_a_boolean():
    with pytest.raises(ConfigError, match="ot.center"):
        OTDistillationHead(center="yes")
