"""Transport along the base model's plan (losses/base_plan.py): POT's plan on the base states charged on the
student's, a hand-solved swap that only a fixed plan sees, and the real module on the tiny LM and its LoRA student."""

from __future__ import annotations

import numpy as np
import ot
import pytest
import torch
import torch.nn.functional as F
from conftest import SW_BITEXT, compose_config

from optical_lightning.data.bitext import read_bitext
from optical_lightning.data.collate import PairCollator
from optical_lightning.data.teacher_cache import TeacherTokenCache
from optical_lightning.losses.base_plan import BasePlanTransportTerm
from optical_lightning.losses.ot import OTDistillationHead, cosine_cost
from optical_lightning.losses.terms import InBatchInfoNCETerm
from optical_lightning.models.causal_lm import _decoder, adapt_student
from optical_lightning.models.tiny import tiny_causal_lm
from optical_lightning.training.module import DistillationModule, reads_like_its_teacher
from optical_lightning.utils.config import build
from optical_lightning.utils.errors import ConfigError

PAIRS = read_bitext(SW_BITEXT, "sw")[:8]
LORA = {"r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]}


def unit(b: int, n: int, d: int, seed: int) -> torch.Tensor:
    return F.normalize(torch.randn(b, n, d, generator=torch.Generator().manual_seed(seed)), dim=-1)


def test_the_plan_is_pots_on_the_base_tokens_and_the_cost_the_students():
    x, y0, y = unit(2, 6, 12, 0), unit(2, 5, 12, 1), unit(2, 5, 12, 2)
    a, b = torch.full((2, 6), 1 / 6), torch.full((2, 5), 1 / 5)
    out = OTDistillationHead(blur=0.3, refine_iters=500)(x, a, y, b, plan_from=y0)
    for k in range(2):
        plan = ot.bregman.sinkhorn_log(np.full(6, 1 / 6), np.full(5, 1 / 5), cosine_cost(x[k:k + 1], y0[k:k + 1])[0]
                                       .double().numpy(), reg=0.09, numItermax=100_000, stopThr=1e-13)
        np.testing.assert_allclose(out.plan[k].double().numpy(), plan, atol=1e-4)
        charged = float((plan * cosine_cost(x[k:k + 1], y[k:k + 1])[0].double().numpy()).sum())
        assert out.per_pair[k].item() == pytest.approx(charged, abs=1e-4)


def test_a_student_that_swaps_its_tokens_is_free_under_its_own_plan_and_charged_under_the_base_plan():
    # hand-solved: the base model pairs Swahili token j with English token j; the student swaps the two
    e1, e2 = torch.eye(4)[:2]
    x = torch.stack([e1, e2])[None]
    base, student = x.clone().requires_grad_(False), torch.stack([e2, e1])[None].requires_grad_(True)
    half = torch.full((1, 2), 0.5)
    head = OTDistillationHead(blur=0.05)
    assert head(x, half, student, half).loss.item() == pytest.approx(0.0, abs=1e-3)  # re-paired: nothing to pay
    fixed = head(x, half, student, half, plan_from=base)
    assert fixed.loss.item() == pytest.approx(1.0, abs=1e-3)  # each token is orthogonal to its fixed counterpart
    fixed.loss.backward()
    # the pull is towards the fixed counterpart: token 0 (now e2) towards e1, token 1 towards e2
    assert student.grad[0, 0, 0] < 0 and student.grad[0, 1, 1] < 0


def module_and_batch(base_plan_weight: float = 10.0):
    teacher = tiny_causal_lm(seed=0)
    student = adapt_student(teacher, lora=LORA)
    terms = [InBatchInfoNCETerm(1.0, 0.05), BasePlanTransportTerm(base_plan_weight, OTDistillationHead(blur=0.1))]
    module = DistillationModule(student, teacher, terms, optimizer=lambda params: torch.optim.AdamW(params, lr=1e-2),
                                scheduler=None)
    return module, PairCollator(teacher, student)(PAIRS)


def test_in_the_module_the_base_plan_is_the_students_own_plan_until_it_trains():
    module, batch = module_and_batch()
    assert module.needs_base_tgt
    loss, logs = module.distillation_loss(batch)
    # LoRA starts at B = 0: the student is the base model, so both plans and both costs coincide
    assert logs["base_plan_cost"].item() == pytest.approx(logs["transport_cost"].item(), abs=1e-5)
    optimizer = module.configure_optimizers()["optimizer"]
    for _ in range(5):
        optimizer.zero_grad()
        loss, logs = module.distillation_loss(batch)
        loss.backward()
        optimizer.step()
    first = logs["base_plan_loss"].item()
    _, logs = module.distillation_loss(batch)
    assert logs["base_plan_loss"].item() < first  # it trains, and only the adapters moved
    assert logs["base_plan_cost"].item() != pytest.approx(logs["transport_cost"].item(), abs=1e-5)
    assert all(p.grad is None for n, p in module.teacher.base_lm.named_parameters() if "lora_" not in n)


def test_the_teacher_cache_serves_the_base_states_and_saves_one_forward_a_step(tmp_path):
    module, live_batch = module_and_batch()
    teacher, student = module.teacher, module.student
    assert reads_like_its_teacher(student, teacher)
    cache = TeacherTokenCache(tmp_path, teacher)
    assert cache.prepare(p.tgt for p in PAIRS) == {"cached": 0, "encoded": len(PAIRS)}
    cached_batch = PairCollator(teacher, student, base_cache=cache)(PAIRS)
    calls = []
    hook = _decoder(teacher.base_lm).register_forward_pre_hook(lambda *_: calls.append(1))
    try:
        live_loss, live_logs = module.distillation_loss(live_batch)
        live_calls = len(calls)
        calls.clear()
        cached_loss, cached_logs = module.distillation_loss(cached_batch)
    finally:
        hook.remove()
    assert (live_calls, len(calls)) == (3, 2)  # teacher on English, student, and the base model only when live
    assert cached_loss.item() == pytest.approx(live_loss.item(), abs=1e-5)
    assert cached_logs["base_plan_cost"].item() == pytest.approx(live_logs["base_plan_cost"].item(), abs=1e-6)
    # a student that reads its text otherwise (another prefix) is not served by the teacher's cache
    own_teacher = tiny_causal_lm(seed=0)
    assert not reads_like_its_teacher(adapt_student(own_teacher, lora=LORA, query_prefix="swali: "), own_teacher)
    assert not reads_like_its_teacher(student, own_teacher)  # not adapted from that teacher's model


def test_by_default_the_term_is_off_and_an_unadapted_student_or_bad_setting_is_one_line(tmp_path):
    cfg = compose_config("experiment=reasoning", "teacher=tiny_lm", "student=tiny_lm", output_dir=tmp_path)
    assert cfg.distill.base_plan_weight == 0 and cfg.distill.module.loss_terms.base_plan.weight == 0
    teacher = tiny_causal_lm(seed=0)
    other = tiny_causal_lm(seed=1)  # a model of its own, not the teacher's with adapters
    term = BasePlanTransportTerm(1.0, OTDistillationHead())
    with pytest.raises(ConfigError, match=r"^distill\.base_plan_weight > 0 reads the base model's states[^\n]*$"):
        DistillationModule(other, teacher, [term], optimizer=None, scheduler=None)
    for bad in (-1.0, float("nan"), True):
        with pytest.raises(ConfigError, match=r"^distill\.base_plan_weight=.*finite number >= 0"):
            BasePlanTransportTerm(bad, OTDistillationHead())
    with pytest.raises(ConfigError, match=r"^ot\.loss=divergence: distill\.base_plan_weight"):
        BasePlanTransportTerm(1.0, OTDistillationHead(loss="divergence"))
    make = build(cfg.distill.module, "distill.module")
    built = make(student=adapt_student(teacher, lora=LORA), teacher=teacher, optimizer=None, scheduler=None)
    assert "base_plan" not in [t.name for t in built.loss_terms] and not built.needs_base_tgt
    # switched on by one setting, with the run's own OT head (blur, centring)
    cfg = compose_config("experiment=reasoning", "teacher=tiny_lm", "student=tiny_lm", "distill.ot_weight=0",
                         "distill.base_plan_weight=10", "ot.blur=0.05", output_dir=tmp_path)
    teacher = tiny_causal_lm(seed=0)
    built = build(cfg.distill.module, "distill.module")(student=adapt_student(teacher, lora=LORA), teacher=teacher,
                                                        optimizer=None, scheduler=None)
    (term,) = [t for t in built.loss_terms if t.name == "base_plan"]
    assert term.weight == 10 and term.head.blur == 0.05 and "ot" not in [t.name for t in built.loss_terms]
