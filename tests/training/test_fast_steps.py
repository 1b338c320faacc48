"""Faster steps that must not change what is learned: the student cache of fixed lower layers, LoRA
adapters (checked against PEFT's own loader) and checkpoints that hold only what training changes."""

from __future__ import annotations

import pytest
import torch
from conftest import SW_BITEXT, distillation_module

from optical_lightning.data import BitextDataModule
from optical_lightning.data.bitext import read_bitext
from optical_lightning.data.collate import PairCollator
from optical_lightning.data.student_cache import FrozenLayersCache
from optical_lightning.models.encoder import Encoder
from optical_lightning.models.loading import load_encoder
from optical_lightning.models.tiny import tiny_encoder
from optical_lightning.utils.errors import ConfigError

PAIRS = read_bitext(SW_BITEXT, "sw")[:12]


def models(**student_kwargs):
    teacher = tiny_encoder(hidden_size=32, num_layers=2, seed=0, frozen=True)
    student = tiny_encoder(hidden_size=32, num_layers=3, seed=1, projection=True, target_dim=32, **student_kwargs)
    return teacher, student


def step_loss(module, collate, seed=0):
    torch.manual_seed(seed)  # the same dropout masks in the trained layers
    loss, _ = module.distillation_loss(collate(PAIRS))
    return loss


@pytest.mark.parametrize("mse_weight", [0.0, 1.0])
def test_cached_lower_layers_give_the_full_students_loss_and_gradients(mse_weight):
    teacher, student = models(trainable_layers=1)
    student.train()
    module = distillation_module(student, teacher, ot=1.0, mse=mse_weight, nce=1.0)
    live = PairCollator(teacher, student, with_student_en=mse_weight > 0)
    cache = FrozenLayersCache(student)
    assert cache.prepare([p.tgt for p in PAIRS[:6]])["encoded"] == 6  # the rest are encoded on first use
    cached = PairCollator(teacher, student, with_student_en=mse_weight > 0, student_cache=cache)
    assert "lower_hidden" in cached(PAIRS)["student_tgt"]

    grads = []
    for collate in (live, cached):
        student.zero_grad()
        loss = step_loss(module, collate)
        loss.backward()
        grads.append(([loss.item()], [p.grad.clone() for p in student.parameters() if p.requires_grad]))
    (loss_live, g_live), (loss_cached, g_cached) = grads
    assert loss_cached[0] == pytest.approx(loss_live[0], abs=1e-5)
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(g_live, g_cached))


def test_fixed_lower_layers_run_without_dropout_and_top_layers_with_it():
    _, student = models(trainable_layers=1)
    student.train()
    layers = student.backbone.encoder.layer
    assert not student.backbone.embeddings.training and not layers[0].training and not layers[1].training
    assert layers[2].training


def test_student_cache_needs_fixed_lower_layers():
    _, student = models()
    with pytest.raises(ConfigError, match="student.trainable_layers=K"):
        FrozenLayersCache(student)


def test_checkpoint_holds_only_what_training_changes(tmp_path):
    import pytorch_lightning as pl

    teacher, student = models(trainable_layers=1)
    module = distillation_module(student, teacher, ot=1.0, lr=1e-2)
    dm = BitextDataModule(str(SW_BITEXT), "sw", val_size=20, batch_size=8, seed=0,
                          collate_fn=PairCollator(teacher, student))
    trainer = pl.Trainer(max_steps=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                         limit_val_batches=0, default_root_dir=tmp_path)
    trainer.fit(module, datamodule=dm)
    trainer.save_checkpoint(tmp_path / "last.ckpt")
    state = torch.load(tmp_path / "last.ckpt", weights_only=False)["state_dict"]
    assert {k.split(".")[4] for k in state if k.startswith("student.backbone.encoder.layer.")} == {"2"}
    assert not any("embeddings" in k or k.startswith("teacher.") for k in state)
    assert any(k.startswith("student.projection.") for k in state)

    fresh = distillation_module(models(trainable_layers=1)[1], teacher, ot=1.0)
    fresh.load_state_dict(state)  # strict: the rebuilt student supplies the frozen weights
    for (name, a), b in zip(student.state_dict().items(), fresh.student.state_dict().values()):
        assert torch.equal(a, b), name


def trained_lora_student():
    _, student = models(dropout=0.0, lora={"r": 4, "alpha": 8, "target_modules": ["query", "value"]})
    with torch.no_grad():  # stand-in for training: LoRA's B starts at zero, so move it
        for name, param in student.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.3)
    return student


def test_lora_trains_only_adapters_and_the_projection():
    student = trained_lora_student()
    trainable = {n for n, p in student.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n or n.startswith("projection.") for n in trainable)
    assert any(".query.lora_A." in n for n in trainable) and not any(".key." in n for n in trainable)


def test_lora_student_saves_merged_and_as_an_adapter_that_peft_reloads(tmp_path):
    from peft import PeftModel

    student = trained_lora_student()
    texts = [p.tgt for p in PAIRS]
    before = student.encode(texts)
    student.save_pretrained(tmp_path / "student")
    reloaded = Encoder.from_pretrained(tmp_path / "student")  # adapters merged into plain weights
    assert not any("lora_" in n for n, _ in reloaded.named_parameters())
    assert torch.allclose(reloaded.encode(texts), before, atol=1e-5)

    base = models(dropout=0.0)[1]  # the untrained student, and the adapter through PEFT's own loader
    base.backbone = PeftModel.from_pretrained(base.backbone, str(tmp_path / "student" / "lora"))
    base.projection.load_state_dict(student.projection.state_dict())
    assert torch.allclose(base.encode(texts), before, atol=1e-5)
    assert not torch.allclose(models(dropout=0.0)[1].encode(texts), before, atol=1e-3)  # the adapter matters


def test_lora_settings_are_checked():
    _, student = models()
    with pytest.raises(ConfigError, match="target_modules: attn name no linear layer"):
        student.add_lora(target_modules=["attn"])
    with pytest.raises(ConfigError, match=r"lora\.r=0"):
        student.add_lora(r=0)
    with pytest.raises(ConfigError, match="add student.trainable_layers=null"):
        load_encoder("unused", trainable_layers=1, lora={"r": 4})

