"""The OT head against independent oracles: POT's solvers, a hand-solved problem, invariances."""

from __future__ import annotations

import numpy as np
import ot
import pytest
import torch
import torch.nn.functional as F

from optical_lightning.losses.ot import OTDistillationHead, cosine_cost
from optical_lightning.utils.errors import ConfigError


def clouds(b=3, n=7, m=5, d=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = F.normalize(torch.randn(b, n, d, generator=g), dim=-1)
    y = F.normalize(torch.randn(b, m, d, generator=g), dim=-1)
    return x, y


def uniform(b, n):
    return torch.full((b, n), 1.0 / n)


@pytest.mark.parametrize("blur", [0.3, 0.1])
def test_plan_and_transport_cost_match_pot(blur):
    x, y = clouds()
    head = OTDistillationHead(blur=blur, refine_iters=500)
    out = head(x, uniform(3, 7), y, uniform(3, 5))
    for k in range(3):
        C = cosine_cost(x[k : k + 1], y[k : k + 1])[0].double().numpy()
        P_pot = ot.bregman.sinkhorn_log(np.full(7, 1 / 7), np.full(5, 1 / 5), C, reg=blur**2,
                                        numItermax=100_000, stopThr=1e-13)
        np.testing.assert_allclose(out.plan[k].double().numpy(), P_pot, atol=1e-4)
        assert out.per_pair[k].item() == pytest.approx(float((P_pot * C).sum()), abs=1e-4)


def test_transport_cost_approaches_exact_ot_as_blur_shrinks():
    x, y = clouds(b=1, n=6, m=6)
    C = cosine_cost(x, y)[0].double().numpy()
    exact = ot.emd2(np.full(6, 1 / 6), np.full(6, 1 / 6), C)
    gaps = []
    for blur in (0.5, 0.2, 0.05):
        out = OTDistillationHead(blur=blur, refine_iters=3000)(x, uniform(1, 6), y, uniform(1, 6))
        gaps.append(out.transport_cost.item() - exact)
    assert gaps[0] > gaps[1] > gaps[2] >= -1e-4
    assert gaps[2] < 5e-3


def test_hand_solved_two_by_two_problem():
    # x1 = y1 and x2 = y2 (orthogonal): the optimal plan is diagonal, cost 0 on the diagonal, 1 off it.
    # Entropic closed form for uniform 1/2 marginals: P_diag = 1 / (2 (1 + exp(-1/eps))).
    x = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    head = OTDistillationHead(blur=0.5, refine_iters=200)  # eps = 0.25
    out = head(x, uniform(1, 2), x.clone(), uniform(1, 2))
    p_diag = 1 / (2 * (1 + np.exp(-1 / 0.25)))
    expected = torch.tensor([[p_diag, 0.5 - p_diag], [0.5 - p_diag, p_diag]], dtype=torch.float32)
    torch.testing.assert_close(out.plan[0], expected, atol=1e-6, rtol=0)
    assert out.transport_cost.item() == pytest.approx(2 * (0.5 - p_diag), abs=1e-6)


def test_plan_marginals_equal_masked_weights():
    x, y = clouds(b=2, n=6, m=8)
    a = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 2, 1, 1, 1, 1]], dtype=torch.float32)
    b = torch.tensor([[1, 1, 1, 1, 1, 1, 1, 0], [1, 1, 0, 0, 0, 0, 0, 0]], dtype=torch.float32)
    out = OTDistillationHead(blur=0.1, refine_iters=300)(x, a, y, b)
    torch.testing.assert_close(out.plan.sum(-1), a / a.sum(-1, keepdim=True), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.plan.sum(-2), b / b.sum(-1, keepdim=True), atol=1e-4, rtol=0)
    assert out.plan[0, 4:].abs().max() == 0 and out.plan[1, :, 2:].abs().max() == 0


@pytest.mark.parametrize("loss", ["transport", "divergence"])
def test_padding_leaves_loss_unchanged(loss):
    x, y = clouds(b=1, n=5, m=4)
    head = OTDistillationHead(blur=0.1, loss=loss)
    ref = head(x, torch.ones(1, 5), y, torch.ones(1, 4)).per_pair
    x_pad = torch.cat([x, F.normalize(torch.randn(1, 3, 16), dim=-1)], dim=1)
    y_pad = torch.cat([y, torch.zeros(1, 2, 16)], dim=1)  # zero vectors, as padding may be
    padded = head(x_pad, torch.tensor([[1.0] * 5 + [0.0] * 3]), y_pad, torch.tensor([[1.0] * 4 + [0.0] * 2])).per_pair
    torch.testing.assert_close(padded, ref, atol=1e-5, rtol=0)


