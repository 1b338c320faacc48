"""FreeDict's Swahili-English dictionary (Debian ``dict-freedict-swh-eng``): the word list of the
translate-test baseline, written to ``eval/dictionaries/sw-en.tsv`` (never training data).

The package ships the dictionary in dictd format: ``freedict-swh-eng.index`` has one line
``headword<TAB>offset<TAB>length`` per entry (numbers in dictd's base 64, most significant digit
first; ``00database*`` lines are metadata) and ``freedict-swh-eng.dict.dz`` is gzip-readable
(dictzip); an entry is ``bytes[offset:offset + length]`` of the decompressed file::

    acha /ˈatʃa/ <v>            first line: headword(s), IPA, part of speech, ``(pl: {...})``
    1.                          a numbered sense (a single sense follows an empty line instead)
    leave                       its English equivalents, comma-separated ...
    ; forsake                   ... and further groups of them
       See also: {anza}         indented: notes and cross references, left out

Each headword maps to its senses in the dictionary's order (several entries of one headword are
concatenated, duplicates dropped). Plural forms have entries of their own (``Plural of {abiria}:
passenger``: a summary of the singular entry's senses, wrapped over lines) or are only listed as
``(pl: {maabiria})`` on the singular's first line; either way they get that singular entry's
senses. The TSV has one row per headword, ``sw<TAB>en``, with the senses joined by `` | ``
(:data:`~optical_lightning.prepare.records.SENSE_SEPARATOR`) and the alternatives inside a sense
kept as written (``quit, stop doing sth``); the translate-test baseline uses the first alternative
of the first sense (:mod:`optical_lightning.evaluation.translate_test`). FreeDict has no
Somali-English dictionary, so Somali has no translate-test baseline.
"""

from __future__ import annotations

import gzip
import re
import string
from pathlib import Path

from optical_lightning.prepare.fetch import debian_package, unpack_deb
from optical_lightning.prepare.records import Dictionary, SourceContext, SourceResult, SourceSkipped

NAME = "freedict"
LICENCE = "GPL-2.0-or-later (FreeDict Swahili-English, Wójtowicz, Bański et al.)"
ORIGIN = "Debian dict-freedict-swh-eng, usr/share/dictd/freedict-swh-eng.{index,dict.dz}"
#: language -> Debian package; FreeDict has no Somali-English dictionary
PACKAGES: dict[str, str] = {"sw": "dict-freedict-swh-eng"}

_DIGITS = {c: i for i, c in enumerate(string.ascii_uppercase + string.ascii_lowercase + string.digits + "+/")}
_SENSE_NUMBER = re.compile(r"\d+\.")
_PLURAL_OF = re.compile(r"\s*Plural of \{([^}]+)\}:\s*(.*)", re.S)
_PLURALS = re.compile(r"\(pl: ([^)]*)\)")
_BRACED = re.compile(r"\{([^}]+)\}")


def dictd_number(digits: str) -> int:
    """A dictd index number: base 64 over ``A-Za-z0-9+/``, most significant digit first."""
    value = 0
    for c in digits:
        value = value * 64 + _DIGITS[c]
    return value


def _key(word: str) -> str:
    return " ".join(word.lower().split())


def entry_senses(body: str) -> list[str]:
    """The senses of one entry (everything after its first line): each the equivalents line after a
    sense number or blank line, joined with its ``; `` continuation lines; indented lines are notes."""
    senses: list[list[str]] = [[]]
    for line in body.split("\n"):
        if _SENSE_NUMBER.fullmatch(line.strip()):
            senses.append([])
        elif line.startswith(";"):
            senses[-1].append(line[1:].strip())
        elif line.strip() and not line[0].isspace():
            senses[-1].append(line.strip())
    return ["; ".join(p for p in parts if p) for parts in senses if any(parts)]


def _plural_summary(text: str) -> list[str]:
    """The senses of a plural's own entry, ``Plural of {x}: 1. a, b; c 2. d. See also: ...``."""
    text = re.split(r"\.\s*(?:See also|Synonym|\(synonym)", " ".join(text.split()), flags=re.I)[0]
    return [s.strip(" .") for s in re.split(r"(?:^|\s)\d+\.\s", text) if s.strip(" .")]


def parse_dictd(index_text: str, dict_bytes: bytes) -> dict[str, list[str]]:
    """``{headword: [sense, ...]}`` (sorted by headword) from a dictd index and the decompressed dictionary."""
    senses: dict[str, list[str]] = {}
    summaries: dict[str, list[str]] = {}  # plural form -> the senses its own ``Plural of`` entry lists
    listed: dict[str, list[str]] = {}  # plural form -> the senses of the entry whose ``(pl: ...)`` names it
    for line in index_text.split("\n"):
        fields = line.rstrip("\r").split("\t")
        if len(fields) != 3 or fields[0].startswith(("00database", "00-database")):
            continue
        start = dictd_number(fields[1])
        text = dict_bytes[start:start + dictd_number(fields[2])].decode("utf-8")
        head, (first, _, body) = _key(fields[0]), text.partition("\n")
        plural = _PLURAL_OF.match(body)
        if plural:
            summaries.setdefault(head, _plural_summary(plural.group(2)))
            continue
        known, new = senses.setdefault(head, []), entry_senses(body)
        known += [s for s in new if s not in known]
        for form in _BRACED.findall(" ".join(_PLURALS.findall(first))):
            listed.setdefault(_key(form), new)
    # a plural takes the senses of its own singular entry, not of every entry of that spelling
    # (mzungu "European" has the plural wazungu, mzungu "rarity" the plural mizungu)
    for form in [*summaries, *listed]:
        if not senses.get(form):
            senses[form] = list(summaries.get(form) or listed.get(form, []))
    return {word: s for word, s in sorted(senses.items()) if s}


def read_dictd(index: Path, dictionary: Path) -> dict[str, list[str]]:
    """:func:`parse_dictd` of a ``.index`` file and its ``.dict.dz`` (or plain ``.dict``)."""
    data = dictionary.read_bytes()
    return parse_dictd(index.read_text(encoding="utf-8"), gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data)


def load(ctx: SourceContext) -> SourceResult:
    langs = [lang for lang in ctx.langs if lang in PACKAGES]
    if not langs:
        raise SourceSkipped(f"FreeDict has no dictionary from {', '.join(ctx.langs)} to English")
    dictionaries = []
    for lang in langs:
        deb = debian_package(PACKAGES[lang], ctx.cache, ctx.offline)
        stem = PACKAGES[lang].removeprefix("dict-")
        folder = unpack_deb(deb.path, [f"usr/share/dictd/{stem}.*"]) / "usr" / "share" / "dictd"
        index, dz = folder / f"{stem}.index", folder / f"{stem}.dict.dz"
        if not index.is_file() or not dz.is_file():
            raise SourceSkipped(f"{deb.path.name} lacks usr/share/dictd/{stem}.index or .dict.dz")
        dictionaries.append(Dictionary(lang, read_dictd(index, dz), LICENCE, deb.origin))
    return SourceResult(NAME, LICENCE, deb.origin, version=deb.version, dictionaries=dictionaries)
