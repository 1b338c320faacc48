"""WordPress (Debian ``wordpress-l10n``): the Swahili core translation ``sw.mo``.

A compiled gettext catalogue (``msgid`` = English): it is read with the small ``.mo`` reader in
:mod:`optical_lightning.prepare.gettext_files`, so neither WordPress nor gettext tools are needed.
The ``.deb`` is downloaded with ``apt-get download`` and only the ``.mo`` files of the wanted
languages are unpacked. Debian ships no Somali WordPress translation.
"""

from __future__ import annotations

import re

from optical_lightning.data.bitext import BitextPair
from optical_lightning.prepare.clean import ui_bitext
from optical_lightning.prepare.fetch import debian_package, unpack_deb
from optical_lightning.prepare.gettext_files import message_pairs, parse_mo
from optical_lightning.prepare.records import SourceContext, SourceResult, SourceSkipped

NAME = "wordpress"
LICENCE = "GPL-2.0-or-later (WordPress translations)"
ORIGIN = "Debian wordpress-l10n, usr/share/wordpress/wp-content/languages/<lang>.mo"
LANGS = ("sw",)
PATTERNS = [f"*/wp-content/languages/{c}.mo" for c in ("sw", "so")]


_PIPE_CONTEXT = re.compile(r"^([^|]*\S)\|\S[^|]*$")


def strip_pipe_context(text: str) -> str:
    """Old WordPress ``_c("Approved|Right Now")`` strings carry their context after a ``|``
    (no spaces around it); translators often copied it. Keep the part before the pipe."""
    m = _PIPE_CONTEXT.match(text)
    return m.group(1) if m else text


def mo_pairs(data: bytes) -> list[BitextPair]:
    """Pairs ``(wordpress:<key>, msgid, msgstr)`` of one compiled catalogue."""
    return [BitextPair(f"{NAME}:{key}", strip_pipe_context(en), strip_pipe_context(tgt))
            for key, en, tgt in message_pairs(parse_mo(data))]


def load(ctx: SourceContext) -> SourceResult:
    langs = [lang for lang in ctx.langs if lang in LANGS]
    if not langs:
        raise SourceSkipped(f"wordpress-l10n ships no catalogue for {', '.join(ctx.langs)}")
    deb = debian_package("wordpress-l10n", ctx.cache, ctx.offline)
    root = unpack_deb(deb.path, PATTERNS)
    bitexts = []
    for lang in langs:
        files = sorted(root.rglob(f"wp-content/languages/{lang}.mo"))
        if not files:
            raise SourceSkipped(f"{deb.path.name} has no wp-content/languages/{lang}.mo")
        bitexts.append(ui_bitext(NAME, lang, mo_pairs(files[0].read_bytes()), LICENCE, deb.origin))
    return SourceResult(NAME, LICENCE, deb.origin, version=deb.version, bitexts=bitexts)
