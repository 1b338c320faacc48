"""Reading data files: UTF-8 (a byte-order mark is dropped) split into lines.

``str.splitlines`` also breaks at U+0085, U+2028, form feeds and other separators that occur
*inside* real texts (MMLU has U+0085), which would cut a JSONL object or a TSV row in two. Data
files are split at ``\\n`` only (with a trailing ``\\r`` removed for CRLF files).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from optical_lightning.utils.errors import DataError


def read_text(path: Path) -> str:
    """The UTF-8 text of ``path``; a leading byte-order mark (spreadsheet exports write one) is
    dropped, so it cannot glue itself to the first header name."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start}); re-encode it as UTF-8") from e


def read_lines(path: Path) -> list[str]:
    return split_lines(read_text(path))


def split_lines(text: str) -> list[str]:
    lines = [line.removesuffix("\r") for line in text.split("\n")]
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def jsonl_rows(path: Path, lines: list[str]) -> Iterator[tuple[int, Any]]:
    """``(line number, parsed value)`` of each non-empty JSONL line; a one-line error on bad JSON."""
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            yield lineno, json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{path} line {lineno}: invalid JSON ({e.msg}); expected one object per line") from e
