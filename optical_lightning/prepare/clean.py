"""Turn UI message strings (gettext, MediaWiki, ICU/Vue, CLDR) into plain sentence pairs.

UI catalogues are human translations, but they are full of machinery that an encoder should not
learn to align: ``$1``, ``{{PLURAL:$1|page|pages}}``, ``%(name)s``/``%1$s``, ICU
``{n, plural, one {..} other {..}}``, ``{name}``, HTML tags and entities, wikitext links and
``'''bold'''``, ``&`` accelerators. Both sides are cleaned by the *same* rules so that what is
left stays a translation pair:

* plural/gender/select constructs keep their last (``other``) form, on both sides;
* placeholders, markup and templates are removed; link labels and tag contents are kept;
* brackets and quotes left empty by a removed placeholder are removed; whitespace is collapsed
  (so no tab or newline survives).

:func:`drop_reason` then rejects pairs that became empty, identical on both sides (untranslated)
or contain nothing but placeholders, URLs and numbers.
"""

from __future__ import annotations

import html
import re
from collections import Counter
from collections.abc import Iterable

from optical_lightning.data.bitext import BitextPair
from optical_lightning.prepare.records import Bitext, BitextRole
from optical_lightning.prepare.text import collapse, normalize

_WIKILINK_LABEL = re.compile(r"\[\[(?:[^\[\]{}|]*\|)+([^\[\]{}|]*)\]\]")
_WIKILINK = re.compile(r"\[\[([^\[\]|]*)\]\]")
_EXTLINK = re.compile(r"\[(?:(?:https?:|ftp:)?//[^\s\]]+|\$\d+)?[ \t]+([^\[\]]+)\]")
_BARE_EXTLINK = re.compile(r"\[(?:https?:|ftp:)?//[^\s\]]+\]")
_TEMPLATE = re.compile(r"\{\{([^{}]*)\}\}")
_EXPLICIT_FORM = re.compile(r"^\s*\d+\s*=")
_ACCELERATOR = re.compile(r"&(?=\w)(?!#?\w+;)")
_COMMENT = re.compile(r"<!--.*?-->", re.S)
_BLOCK_TAG = re.compile(r"</?(?:br|p|div|li|ul|ol|tr|td|th|table|h[1-6]|hr)\b[^<>]*>", re.I)
_TAG = re.compile(r"</?[A-Za-z][^<>]*>")
_PRINTF = re.compile(r"%%|%(?:\(\w+\)|\d+\$)?[-+#0]*(?:\d+|\*)?(?:\.\d+)?(?:l{1,2}|h)?[sdifuxXeEgGcr]")
_DOLLAR = re.compile(r"\$ ?\d+|\$[A-Z][A-Z_]+\b")
_WIKI_EMPHASIS = re.compile(r"'{2,}")
_MAGIC_WORD = re.compile(r"__[A-Z]+__")
_EMPTY_PAIR = re.compile(r"\(\s*\)|\[\s*\]|\"\s*\"|“\s*”|„\s*“|«\s*»|‘\s*’|”\s*”")
_SPACE_BEFORE = re.compile(r"\s+([,.;:!?%)\]»”])")
_SPACE_AFTER = re.compile(r"([(\[«“])\s+")
_LEADING = re.compile(r"^[\s,;:|·•–—-]+(?=\S)")
_URL = re.compile(r"(?:https?://|ftp://|www\.)\S+|\S+@\S+\.\w+")
#: what cleaning cannot turn into prose: TeX (``\frac``, a ``$`` left from ``$0.75$``), wikitext
#: tables and headings, broken tags
_MARKUP = re.compile(r"\\|\$(?![A-Za-z_])|\|-|\{\||\|\}|==|<[A-Za-z/]")
_ICU_BRANCHING = frozenset({"plural", "select", "selectordinal"})


def clean_ui_text(text: str) -> str:
    """Strip placeholders and markup from one UI string (see the module docstring)."""
    s = _WIKILINK_LABEL.sub(r"\1", text)
    s = _resolve_templates(s)
    s = _WIKILINK_LABEL.sub(r"\1", s)
    s = _WIKILINK.sub(r"\1", s)
    s = _EXTLINK.sub(r"\1", s)
    s = _BARE_EXTLINK.sub("", s)
    s = resolve_icu(s)
    s = _ACCELERATOR.sub("", s)
    s = _COMMENT.sub(" ", s)
    s = _BLOCK_TAG.sub(" ", s)
    s = _TAG.sub("", s)
    s = html.unescape(s)
    s = _BLOCK_TAG.sub(" ", s)
    s = _TAG.sub("", s)
    s = _PRINTF.sub(lambda m: "%" if m.group(0) == "%%" else "", s)
    s = _DOLLAR.sub("", s)
    s = _WIKI_EMPHASIS.sub("", s)
    s = _MAGIC_WORD.sub("", s)
    s = collapse(s)
    for _ in range(3):  # "( "$1" )" empties in two steps
        s = collapse(_EMPTY_PAIR.sub("", s))
    s = _SPACE_BEFORE.sub(r"\1", s)
    s = _SPACE_AFTER.sub(r"\1", s)
    s = _LEADING.sub("", s)
    return collapse(s)


