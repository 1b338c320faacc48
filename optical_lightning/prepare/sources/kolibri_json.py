"""Kolibri (PyPI ``kolibri``): the Swahili (``sw_TZ``) front-end message catalogues.

Kolibri's wheel ships one JSON file per front-end bundle and locale,
``kolibri/locale/<locale>/LC_MESSAGES/<bundle>-messages.json``, each a flat ``{message id: text}``
object; the English files carry the source strings under the same ids, so pairs are aligned by
id. The wheel is only downloaded and read with :mod:`zipfile` - Kolibri is never installed.
Kolibri ships no Somali catalogue.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Mapping
from pathlib import Path

from optical_lightning.data.bitext import BitextPair
from optical_lightning.prepare.clean import ui_bitext
from optical_lightning.prepare.fetch import pypi_wheel
from optical_lightning.prepare.records import SourceContext, SourceResult, SourceSkipped

NAME = "kolibri"
LICENCE = "MIT (Kolibri, Learning Equality)"
ORIGIN = "PyPI kolibri wheel, kolibri/locale/*/LC_MESSAGES/*-messages.json"
LOCALES: dict[str, str] = {"sw": "sw_TZ"}


def catalogue_pairs(en: Mapping[str, object], tgt: Mapping[str, object]) -> list[BitextPair]:
    """Pairs ``(kolibri:<id>, English, translation)`` for every id with text in both catalogues."""
    return [BitextPair(f"{NAME}:{key}", en[key], text) for key, text in tgt.items()
            if isinstance(text, str) and isinstance(en.get(key), str)]


def wheel_pairs(wheel: Path, locale: str) -> list[BitextPair]:
    """All raw pairs of one locale in a Kolibri wheel (bundles in name order; repeats kept)."""
    prefix = f"kolibri/locale/{locale}/LC_MESSAGES/"
    pairs: list[BitextPair] = []
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        for name in sorted(n for n in names if n.startswith(prefix) and n.endswith(".json")):
            en_name = name.replace(f"/locale/{locale}/", "/locale/en/", 1)
            if en_name in names:
                pairs += catalogue_pairs(json.loads(zf.read(en_name)), json.loads(zf.read(name)))
    return pairs


def load(ctx: SourceContext) -> SourceResult:
    langs = [lang for lang in ctx.langs if lang in LOCALES]
    if not langs:
        raise SourceSkipped(f"Kolibri ships no catalogue for {', '.join(ctx.langs)}")
    wheel = pypi_wheel("kolibri", ctx.cache, ctx.offline)
    bitexts = [ui_bitext(NAME, lang, wheel_pairs(wheel.path, LOCALES[lang]), LICENCE, wheel.origin)
               for lang in langs]
    return SourceResult(NAME, LICENCE, wheel.origin, version=wheel.version, bitexts=bitexts)
