"""MediaWiki (Debian ``mediawiki``): interface messages of MediaWiki core, its bundled
extensions, skins and libraries, from ``i18n/<lang>.json`` files.

Each ``i18n`` folder holds ``en.json`` (source strings) and one JSON per language with the same
message keys (``@metadata`` holds authors, not text), so pairs are aligned by key. The ``.deb`` is
downloaded with ``apt-get download`` and only the needed JSON files are unpacked; nothing is
installed. Wikitext (``{{PLURAL:..}}``, ``[[links]]``, ``$1``) is removed by
:mod:`optical_lightning.prepare.clean`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from optical_lightning.data.bitext import BitextPair
from optical_lightning.prepare.clean import ui_bitext
from optical_lightning.prepare.fetch import debian_package, unpack_deb
from optical_lightning.prepare.records import SourceContext, SourceResult

NAME = "mediawiki"
LICENCE = "GPL-2.0-or-later (MediaWiki, bundled extensions and skins)"
ORIGIN = "Debian mediawiki, usr/share/mediawiki/**/i18n/<lang>.json"
CODES = ("en", "sw", "so")  # always unpacked together, so a later run for another language is cached
PATTERNS = [f"*/i18n/{c}.json" for c in CODES] + [f"*/i18n/*/{c}.json" for c in CODES]


def catalogue_pairs(en: Mapping[str, object], tgt: Mapping[str, object]) -> list[BitextPair]:
    """Pairs ``(mediawiki:<key>, English, translation)`` for every key with text in both files."""
    return [BitextPair(f"{NAME}:{key}", en[key], text) for key, text in tgt.items()
            if key != "@metadata" and isinstance(text, str) and isinstance(en.get(key), str)]


def tree_pairs(root: Path, lang: str) -> list[BitextPair]:
    """All raw pairs of ``lang`` under ``root`` (every ``i18n`` folder with an ``en.json``)."""
    pairs: list[BitextPair] = []
    for tgt_file in sorted(root.rglob(f"{lang}.json")):
        en_file = tgt_file.with_name("en.json")
        if "i18n" in tgt_file.parts and en_file.is_file():
            pairs += catalogue_pairs(json.loads(en_file.read_text("utf-8")),
                                     json.loads(tgt_file.read_text("utf-8")))
    return pairs


def load(ctx: SourceContext) -> SourceResult:
    deb = debian_package("mediawiki", ctx.cache, ctx.offline)
    root = unpack_deb(deb.path, PATTERNS)
    bitexts = [ui_bitext(NAME, lang, tree_pairs(root, lang), LICENCE, deb.origin) for lang in ctx.langs]
    return SourceResult(NAME, LICENCE, deb.origin, version=deb.version, bitexts=bitexts)
