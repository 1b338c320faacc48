"""The in-batch contrastive term against hand-solved values, and as a training signal on tiny models."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import ROOT
from test_module import make, mean_val_loss, trainer

from optical_lightning.losses.contrastive import in_batch_infonce
from optical_lightning.training.module import check_loss_weights
from optical_lightning.utils.errors import ConfigError


def test_orthogonal_pairs_match_the_closed_form():
    # s_i = t_i = e_i: logits are 1/tau on the diagonal and 0 elsewhere
    eye = torch.eye(3)
    tau = 0.5
    expected = -math.log(math.exp(1 / tau) / (math.exp(1 / tau) + 2))
    assert in_batch_infonce(eye, eye, tau).item() == pytest.approx(expected, rel=1e-6)


def test_matches_a_numpy_log_softmax_and_ignores_vector_length():
    rng = np.random.default_rng(0)
    s, t = rng.normal(size=(5, 8)), rng.normal(size=(5, 8))
    sn = s / np.linalg.norm(s, axis=1, keepdims=True)
    tn = t / np.linalg.norm(t, axis=1, keepdims=True)
    logits = sn @ tn.T / 0.05
    log_softmax = logits - np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1, keepdims=True)) - logits.max(1, keepdims=True)
    expected = -np.mean(np.diag(log_softmax))
    got = in_batch_infonce(torch.tensor(3 * s), torch.tensor(t), 0.05).item()
    assert got == pytest.approx(expected, rel=1e-6)


def test_swapped_targets_cost_more_than_matched_ones():
    eye = torch.eye(4)
    assert in_batch_infonce(eye, eye.flip(0)).item() > in_batch_infonce(eye, eye).item()


def test_a_batch_of_one_has_no_negatives():
    assert in_batch_infonce(torch.ones(1, 4), torch.ones(1, 4)).item() == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("args, message", [
    ((0.0, 0.0, 0.0), "are all 0"),
    ((1.0, 0.0, -1.0), r"distill\.nce_weight=-1.0: a loss weight must be >= 0"),
    ((1.0, 0.0, 1.0, 0.0), r"distill\.nce_temperature=0.0: must be a number > 0"),
    ((1.0, 0.0, 1.0, 0.05, float("nan")), r"distill\.anchor_weight=nan: a loss weight must be >= 0"),
    ((0.0, 0.0, 0.0, 0.05, 1.0), "are all 0"),  # the anchor alone teaches nothing cross-lingual
    ((1.0, 0.0, 1.0, 0.05, 0.0, -2.0), r"distill\.spread_weight=-2.0: a loss weight must be >= 0"),
    ((0.0, 0.0, 0.0, 0.05, 0.0, 1.0), "are all 0"),  # so does the spread term
])
def test_impossible_settings_are_one_line_errors(args, message):
    with pytest.raises(ConfigError, match=message):
        check_loss_weights(*args)


def test_contrastive_training_lowers_the_held_out_term(tiny_pair, tmp_path):
    module, dm = make(tiny_pair, ot_weight=0.0, nce_weight=1.0, nce_temperature=0.1)
    before = mean_val_loss(module, dm)
    trainer(tmp_path, 30).fit(module, datamodule=dm)
    assert mean_val_loss(module.eval(), dm) < before - 0.05


def test_two_ranks_with_gathered_targets_average_to_the_global_batch_loss():
    torch.manual_seed(0)
    s, t = torch.randn(8, 6), torch.randn(8, 6)
    whole = in_batch_infonce(s, t, 0.1)
    halves = [in_batch_infonce(s[r * 4:(r + 1) * 4], t, 0.1, offset=r * 4) for r in (0, 1)]
    assert (halves[0] + halves[1]).item() / 2 == pytest.approx(whole.item(), rel=1e-6)


def test_mse_baselines_weight_makes_it_the_squared_distance_on_the_contrastive_terms_scale():
    """distill=mse's weight is the embedding dimension: the per-dimension mean times D is the squared distance."""
    from omegaconf import OmegaConf

    from optical_lightning.losses.mse import pooled_mse

    rng = np.random.default_rng(1)
    s, t = rng.normal(size=(4, 384)), rng.normal(size=(4, 384))
    squared = float(np.mean(np.sum((s - t) ** 2, axis=1)))
    weight = OmegaConf.load(ROOT / "conf" / "distill" / "mse.yaml").mse_weight
    assert weight == 384
    assert weight * pooled_mse(torch.tensor(s), torch.tensor(t)).item() == pytest.approx(squared, rel=1e-9)
