"""The English anchor (losses/anchor.py) through the real module and collator, on the tiny LM teacher and its LoRA
student: zero while the student is the teacher, positive once it trained, and free (no English pass) at weight 0."""

from __future__ import annotations

import pytest
import torch
from conftest import SW_BITEXT, compose_config

from optical_lightning.data.bitext import read_bitext
from optical_lightning.data.collate import PairCollator
from optical_lightning.losses.anchor import EnglishAnchorTerm, english_anchor
from optical_lightning.losses.terms import InBatchInfoNCETerm
from optical_lightning.models.causal_lm import adapt_student
from optical_lightning.models.tiny import tiny_causal_lm
from optical_lightning.training.module import DistillationModule
from optical_lightning.utils.config import build
from optical_lightning.utils.errors import ConfigError

PAIRS = read_bitext(SW_BITEXT, "sw")[:8]
LORA = {"r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]}


def module_and_batch(anchor_weight: float):
    teacher = tiny_causal_lm(seed=0)
    student = adapt_student(teacher, lora=LORA)
    terms = [InBatchInfoNCETerm(1.0, 0.05), EnglishAnchorTerm(anchor_weight)]
    module = DistillationModule(student, teacher, terms, optimizer=lambda params: torch.optim.AdamW(params, lr=1e-2),
                                scheduler=None)
    batch = PairCollator(teacher, student, with_student_en=module.needs_student_en)(PAIRS)
    return module, batch


def student_calls(module: DistillationModule) -> list[int]:
    calls = [0]
    module.student.register_forward_pre_hook(lambda m, a: calls.__setitem__(0, calls[0] + 1))
    return calls


def test_anchor_is_zero_while_the_student_is_the_teacher_and_positive_after_a_step():
    module, batch = module_and_batch(1.0)
    assert module.needs_student_en and "student_en" in batch
    calls = student_calls(module)
    loss, logs = module.distillation_loss(batch)
    assert calls == [2]  # the target side and the English side
    assert logs["anchor_loss"].abs() < 1e-6  # LoRA starts at B = 0: the adapted model is the base model
    optimizer = module.configure_optimizers()["optimizer"]
    loss.backward()
    optimizer.step()
    _, logs = module.distillation_loss(batch)
    assert logs["anchor_loss"] > 1e-4


def test_weight_0_leaves_the_anchor_out_and_costs_no_english_pass(tmp_path):
    module, batch = module_and_batch(0.0)
    assert [t.name for t in module.loss_terms] == ["nce"] and not module.needs_student_en
    assert "student_en" not in batch
    calls = student_calls(module)
    module.distillation_loss(batch)
    assert calls == [1]
    # and so by default: conf/distill/default.yaml lists the anchor with weight 0
    cfg = compose_config("distill=optical", output_dir=tmp_path)
    assert cfg.distill.anchor_weight == 0
    make = build(cfg.distill.module, "distill.module")
    built = make(student=module.student, teacher=module.teacher, optimizer=None, scheduler=None)
    assert "anchor" not in [t.name for t in built.loss_terms] and not built.needs_student_en


def test_differently_tokenised_english_and_bad_weights_are_one_line_errors():
    teacher = tiny_causal_lm(seed=0)
    batch = teacher.tokenize([p.en for p in PAIRS[:2]])
    out = teacher(batch)
    assert english_anchor(out, out, batch["input_ids"], batch["input_ids"]) < 1e-6
    shifted = batch["input_ids"].roll(1, dims=1)
    with pytest.raises(ConfigError, match=r"^distill\.anchor_weight > 0 .* tokenise it differently[^\n]*$"):
        english_anchor(out, out, shifted, batch["input_ids"])
    for bad in (-1.0, float("nan"), True):
        with pytest.raises(ConfigError, match=r"^distill\.anchor_weight=.*must be a finite number >= 0"):
            EnglishAnchorTerm(bad)
