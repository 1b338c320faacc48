"""Reading and cleaning sentence-aligned bitext (English <-> one other language).

Two formats are accepted:

* **TSV** (``.tsv``/``.txt``): UTF-8, one header line naming the columns, tab-separated, *no
  quoting* (texts contain ``"``; csv quoting would silently merge rows). The header must contain
  ``en`` and the language code (``sw``, ``so``, ...); an ``id`` column is optional.
* **JSONL** (``.jsonl``/``.json``): one object per line with the keys ``en`` and the language
  code (and optionally ``id``).

Malformed input raises :class:`~optical_lightning.utils.errors.DataError` naming the file, the line and
what was expected; it is never skipped silently. Columns swapped under a correct header (the target
language under ``en``) would train the student in reverse, so a cheap English score of both sides
warns about them, with counts.
"""

from __future__ import annotations

import logging
import random
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from optical_lightning.utils.errors import DataError
from optical_lightning.utils.textfiles import jsonl_rows, read_lines

log = logging.getLogger(__name__)

# English function words that are not words of Swahili or Somali (Somali "in" and "a" are left out): a text
# holding one reads as English. Enough to tell which column of a file is English, not a language identifier.
ENGLISH_MARKERS = frozenset(
    "the of and to is are was were for with that this from by be have has not it its you your which will "
    "can what how there their they should would".split())
SWAP_CHECK_ROWS = 5000  # the first rows are enough to see a swap
SWAP_WARNING_SHARE = 0.2


@dataclass(frozen=True)
class BitextPair:
    """One translation pair: ``en`` is read by the teacher, ``tgt`` by the student. ``source`` says where it
    came from: the set ``make data`` merged it from, and, once read back, the file (``train.tsv:kolibri``)."""

    id: str
    en: str
    tgt: str
    source: str = ""


@dataclass
class BitextStats:
    """What happened to the rows of one or more files; it is saved in ``results.json``."""

    read: int = 0
    empty: int = 0
    duplicates: int = 0
    too_short: int = 0
    too_long: int = 0
    kept: int = 0
    identical: int = 0  # kept pairs whose two sides are the same text (normalised)
    per_source: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


BITEXT_SUFFIXES = (".tsv", ".txt", ".jsonl", ".json")


def missing_bitext(path: Path, lang: str) -> DataError:
    """Why ``path`` cannot be read as bitext, and what to give instead."""
    fix = f"point data.train=PATH at a TSV with columns 'id, en, {lang}'"
    if path.is_dir():
        files = sorted(p.name for p in path.iterdir() if p.suffix.lower() in BITEXT_SUFFIXES)[:5]
        inside = f" (it holds {', '.join(files)})" if files else ""
        return DataError(f"{path} is a folder, not a bitext file{inside}; name a TSV or JSONL file: {fix}")
    # `make data` writes data/bitext/<lang>/<file>: say which languages it built
    root = path.parent.parent
    built = sorted(p.parent.name for p in root.glob(f"*/{path.name}")) if path.parent.name == lang and root.is_dir() else []
    if built:
        return DataError(f"no {lang} bitext: {path} does not exist, and `make data` builds {path.name} only for "
                         f"{', '.join(built)}; {fix}")
    return DataError(f"bitext file not found: {path} - build it with `make data`, or {fix}")


def read_bitext(path: str | Path, lang: str) -> list[BitextPair]:
    """Read every row of a bitext file (no cleaning); raise :class:`DataError` on malformed input."""
    path = Path(path)
    if not path.is_file():
        raise missing_bitext(path, lang)
    suffix = path.suffix.lower()
    lines = read_lines(path)
    pairs = _read_jsonl(path, lines, lang) if suffix in {".jsonl", ".json"} else _read_tsv(path, lines, lang)
    warn_if_swapped(pairs, path, lang)
    return pairs


def reads_as_english(text: str) -> bool:
    return any(word in ENGLISH_MARKERS for word in re.findall(r"\w+", text.casefold()))


def swapped_rows(pairs: Sequence[BitextPair]) -> tuple[int, int]:
    """(rows whose target side reads as English and whose English side does not, the reverse)."""
    target_english = english_english = 0
    for p in pairs[:SWAP_CHECK_ROWS]:
        en, tgt = reads_as_english(p.en), reads_as_english(p.tgt)
        target_english += tgt and not en
        english_english += en and not tgt
    return target_english, english_english


def warn_if_swapped(pairs: Sequence[BitextPair], path: Path, lang: str) -> None:
    """Warn, with counts, when the ``lang`` column reads as English more often than the ``en`` column."""
    reverse, forward = swapped_rows(pairs)
    checked = min(len(pairs), SWAP_CHECK_ROWS)
    if reverse > forward and reverse >= max(5, SWAP_WARNING_SHARE * checked):
        log.warning("%s: the '%s' column reads as English and the 'en' column does not in %d of %d rows (the "
                    "reverse in %d); are the columns swapped? The teacher reads 'en', the student '%s'",
                    path, lang, reverse, checked, forward, lang)