def _resolve_templates(s: str) -> str:
    """MediaWiki ``{{...}}``, innermost first: PLURAL/GENDER keep their last form, GRAMMAR and
    formatting functions keep their text argument, everything else ({{SITENAME}}, {{int:..}}) goes."""

    def one(m: re.Match[str]) -> str:
        name, _, args = m.group(1).partition(":")
        key = name.strip().upper()
        parts = args.split("|")
        if key in {"PLURAL", "GENDER"}:
            forms = [f for f in parts[1:] if not _EXPLICIT_FORM.match(f)]
            return forms[-1] if forms else ""
        if key == "GRAMMAR":
            return parts[-1]
        if key in {"FORMATNUM", "UCFIRST", "LCFIRST", "UC", "LC", "BIDI"}:
            return parts[0]
        return ""

    previous = None
    while previous != s:
        previous, s = s, _TEMPLATE.sub(one, s)
    return s


def resolve_icu(s: str) -> str:
    """ICU MessageFormat / Python ``str.format`` braces: ``{x, plural|select, ... other {..}}``
    keeps its ``other`` (else last) branch, any other ``{...}`` argument is removed."""
    out: list[str] = []
    i = 0
    while i < len(s):
        c = s[i]
        if c == "{":
            j = _matching_brace(s, i)
            if j < 0:
                i += 1
                continue
            out.append(_icu_argument(s[i + 1 : j]))
            i = j + 1
        elif c == "}":
            i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _matching_brace(s: str, i: int) -> int:
    depth = 0
    for j in range(i, len(s)):
        if s[j] == "{":
            depth += 1
        elif s[j] == "}":
            depth -= 1
            if depth == 0:
                return j
    return -1


def _icu_argument(body: str) -> str:
    parts = body.split(",", 2)
    if len(parts) < 3 or "{" in parts[0] + parts[1] or parts[1].strip() not in _ICU_BRANCHING:
        return ""
    branches = _icu_branches(parts[2])
    if not branches:
        return ""
    chosen = branches.get("other", list(branches.values())[-1])
    text = resolve_icu(chosen)
    return text.replace("#", "") if parts[1].strip() != "select" else text


def _icu_branches(s: str) -> dict[str, str]:
    branches: dict[str, str] = {}
    i = 0
    while i < len(s):
        while i < len(s) and s[i].isspace():
            i += 1
        start = i
        while i < len(s) and not s[i].isspace() and s[i] != "{":
            i += 1
        selector = s[start:i]
        while i < len(s) and s[i].isspace():
            i += 1
        if i >= len(s) or s[i] != "{":
            if not selector:
                break
            continue  # e.g. "offset:1"
        j = _matching_brace(s, i)
        if j < 0:
            break
        branches[selector] = s[i + 1 : j]
        i = j + 1
    return branches


def has_text(s: str) -> bool:
    """Whether ``s`` holds a letter outside URLs and e-mail addresses (not only numbers/symbols)."""
    return any(ch.isalpha() for ch in _URL.sub("", s))


def drop_reason(en: str, tgt: str) -> str | None:
    """Why a cleaned pair is useless for training, or ``None`` to keep it."""
    if not en or not tgt:
        return "empty"
    if not has_text(en) or not has_text(tgt):
        return "no_text"
    if normalize(en) == normalize(tgt):
        return "untranslated"
    return None


def has_markup(s: str) -> bool:
    """Whether cleaning left markup it cannot resolve (TeX, wikitext tables/headings, broken tags)."""
    return _MARKUP.search(s) is not None


def clean_ui_pairs(pairs: Iterable[BitextPair]) -> tuple[list[BitextPair], Counter[str]]:
    """Clean both sides of every pair, drop useless ones and exact duplicates within the source.

    Returns the kept pairs (first occurrence wins) and a count per drop reason.
    """
    markup: Counter[str] = Counter()
    cleaned = []
    for p in pairs:
        en, tgt = clean_ui_text(p.en), clean_ui_text(p.tgt)
        if has_markup(en) or has_markup(tgt):
            markup["markup"] += 1
        else:
            cleaned.append(BitextPair(p.id, en, tgt, p.source))
    kept, dropped = filter_pairs(cleaned)
    return kept, dropped + markup


def filter_pairs(pairs: Iterable[BitextPair]) -> tuple[list[BitextPair], Counter[str]]:
    """Collapse whitespace, then drop empty/no-text/untranslated pairs and in-source duplicates
    (same normalised en *and* target). Ids are made unique by a ``#n`` suffix if needed."""
    kept: list[BitextPair] = []
    dropped: Counter[str] = Counter()
    seen: set[tuple[str, str]] = set()
    ids: Counter[str] = Counter()
    for p in pairs:
        en, tgt = collapse(p.en), collapse(p.tgt)
        reason = drop_reason(en, tgt)
        key = (normalize(en), normalize(tgt))
        if reason is None and key in seen:
            reason = "duplicate"
        if reason is not None:
            dropped[reason] += 1
            continue
        seen.add(key)
        ids[p.id] += 1
        pid = p.id if ids[p.id] == 1 else f"{p.id}#{ids[p.id]}"
        kept.append(BitextPair(collapse(pid), en, tgt, p.source))
    return kept, dropped


def ui_bitext(name: str, lang: str, raw: list[BitextPair], licence: str, origin: str,
              role: BitextRole = "train") -> Bitext:
    """A :class:`Bitext` of UI strings after :func:`clean_ui_pairs`, remembering the raw count and
    why pairs were dropped (both go into the manifest)."""
    pairs, dropped = clean_ui_pairs(raw)
    return Bitext(name, lang, role, pairs, licence, origin, raw=len(raw), dropped=dict(dropped))
