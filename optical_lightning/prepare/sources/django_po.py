"""Django (PyPI ``django``): the Swahili ``.po`` catalogues of Django and its contrib apps.

``msgid`` is the English source string and ``msgstr`` its translation; the wheel is downloaded,
never installed, and ``django/**/locale/sw/LC_MESSAGES/*.po`` are read from it with :mod:`zipfile`.
Which entries count (no header, no fuzzy or empty ones, both plural forms) is decided in
:mod:`optical_lightning.prepare.gettext_files`. Django ships no Somali catalogue.
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

from optical_lightning.data.bitext import BitextPair
from optical_lightning.prepare.clean import ui_bitext
from optical_lightning.prepare.fetch import pypi_wheel
from optical_lightning.prepare.gettext_files import message_pairs, read_po
from optical_lightning.prepare.records import SourceContext, SourceResult, SourceSkipped

NAME = "django"
LICENCE = "BSD-3-Clause (Django)"
ORIGIN = "PyPI django wheel, django/**/locale/<lang>/LC_MESSAGES/*.po"
LANGS = ("sw",)


def po_pairs(text: str, component: str) -> list[BitextPair]:
    """Pairs ``(django:<component>:<key>, msgid, msgstr)`` of one ``.po`` file."""
    return [BitextPair(f"{NAME}:{component}:{key}", en, tgt) for key, en, tgt in message_pairs(read_po(text))]


def wheel_pairs(wheel: Path, lang: str) -> list[BitextPair]:
    """All raw pairs of ``lang`` in a Django wheel, catalogue by catalogue in path order."""
    pattern = re.compile(rf"^django/(.+)/locale/{re.escape(lang)}/LC_MESSAGES/(\w+)\.po$")
    pairs: list[BitextPair] = []
    with zipfile.ZipFile(wheel) as zf:
        for name in sorted(zf.namelist()):
            m = pattern.match(name)
            if m:
                pairs += po_pairs(zf.read(name).decode("utf-8"), f"{m.group(1)}/{m.group(2)}")
    return pairs


def load(ctx: SourceContext) -> SourceResult:
    langs = [lang for lang in ctx.langs if lang in LANGS]
    if not langs:
        raise SourceSkipped(f"Django ships no catalogue for {', '.join(ctx.langs)}")
    wheel = pypi_wheel("django", ctx.cache, ctx.offline)
    bitexts = [ui_bitext(NAME, lang, wheel_pairs(wheel.path, lang), LICENCE, wheel.origin) for lang in langs]
    return SourceResult(NAME, LICENCE, wheel.origin, version=wheel.version, bitexts=bitexts)