def test_permuting_tokens_permutes_the_plan():
    x, y = clouds(b=1, n=6, m=5)
    head = OTDistillationHead(blur=0.1, refine_iters=300)
    out = head(x, uniform(1, 6), y, uniform(1, 5))
    px, py = torch.randperm(6), torch.randperm(5)
    permuted = head(x[:, px], uniform(1, 6), y[:, py], uniform(1, 5))
    torch.testing.assert_close(permuted.plan[0], out.plan[0][px][:, py], atol=1e-5, rtol=0)
    torch.testing.assert_close(permuted.per_pair, out.per_pair, atol=1e-5, rtol=0)


def test_divergence_is_zero_for_identical_clouds_and_positive_otherwise():
    x, y = clouds(b=2, n=6, m=6)
    head = OTDistillationHead(blur=0.1, loss="divergence")
    same = head(x, uniform(2, 6), x.clone(), uniform(2, 6)).per_pair
    assert same.abs().max() < 1e-5
    assert (head(x, uniform(2, 6), y, uniform(2, 6)).per_pair > 1e-3).all()


def test_unbalanced_plan_matches_pot():
    x, y = clouds(b=1, n=6, m=4)
    blur, reach = 0.2, 0.5
    out = OTDistillationHead(blur=blur, reach=reach, refine_iters=2000)(x, uniform(1, 6), y, uniform(1, 4))
    C = cosine_cost(x, y)[0].double().numpy()
    # POT: min <P,C> + reg KL(P | a b^T) + reg_m (KL(P1 | a) + KL(P^T1 | b)); GeomLoss's rho = reach^2
    P_pot = ot.unbalanced.sinkhorn_unbalanced(np.full(6, 1 / 6), np.full(4, 1 / 4), C, reg=blur**2, reg_m=reach**2,
                                              reg_type="kl", method="sinkhorn_stabilized", numItermax=100_000,
                                              stopThr=1e-12)
    np.testing.assert_allclose(out.plan[0].double().numpy(), P_pot, atol=1e-4)
    assert out.plan.sum() < 1.0  # unbalanced: some mass stays untransported


def test_gradients_reach_the_student_side_only():
    x, y = clouds(b=2, n=5, m=4)
    x.requires_grad_(False)
    y.requires_grad_(True)
    for loss in ("transport", "divergence"):
        out = OTDistillationHead(blur=0.1, loss=loss)(x, uniform(2, 5), y, uniform(2, 4))
        (grad,) = torch.autograd.grad(out.loss, y)
        assert torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_transport_gradient_is_the_plan_weighted_teacher_direction():
    # Envelope theorem: dL/dy_j = -sum_i P_ij x_i for L = <P, 1 - x y^T> with P held fixed.
    x, y = clouds(b=1, n=5, m=4)
    y.requires_grad_(True)
    out = OTDistillationHead(blur=0.1)(x, uniform(1, 5), y, uniform(1, 4))
    (grad,) = torch.autograd.grad(out.loss, y)
    torch.testing.assert_close(grad[0], -(out.plan[0].T @ x[0]), atol=1e-6, rtol=0)


@pytest.mark.parametrize("blur", [0.05, 0.02, 0.01])
def test_small_blur_on_cosine_costs_stays_finite(blur):
    x, y = clouds(b=4, n=32, m=32, d=64)
    y.requires_grad_(True)
    for loss in ("transport", "divergence"):
        out = OTDistillationHead(blur=blur, loss=loss)(x, uniform(4, 32), y, uniform(4, 32))
        (grad,) = torch.autograd.grad(out.loss, y)
        assert torch.isfinite(out.loss) and torch.isfinite(out.plan).all() and torch.isfinite(grad).all()


def test_float16_inputs_are_solved_in_float32():
    x, y = clouds()
    ref = OTDistillationHead()(x, uniform(3, 7), y, uniform(3, 5))
    half = OTDistillationHead()(x.half(), uniform(3, 7).half(), y.half(), uniform(3, 5).half())
    assert half.plan.dtype == torch.float32
    torch.testing.assert_close(half.per_pair, ref.per_pair, atol=2e-3, rtol=0)


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"blur": 0.0}, "ot.blur=0.0"),
        ({"blur": -1}, "ot.blur=-1"),
        ({"reach": 0}, "ot.reach=0"),
        ({"scaling": 1.0}, "ot.scaling=1.0"),
        ({"scaling": 0}, "ot.scaling=0"),
        ({"loss": "wasserstein"}, "ot.loss=wasserstein"),
        ({"marginals": "tfidf"}, "ot.marginals=tfidf"),
    ],
)
def test_impossible_hyperparameters_are_rejected(kwargs, fragment):
    with pytest.raises(ConfigError, match=fragment.replace(".", r"\.")):
        OTDistillationHead(**kwargs)
