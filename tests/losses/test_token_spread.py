"""The collapse monitor logged beside the OT term (mean cosine between two tokens of one sentence), and the spread
term that charges a student for more of it than its teacher has."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from optical_lightning.losses.ot import OTDistillationHead
from optical_lightning.losses.spread import TokenSpreadTerm
from optical_lightning.losses.terms import StepOutputs, sentence_spread, token_spread
from optical_lightning.models.encoder import EncoderOutput
from optical_lightning.utils.errors import ConfigError


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


# --- the spread term (losses/spread.py): the same measure as a loss, with gradients -----------------------------


def output(tokens: torch.Tensor, mask: torch.Tensor) -> EncoderOutput:
    mask = mask.bool()
    return EncoderOutput(tokens=tokens, attention_mask=mask, content_mask=mask, pooled=tokens.mean(1))


def step(teacher: torch.Tensor, student: torch.Tensor, mask: torch.Tensor) -> StepOutputs:
    ids = torch.zeros(mask.shape, dtype=torch.long)
    return StepOutputs(teacher=output(teacher, mask), student=output(student, mask), teacher_ids=ids, student_ids=ids)


def test_the_term_charges_only_the_excess_over_the_teacher():
    e = torch.eye(4)
    spread = e[None].clone()  # four orthonormal tokens: spread 0
    collapsed = e[0].expand(1, 4, 4).clone().requires_grad_(True)  # four copies: spread 1
    mask = torch.ones(1, 4)
    term = TokenSpreadTerm(weight=1.0)
    loss, _ = term(step(spread, collapsed, mask))
    assert loss.item() == pytest.approx(1.0)
    loss.backward()
    assert collapsed.grad.abs().sum() > 0
    student = spread.clone().requires_grad_(True)
    loss, _ = term(step(collapsed.detach(), student, mask))  # the student more spread than the teacher: free
    loss.backward()
    assert loss.item() == 0.0 and (student.grad is None or student.grad.abs().sum() == 0)
    assert sentence_spread(spread, mask).tolist() == [0.0]


def test_it_stops_the_collapse_that_transport_alone_makes():
    """Free student tokens trained by gradient descent on the OT loss alone grow alike (the collapse seen on the
    language model); with the spread term beside it their spread stays near the teacher's."""
    g = torch.Generator().manual_seed(0)
    teacher = F.normalize(torch.randn(4, 8, 16, generator=g), dim=-1)
    start = F.normalize(torch.randn(4, 8, 16, generator=g), dim=-1)
    mask = torch.ones(4, 8)
    head = OTDistillationHead(blur=0.5, refine_iters=20)
    weights = torch.full((4, 8), 1 / 8)
    teacher_spread = sentence_spread(teacher, mask).mean().item()
    final = {}
    for spread_weight in (0.0, 1.0):
        raw = start.clone().requires_grad_(True)
        optimizer = torch.optim.SGD([raw], lr=0.5)
        for _ in range(150):
            student = F.normalize(raw, dim=-1)
            loss = head(teacher, weights, student, weights).loss.mean()
            if spread_weight:
                loss = loss + spread_weight * TokenSpreadTerm(spread_weight)(step(teacher, student, mask))[0]
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        final[spread_weight] = sentence_spread(F.normalize(raw, dim=-1).detach(), mask).mean().item()
    assert final[0.0] > teacher_spread + 0.1  # collapsed
    assert final[1.0] < teacher_spread + 0.05


def test_the_config_lists_the_term_off_and_builds_it_on(tmp_path):
    from conftest import compose_config

    from optical_lightning.models.tiny import tiny_causal_lm
    from optical_lightning.utils.config import build

    teacher = tiny_causal_lm(seed=0)
    names = {}
    for weight in (0, 2.5):
        cfg = compose_config("teacher=tiny_lm", "student=tiny_lm", f"distill.spread_weight={weight}", output_dir=tmp_path)
        built = build(cfg.distill.module, "distill.module")(student=teacher, teacher=teacher, optimizer=None,
                                                            scheduler=None)
        names[weight] = {t.name: t.weight for t in built.loss_terms}
    assert "spread" not in names[0] and names[2.5]["spread"] == 2.5
    for bad in (-1.0, float("nan"), True):
        with pytest.raises(ConfigError, match=r"^distill\.spread_weight=.*must be a finite number >= 0"):
            TokenSpreadTerm(bad)
