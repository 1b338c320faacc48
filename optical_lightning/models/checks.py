"""Checks that a loaded model is usable before minutes of encoding or training go into it.

Each failure is a :class:`~optical_lightning.utils.errors.ModelLoadError` of one line that names the
folder. They exist because the failures they catch are silent otherwise: a folder without tokenizer
files loads a five-token tokenizer (every word becomes ``[UNK]``, nDCG drops to near zero, exit 0),
NaN weights rank documents at random, and a truncated ``model.safetensors`` fails deep inside
``transformers`` with a traceback.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from safetensors import SafetensorError, safe_open
from torch import nn

from optical_lightning.utils.errors import ModelLoadError

#: English and Swahili, as the encoders read them: a tokenizer that knows neither is not the model's own
PROBE = "The health workers visited the village today. Wahudumu wa afya walitembelea kijiji leo."
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


def check_tokenizer(tokenizer, where: str, folder: Path | None = None) -> None:
    """Refuse a tokenizer that turns most tokens of an ordinary sentence into its unknown token.

    Why: ``AutoTokenizer`` on a folder that lost ``tokenizer.json`` / ``tokenizer_config.json``
    falls back to a tokenizer of the special tokens alone instead of failing. The criterion is
    "most tokens unknown", not the vocabulary size, so small legitimate vocabularies (the tiny test
    models' character-level one) pass.
    """
    ids = tokenizer(PROBE, add_special_tokens=False)["input_ids"]
    unk = getattr(tokenizer, "unk_token_id", None)
    unknown = sum(i == unk for i in ids) if unk is not None else 0
    if ids and unknown * 2 <= len(ids):
        return
    missing = [f for f in TOKENIZER_FILES if folder is not None and not (folder / f).is_file()]
    why = f"it lacks {' and '.join(missing)}" if missing else "its tokenizer files do not match the model"
    raise ModelLoadError(f"{where}: the tokenizer cannot read ordinary text ({unknown} of {len(ids)} tokens of an "
                         f"English/Swahili sentence are unknown; vocabulary of {len(tokenizer)}): {why}; copy the "
                         f"tokenizer files of the model it was trained from into {folder or 'the folder'}")


def check_finite(model: nn.Module, where: str) -> None:
    """Refuse a model with NaN or infinite weights (a diverged training run): every score it gives is
    meaningless, yet encoding and ranking would run without a word."""
    bad = [name for name, tensor in [*model.named_parameters(), *model.named_buffers()]
           if tensor.is_floating_point() and not bool(tensor.isfinite().all())]
    if bad:
        raise ModelLoadError(f"{where}: {len(bad)} weight tensors hold NaN or inf values (e.g. {bad[0]}); the "
                             f"training that wrote it diverged - retrain it (e.g. with a lower optim.lr) or use "
                             f"an earlier checkpoint")


def safetensors_problem(path: Path) -> str | None:
    """Why the safetensors file ``path`` cannot be loaded (truncated, corrupt), or None when it can.

    Only the header is parsed: safetensors checks that it covers the file exactly, so a file cut
    short by a full disk or an interrupted copy is caught in milliseconds, without reading weights.
    """
    try:
        with safe_open(str(path), framework="pt"):
            return None
    except (SafetensorError, OSError) as e:
        return " ".join(str(e).split())[:160] or type(e).__name__


def check_weight_files(folder: Path) -> None:
    """Refuse a model folder whose ``*.safetensors`` weights are truncated or corrupt, naming the file."""
    for path in sorted(folder.glob("*.safetensors")):
        if (why := safetensors_problem(path)) is not None:
            raise ModelLoadError(f"{path} is truncated or corrupt ({why}); the folder {folder} cannot be loaded: "
                                 f"save or copy the model into it again (a converted copy in a cache folder: "
                                 f"delete {folder} and it is rebuilt)")


def read_plain_fields(file: Path, fields: dict[str, tuple[tuple[type, ...], bool, Any]], what: str) -> dict[str, Any]:
    """The fields ``{name: (types, nullable, default)}`` of a saved folder's JSON settings file, each checked for
    its type (nothing in a shared folder is imported or called); anything else is a one-line :class:`ModelLoadError`."""
    try:
        raw = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelLoadError(f"{file}: not readable JSON ({e}); copy the whole saved folder again") from e
    if not isinstance(raw, dict):
        raise ModelLoadError(f"{file}: expected a JSON object of {what}; copy the whole saved folder again")
    cfg = {}
    for key, (types, nullable, default) in fields.items():
        value = raw.get(key, default)
        ok = (value is None and nullable) or (isinstance(value, types) and (bool in types or not isinstance(value, bool)))
        if not ok:
            wanted = " or ".join(t.__name__ for t in types) + (" or null" if nullable else "")
            raise ModelLoadError(f"{file}: '{key}' is {value!r}, expected {wanted}; copy the whole saved folder again")
        cfg[key] = value
    return cfg