def _read_tsv(path: Path, lines: list[str], lang: str) -> list[BitextPair]:
    if not any(line.strip() for line in lines):
        raise DataError(f"{path}: empty file; expected a header line 'id<TAB>en<TAB>{lang}' and rows")
    header = [h.strip() for h in lines[0].split("\t")]
    missing = [c for c in ("en", lang) if c not in header]
    if missing:
        raise DataError(
            f"{path} line 1: header {header} lacks column(s) {missing}; expected tab-separated "
            f"'id, en, {lang}' (is lang={lang} the right language for this file?)"
        )
    i_en, i_tgt = header.index("en"), header.index(lang)
    i_id = header.index("id") if "id" in header else None
    i_src = header.index("source") if "source" in header else None  # `make data` records each pair's origin
    pairs = []
    for lineno, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        cols = line.split("\t")
        if len(cols) != len(header):
            raise DataError(
                f"{path} line {lineno}: expected {len(header)} tab-separated fields "
                f"({', '.join(header)}), found {len(cols)}"
            )
        row_id = cols[i_id] if i_id is not None else f"{path.stem}:{lineno}"
        source = f"{path.name}:{cols[i_src]}" if i_src is not None else path.name
        pairs.append(BitextPair(row_id, cols[i_en], cols[i_tgt], source))
    if not pairs:
        raise DataError(f"{path}: a header and no rows; add tab-separated rows 'id, en, {lang}' below it")
    return pairs


def _read_jsonl(path: Path, lines: list[str], lang: str) -> list[BitextPair]:
    pairs = []
    for lineno, obj in jsonl_rows(path, lines):
        if not isinstance(obj, dict) or not all(isinstance(obj.get(k), str) for k in ("en", lang)):
            raise DataError(f"{path} line {lineno}: expected an object with string fields 'en' and '{lang}'")
        pairs.append(BitextPair(str(obj.get("id", f"{path.stem}:{lineno}")), obj["en"], obj[lang], path.name))
    if not pairs:
        raise DataError(f"{path}: no rows; expected one JSON object per line with string fields 'en' and '{lang}'")
    return pairs


def normalize_text(text: str) -> str:
    """The key under which two texts count as the same (NFKC, case-folded, single spaces)."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def clean_pairs(
    pairs: Iterable[BitextPair],
    *,
    min_chars: int = 1,
    max_chars: int = 1000,
    dedup: bool = True,
    stats: BitextStats | None = None,
) -> list[BitextPair]:
    """Drop empty rows, exact duplicates (after :func:`normalize_text`) and rows out of length range.

    Whitespace is collapsed in the kept texts. Counts of every drop reason go into ``stats``.
    """
    stats = stats if stats is not None else BitextStats()
    seen: set[tuple[str, str]] = set()
    kept = []
    for p in pairs:
        stats.read += 1
        en, tgt = " ".join(p.en.split()), " ".join(p.tgt.split())
        if not en or not tgt:
            stats.empty += 1
            continue
        if min(len(en), len(tgt)) < min_chars:
            stats.too_short += 1
            continue
        if max(len(en), len(tgt)) > max_chars:
            stats.too_long += 1
            continue
        if dedup:
            key = (normalize_text(en), normalize_text(tgt))
            if key in seen:
                stats.duplicates += 1
                continue
            seen.add(key)
        kept.append(BitextPair(p.id, en, tgt, p.source))
        stats.identical += normalize_text(en) == normalize_text(tgt)
        stats.per_source[p.source] = stats.per_source.get(p.source, 0) + 1
    stats.kept = len(kept)
    return kept


def split_pairs(
    pairs: Sequence[BitextPair], val_size: float | int, seed: int
) -> tuple[list[BitextPair], list[BitextPair]]:
    """Deterministic train/validation split: a seeded shuffle, then the first ``val_size`` rows.

    ``val_size`` is a fraction in [0, 1) or an absolute count. At least one training pair remains.
    """
    n = len(pairs)
    if isinstance(val_size, float) and not 0.0 <= val_size < 1.0:
        raise DataError(f"data.val_size={val_size}: a fraction must lie in [0, 1)")
    n_val = int(round(val_size * n)) if isinstance(val_size, float) else int(val_size)
    n_val = max(0, min(n_val, n - 1))
    order = list(range(n))
    random.Random(seed).shuffle(order)
    val = [pairs[i] for i in sorted(order[:n_val])]
    train = [pairs[i] for i in order[n_val:]]
    return train, val
