"""Line splitting for data files.

``str.splitlines`` also breaks at U+0085, U+2028, form feeds and other separators that occur
*inside* real texts (MMLU has U+0085), which would cut a JSONL object or a TSV row in two. Data
files are split at ``\\n`` only (with a trailing ``\\r`` removed for CRLF files).
"""

from __future__ import annotations


def split_lines(text: str) -> list[str]:
    lines = [line.removesuffix("\r") for line in text.split("\n")]
    if lines and lines[-1] == "":
        lines.pop()
    return lines
