"""Tab-separated files as this project reads them: UTF-8, one header line, no quoting.

Texts contain ``"`` so csv quoting is never used; instead every field is checked to hold no tab
or line break (including the Unicode ones ``str.splitlines`` honours) before it is written, and each file is written atomically (temporary
file + rename) so a crash never leaves half a file behind.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from optical_lightning.data.bitext import BitextPair
from optical_lightning.utils.atomic import atomic_write_text
from optical_lightning.utils.errors import DataError

#: tab plus everything ``str.splitlines`` breaks a line at (the project's readers use it).
_FORBIDDEN = ("\t", "\n", "\r", "\v", "\f", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029")


def format_tsv(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """The text of a TSV file; raises ``ValueError`` on a field holding a tab or line break."""
    lines = ["\t".join(header)]
    for row in rows:
        fields = [str(f) for f in row]
        if len(fields) != len(header):
            raise ValueError(f"row {fields[:1]} has {len(fields)} fields, header has {len(header)}")
        for f in fields:
            if any(c in f for c in _FORBIDDEN):
                raise ValueError(f"field {f[:60]!r} holds a tab or newline")
        lines.append("\t".join(fields))
    return "\n".join(lines) + "\n"


def write_tsv(path: Path, header: Sequence[str], rows: Sequence[Sequence[object]]) -> int:
    """Write ``rows`` under ``header`` atomically; return the number of rows."""
    atomic_write_text(path, format_tsv(header, rows))
    return len(rows)


def write_pairs(path: Path, lang: str, pairs: Sequence[BitextPair], with_source: bool = False) -> int:
    """A bitext file with columns ``id, en, <lang>`` (and ``source``)."""
    header = ["id", "en", lang, *(["source"] if with_source else [])]
    rows = [(p.id, p.en, p.tgt, *([p.source] if with_source else [])) for p in pairs]
    return write_tsv(path, header, rows)


def read_tsv(path: Path, columns: Sequence[str]) -> list[tuple[str, ...]]:
    """Rows of ``path`` restricted to ``columns`` (found by header name; extra columns allowed).

    Raises :class:`DataError` naming the file and line for a missing column or a short row.
    """
    lines = [ln.removesuffix("\r") for ln in path.read_text(encoding="utf-8").split("\n")]
    if not lines:
        raise DataError(f"{path}: empty file; expected a header with columns {', '.join(columns)}")
    header = [h.strip() for h in lines[0].split("\t")]
    missing = [c for c in columns if c not in header]
    if missing:
        raise DataError(f"{path} line 1: header {header} lacks column(s) {missing}")
    index = [header.index(c) for c in columns]
    rows = []
    for lineno, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != len(header):
            raise DataError(f"{path} line {lineno}: expected {len(header)} tab-separated fields, found {len(fields)}")
        rows.append(tuple(fields[i] for i in index))
    return rows
