"""The teacher token cache: same clouds as a live teacher, reuse across runs, no trust in broken shards."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import FIXTURES, SW_BITEXT, TINY_MODELS, run_cli

from optical_lightning.data.bitext import read_bitext
from optical_lightning.data.teacher_cache import TeacherTokenCache
from optical_lightning.models.tiny import tiny_encoder

TEXTS = [p.en for p in read_bitext(SW_BITEXT, "sw")[:40]]


def test_cached_batch_equals_the_live_teacher(tmp_path):
    teacher = tiny_encoder(seed=0, frozen=True, query_prefix="query: ")
    cache = TeacherTokenCache(tmp_path, teacher)
    assert cache.prepare(TEXTS) == {"cached": 0, "encoded": 40}
    texts = TEXTS[5:13]
    got = cache.batch(texts)
    batch = teacher.tokenize(texts, "query")
    with torch.no_grad():
        live = teacher(batch)
    mask = batch["attention_mask"].bool()
    assert torch.equal(got["attention_mask"].bool(), mask)
    assert torch.equal(got["content_mask"].bool(), live.content_mask & mask)
    assert torch.equal(got["input_ids"][mask], batch["input_ids"][mask])
    assert torch.allclose(got["tokens"][mask], live.tokens[mask], atol=1e-6)
    assert torch.allclose(got["pooled"], live.pooled, atol=1e-6)


def test_a_second_run_reuses_the_shards_and_ignores_a_broken_one(tmp_path):
    teacher = tiny_encoder(seed=0, frozen=True)
    TeacherTokenCache(tmp_path, teacher).prepare(TEXTS[:30])
    (shard,) = list(tmp_path.glob("*/shard-*.safetensors"))
    (shard.parent / "shard-broken.safetensors").write_bytes(b"not a safetensors file")
    again = TeacherTokenCache(tmp_path, teacher)
    assert again.prepare(TEXTS) == {"cached": 30, "encoded": 10}
    assert len(list(tmp_path.glob("*/shard-*.safetensors"))) == 3  # the old, the broken, and one new
    assert not list(tmp_path.glob("*/.shard-*"))  # no temporary file left behind
    other_teacher = TeacherTokenCache(tmp_path, tiny_encoder(seed=3, frozen=True))
    assert other_teacher.prepare(TEXTS[:5])["encoded"] == 5  # keyed by the teacher's weights


@pytest.mark.slow  # about 1 min on 2 cores: `make test-full` (the default suite stays under 15 min)
def test_training_from_the_cache_gives_the_same_loss(tmp_path):
    common = (*TINY_MODELS, f"retrieval.data_dir={FIXTURES / 'eval'}", "retrieval.sets=[tico19-test]", f"data.train={SW_BITEXT}",
              "data.val_size=32", "trainer.max_steps=8", "trainer.precision=32-true", "retrieval.precision=32",
              "student.dropout=0", f"data.teacher_cache_dir={tmp_path / 'cache'}")
    results = {}
    for name, flag in (("live", "false"), ("cold", "true"), ("warm", "true")):
        (tmp_path / name).mkdir()
        proc = run_cli(*common, f"data.teacher_cache={flag}", cwd=tmp_path / name)
        assert proc.returncode == 0, proc.stderr[-3000:]
        results[name] = json.loads(next((tmp_path / name).glob("outputs/**/results.json")).read_text())
    assert "teacher_cache_s" in results["cold"]["timing"] and "teacher_cache_s" not in results["live"]["timing"]
    for name in ("cold", "warm"):
        for key in ("val/loss", "train/loss"):
            assert results[name]["training"][key] == pytest.approx(results["live"]["training"][key], abs=1e-5)
    log = next((tmp_path / "warm").glob("outputs/**/run.log")).read_text()
    assert "teacher cache: 200 sentences cached, 0 encoded" in log
