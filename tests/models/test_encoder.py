"""Encoder wrapper: shapes, masks, pooling, projection, freezing and the saved HF folder."""

from __future__ import annotations

import json

import pytest
import torch

from optical_lightning.models.encoder import Encoder
from optical_lightning.models.loading import load_encoder
from optical_lightning.models.tiny import tiny_encoder
from optical_lightning.utils.errors import ConfigError, ModelLoadError

TEXTS = ["Watu wengi wamepona.", "Dalili za COVID-19 ni homa na kikohozi kikavu."]


def test_tokens_masks_and_pooled_vector():
    enc = tiny_encoder(query_prefix="query: ")
    batch = enc.tokenize(TEXTS, "query")
    out = enc(batch)
    b, length = batch["input_ids"].shape
    assert out.tokens.shape == (b, length, 32) and out.pooled.shape == (b, 32)
    torch.testing.assert_close(out.tokens[out.attention_mask].norm(dim=-1), torch.ones(int(out.attention_mask.sum())))
    # content excludes [CLS], [SEP], padding and the "query: " prefix (6 characters -> 6 char tokens)
    ids = batch["input_ids"][0]
    content = out.content_mask[0]
    cls_id, sep_id = enc.tokenizer.cls_token_id, enc.tokenizer.sep_token_id
    assert not content[ids == cls_id].any() and not content[ids == sep_id].any()
    assert not content[1:7].any() and content[7]
    decoded = enc.tokenizer.decode(ids[content]).replace(" ", "")
    assert decoded == "watuwengiwamepona."
    assert int(out.content_mask[1].sum()) < int(out.attention_mask[1].sum())


def test_mean_pooling_is_the_masked_mean():
    enc = tiny_encoder(normalize=False)
    batch = enc.tokenize(TEXTS)
    out = enc(batch)
    m = batch["attention_mask"][0].bool()
    torch.testing.assert_close(out.pooled[0], out.tokens[0][m].mean(0))
    cls = tiny_encoder(normalize=False, pooling="cls").eval()  # eval: no dropout between the two calls
    out = cls(batch)
    torch.testing.assert_close(out.pooled, out.tokens[:, 0])


def test_padding_does_not_change_a_sentence_embedding():
    enc = tiny_encoder()
    alone = enc.encode([TEXTS[0]])
    padded = enc.encode(TEXTS)[:1]  # batched with a longer text
    torch.testing.assert_close(alone, padded, atol=1e-5, rtol=0)


def test_projection_starts_as_identity():
    plain = tiny_encoder(seed=3)
    projected = tiny_encoder(seed=3, projection=True)
    torch.testing.assert_close(projected.encode(TEXTS), plain.encode(TEXTS))
    wider = tiny_encoder(seed=3, projection=True, target_dim=48)
    assert wider.dim == 48 and wider.encode(TEXTS).shape == (2, 48)


def test_size_mismatch_without_projection_is_a_clear_error():
    with pytest.raises(ConfigError, match="student.projection=true"):
        tiny_encoder(projection=False, target_dim=48)


def test_frozen_teacher_stays_frozen():
    teacher = tiny_encoder(frozen=True)
    teacher.train()
    assert not teacher.training and not any(m.training for m in teacher.modules())
    assert not any(p.requires_grad for p in teacher.parameters())


def test_saved_student_reloads_with_identical_embeddings(tmp_path):
    student = tiny_encoder(seed=5, projection=True, target_dim=40, query_prefix="query: ", passage_prefix="passage: ")
    with torch.no_grad():
        student.projection.weight.add_(0.01 * torch.randn_like(student.projection.weight))
    student.save_pretrained(tmp_path / "student")
    reloaded = Encoder.from_pretrained(tmp_path / "student")
    for role in ("query", "passage"):
        torch.testing.assert_close(reloaded.encode(TEXTS, role), student.encode(TEXTS, role))
    meta = json.loads((tmp_path / "student" / "optical_encoder.json").read_text())
    assert meta["projection_dim"] == 40 and meta["query_prefix"] == "query: "
    # also loadable as a plain saved student through the config entry point
    torch.testing.assert_close(load_encoder(str(tmp_path / "student")).encode(TEXTS), student.encode(TEXTS))
    assert not list(tmp_path.glob(".student.tmp-*"))


def test_saved_student_loads_in_sentence_transformers(tmp_path):
    import sentence_transformers as st

    student = tiny_encoder(seed=5, projection=True, target_dim=40, query_prefix="query: ")
    student.save_pretrained(tmp_path / "student")
    model = st.SentenceTransformer(str(tmp_path / "student"), device="cpu")
    ours = student.encode(TEXTS, "query")
    theirs = torch.as_tensor(model.encode(TEXTS, prompt_name="query"))
    torch.testing.assert_close(theirs, ours, atol=1e-5, rtol=0)


def test_unknown_model_offline_names_the_fix(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match="model_name_or_path=/path/to/model"):
        load_encoder("no-such-org/no-such-model")


def test_trainable_layers_freeze_everything_below_the_top_k():
    student = tiny_encoder(hidden_size=32, num_layers=2, seed=1, projection=True)
    student.train_top_layers(1)
    trainable = {n for n, p in student.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith(("backbone.encoder.layer.1.", "projection.")) for n in trainable)
    assert any(n.startswith("projection.") for n in trainable)
    student.train_top_layers(0)
    assert all(n.startswith("projection.") for n, p in student.named_parameters() if p.requires_grad)
    with pytest.raises(ConfigError, match=r"student\.trainable_layers=3: must be an integer in \[0, 2\]"):
        student.train_top_layers(3)
