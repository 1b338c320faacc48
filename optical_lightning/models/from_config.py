"""Encoders rebuilt from the ``teacher:`` / ``student:`` section of a run directory's saved ``config.yaml``.

Run directories are shared and downloaded, so reading one must never call what it names. Hydra's
``instantiate`` imports and calls any ``_target_``, nested ones in any field included (its blocklist
stops ``os.system``, not the rest of Python). Here a section is accepted only when its ``_target_`` is
one of the project's own encoder builders and every other field is a plain value (string, number,
boolean, null, or a list / mapping of those without ``_``-keys) that the builder takes as a keyword
argument; the builder is then called directly, with no Hydra in between.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from typing import Any

from optical_lightning.models.encoder import Encoder
from optical_lightning.models.loading import load_encoder
from optical_lightning.models.tiny import tiny_encoder
from optical_lightning.utils.errors import ModelLoadError

#: the ``_target_`` strings a saved config may name, and what they build
ENCODER_BUILDERS: dict[str, Callable[..., Encoder]] = {
    "optical_lightning.models.loading.load_encoder": load_encoder,
    "optical_lightning.models.encoder.load_encoder": load_encoder,  # its path before models/encoder.py was split
    "optical_lightning.models.load_encoder": load_encoder,
    "optical_lightning.models.tiny.tiny_encoder": tiny_encoder,
}
_PLAIN = (str, int, float, bool, type(None))
FIX = "pass the models with --query-model / --doc-model instead"


def encoder_from_config(section: object, where: str, fix: str = FIX, **overrides: Any) -> Encoder:
    """Build the encoder that ``section`` (a plain mapping, e.g. from ``yaml.safe_load``) describes;
    ``overrides`` (such as ``frozen=True``) are the caller's and replace saved values."""
    return encoder_builder(section, where, fix)(**overrides)


def encoder_builder(section: object, where: str, fix: str = FIX) -> Callable[..., Encoder]:
    """The checked builder call of ``section``, to be called later (keyword overrides allowed).

    ``where`` names the section for messages (``DIR/config.yaml: teacher``), ``fix`` ends them. Anything
    else than a known builder with plain keyword arguments is refused with a one-line
    :class:`ModelLoadError`, before anything is imported or called: checking first lets a caller refuse a
    bad run directory before minutes of loading other models.
    """
    if not isinstance(section, Mapping):
        raise ModelLoadError(f"{where}: expected a mapping with _target_ and the encoder's settings, found "
                             f"{type(section).__name__}; {fix}")
    target = section.get("_target_")
    builder = ENCODER_BUILDERS.get(target) if isinstance(target, str) else None
    if builder is None:
        raise ModelLoadError(f"{where}: _target_={target!r} is not one of this project's encoder builders "
                             f"({', '.join(ENCODER_BUILDERS)}); refusing to call it - a run directory from elsewhere "
                             f"may name any code; {fix}")
    accepted = _keywords(builder)
    kwargs = {}
    for key, value in section.items():
        if key == "_target_":
            continue
        if not isinstance(key, str) or key.startswith("_") or key not in accepted:
            raise ModelLoadError(f"{where}.{key}: not a setting of {target}; refusing the saved config - "
                                 f"{fix}")
        if (problem := _not_plain(value)) is not None:
            raise ModelLoadError(f"{where}.{key}: {problem}; a saved encoder setting must be a plain value "
                                 f"(string, number, boolean, null or a list of them); {fix}")
        kwargs[key] = value
    return functools.partial(builder, **kwargs)


def _keywords(builder: Callable[..., Encoder]) -> set[str]:
    """The keyword arguments ``builder`` takes; ``**kwargs`` builders (tiny_encoder) pass on the Encoder's."""
    params = inspect.signature(builder).parameters
    names = {n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        names |= set(inspect.signature(Encoder.__init__).parameters) - {"self", "backbone", "tokenizer"}
    return names


def _not_plain(value: object) -> str | None:
    """Why ``value`` is not plain data (None when it is)."""
    if isinstance(value, _PLAIN):
        return None
    if isinstance(value, (list, tuple)):
        return next((p for v in value if (p := _not_plain(v)) is not None), None)
    if isinstance(value, Mapping):
        if any(not isinstance(k, str) or k.startswith("_") for k in value):  # _target_, _args_, _partial_ ...
            return f"a mapping with the key(s) {', '.join(map(repr, value))}, which would name code to call"
        return next((p for v in value.values() if (p := _not_plain(v)) is not None), None)
    return f"a {type(value).__name__}, not plain data"
