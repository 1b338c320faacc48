"""The LightningModule on tiny models and real bitext: what trains, what stays frozen, what is saved."""

from __future__ import annotations

import inspect

import pytest
import pytorch_lightning as pl
import torch
from conftest import SW_BITEXT, compose_config, distillation_module
from hydra.utils import instantiate

from optical_lightning.data import BitextDataModule
from optical_lightning.data.collate import PairCollator
from optical_lightning.losses.ot import OTDistillationHead
from optical_lightning.losses.terms import InBatchInfoNCETerm, PooledMSETerm, TransportTerm
from optical_lightning.training.module import DistillationModule


def make(tiny_pair, ot_weight=1.0, mse_weight=0.0, lr=1e-3, nce_weight=0.0, nce_temperature=0.05, **head):
    teacher, student = tiny_pair
    module = distillation_module(student, teacher, ot=ot_weight, mse=mse_weight, nce=nce_weight,
                                 temperature=nce_temperature, head=OTDistillationHead(**head), lr=lr)
    dm = BitextDataModule(str(SW_BITEXT), "sw", val_size=20, batch_size=16, seed=0,
                          collate_fn=PairCollator(teacher, student, with_student_en=mse_weight > 0))
    dm.setup("fit")
    return module, dm


def trainer(tmp_path, steps):
    return pl.Trainer(max_steps=steps, accelerator="cpu", logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                      default_root_dir=tmp_path)


def mean_val_loss(module, dm):
    with torch.no_grad():
        return sum(module.distillation_loss(b)[0].item() for b in dm.val_dataloader()[0]) / len(dm.val_dataloader()[0])


def test_gradients_reach_student_and_never_teacher(tiny_pair):
    module, dm = make(tiny_pair, ot_weight=1.0, mse_weight=0.5)
    loss, logs = module.distillation_loss(next(iter(dm.train_dataloader())))
    loss.backward()
    assert {"ot_loss", "mse_loss", "transport_cost", "plan_entropy", "student_token_cos", "teacher_token_cos"} <= set(logs)
    assert all(p.grad is None for p in module.teacher.parameters())
    student_grads = [p.grad for p in module.student.parameters() if p.requires_grad]
    assert student_grads and all(g is not None for g in student_grads)
    assert sum(g.abs().sum() for g in student_grads) > 0
    assert all(id(p) not in {id(q) for q in module.teacher.parameters()}
               for group in module.configure_optimizers()["optimizer"].param_groups for p in group["params"])


def test_optical_training_lowers_the_held_out_transport_cost(tiny_pair, tmp_path):
    module, dm = make(tiny_pair)
    before = mean_val_loss(module, dm)
    trainer(tmp_path, 30).fit(module, datamodule=dm)
    after = mean_val_loss(module.eval(), dm)
    assert after < before - 0.02, (before, after)
    assert not module.teacher.training


def test_mse_training_lowers_the_held_out_mse(tiny_pair, tmp_path):
    module, dm = make(tiny_pair, ot_weight=0.0, mse_weight=1.0)
    before = mean_val_loss(module, dm)
    trainer(tmp_path, 30).fit(module, datamodule=dm)
    assert mean_val_loss(module.eval(), dm) < before


def test_idf_marginals_weight_frequent_tokens_less(tiny_pair, tmp_path):
    module, dm = make(tiny_pair, marginals="idf")
    trainer(tmp_path, 1).fit(module, datamodule=dm)
    idf = module.teacher_idf
    space = module.teacher.tokenizer.convert_tokens_to_ids("e")  # the commonest letter in English
    rare = module.teacher.tokenizer.convert_tokens_to_ids("q")
    assert idf is not None and idf[space] < idf[rare]


def test_checkpoint_holds_the_student_not_the_teacher(tiny_pair, tmp_path):
    module, dm = make(tiny_pair)
    t = trainer(tmp_path, 2)
    t.fit(module, datamodule=dm)
    t.save_checkpoint(tmp_path / "last.ckpt")
    state = torch.load(tmp_path / "last.ckpt", weights_only=False)["state_dict"]
    assert any(k.startswith("student.") for k in state) and not any(k.startswith("teacher.") for k in state)
    fresh, _ = make(tiny_pair)
    fresh.load_state_dict(state)  # strict: every student key present, teacher filled from the live model


def test_teacher_role_picks_the_prefix_of_the_english_side():
    from optical_lightning.data.bitext import BitextPair
    from optical_lightning.models.tiny import tiny_encoder

    teacher = tiny_encoder(frozen=True, query_prefix="query: ", passage_prefix="passage: ")
    student = tiny_encoder(query_prefix="query: ", passage_prefix="passage: ")
    pairs = [BitextPair("1", "Wash your hands.", "Nawa mikono yako.")]
    for role in ("query", "passage"):
        batch = PairCollator(teacher, student, teacher_role=role)(pairs)
        assert torch.equal(batch["teacher_en"]["input_ids"], teacher.tokenize(["Wash your hands."], role)["input_ids"])
        assert torch.equal(batch["student_tgt"]["input_ids"], student.tokenize(["Nawa mikono yako."], "query")["input_ids"])
    query, passage = (PairCollator(teacher, student, teacher_role=r)(pairs)["teacher_en"]["input_ids"] for r in ("query", "passage"))
    assert not torch.equal(query, passage)


@pytest.mark.parametrize("distill", ["optical", "mse", "optical_mse"])
def test_distill_configs_build_the_module_with_their_weighted_loss_terms(distill, tiny_pair, tmp_path):
    cfg = compose_config(f"distill={distill}", output_dir=tmp_path)
    teacher, student = tiny_pair
    module = instantiate(cfg.distill.module)(student=student, teacher=teacher, scheduler=None,
                                             optimizer=lambda params: torch.optim.AdamW(params, lr=1e-3))
    weights = {"ot": cfg.distill.ot_weight, "mse": cfg.distill.mse_weight, "nce": cfg.distill.nce_weight}
    assert {t.name: t.weight for t in module.loss_terms} == {k: w for k, w in weights.items() if w > 0}
    assert module.needs_student_en == (cfg.distill.mse_weight > 0)


def test_each_default_lives_in_the_config(tmp_path):
    """The module and its terms take their settings from conf/ with no fallbacks of their own; the OT
    head's fallbacks equal conf/ot/sinkhorn.yaml."""
    for target in (DistillationModule, TransportTerm, PooledMSETerm, InBatchInfoNCETerm):
        defaults = {n: p.default for n, p in inspect.signature(target).parameters.items() if p.default is not p.empty}
        assert defaults == {}, (target.__name__, defaults)
    ot = compose_config(output_dir=tmp_path).ot
    head_defaults = {n: p.default for n, p in inspect.signature(OTDistillationHead).parameters.items()}
    assert head_defaults == {k: v for k, v in ot.items() if k != "_target_"}
