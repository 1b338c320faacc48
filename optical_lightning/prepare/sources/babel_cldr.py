"""CLDR display names (PyPI ``babel``): names of languages, territories, scripts, variants and
currencies in English and in Swahili/Somali, aligned by their CLDR code.

Short, but human-curated and available for Somali too. Babel is *not* a dependency: if it is not
importable, its wheel is downloaded, unpacked into the cache and imported from a temporary
``sys.path`` entry (its locale data are files next to the module, so a zip import would not do).
"""

from __future__ import annotations

import contextlib
import importlib
import sys
import zipfile
from collections.abc import Iterator, Mapping
from types import ModuleType

from optical_lightning.data.bitext import BitextPair
from optical_lightning.prepare.clean import ui_bitext
from optical_lightning.prepare.fetch import pypi_wheel
from optical_lightning.prepare.records import SourceContext, SourceResult
from optical_lightning.utils.atomic import atomic_dir

NAME = "babel"
LICENCE = "Unicode-3.0 (CLDR data, shipped by Babel under BSD-3-Clause)"
ORIGIN = "PyPI babel: babel.Locale(<lang>).{languages,territories,scripts,variants,currencies}"
CATEGORIES = ("languages", "territories", "scripts", "variants", "currencies")

Names = Mapping[str, Mapping[str, str]]


def display_name_pairs(en: Names, tgt: Names) -> list[BitextPair]:
    """Pairs ``(babel:<category>:<code>, English name, translated name)`` for codes named in both."""
    return [BitextPair(f"{NAME}:{cat}:{code}", en[cat][code], name)
            for cat in CATEGORIES for code, name in tgt.get(cat, {}).items() if code in en.get(cat, {})]


def locale_names(babel: ModuleType, locale: str) -> dict[str, dict[str, str]]:
    """``{category: {code: display name}}`` for one locale."""
    loc = babel.Locale.parse(locale)
    return {cat: {str(k): str(v) for k, v in getattr(loc, cat).items()} for cat in CATEGORIES}


@contextlib.contextmanager
def import_babel(ctx: SourceContext) -> Iterator[tuple[ModuleType, str]]:
    """Yield the ``babel`` module and its origin: the installed one, else one from the cached wheel."""
    try:
        import babel
    except ImportError:
        pass
    else:
        yield babel, f"installed babel {babel.__version__}"
        return
    wheel = pypi_wheel("babel", ctx.cache, ctx.offline)
    unpacked = wheel.path.with_name(wheel.path.name + ".unpacked")
    if not (unpacked / "babel" / "__init__.py").is_file():
        with atomic_dir(unpacked) as tmp, zipfile.ZipFile(wheel.path) as zf:
            zf.extractall(tmp)
    sys.path.insert(0, str(unpacked))
    try:
        yield importlib.import_module("babel"), wheel.origin
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(str(unpacked))


def load(ctx: SourceContext) -> SourceResult:
    with import_babel(ctx) as (babel, origin):
        en = locale_names(babel, "en")
        bitexts = []
        for lang in ctx.langs:
            raw = display_name_pairs(en, locale_names(babel, lang))
            bitexts.append(ui_bitext(NAME, lang, raw, LICENCE, origin))
        version = str(babel.__version__)
    return SourceResult(NAME, LICENCE, origin, version=version, bitexts=bitexts)

