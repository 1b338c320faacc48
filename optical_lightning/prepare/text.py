"""Text keys shared by de-duplication and the evaluation-overlap check.

:func:`normalize` must agree with :func:`optical_lightning.data.bitext.normalize_text` (a test
checks it); it is repeated here so that preparing data does not import torch and Lightning.
"""

from __future__ import annotations

import unicodedata


def normalize(text: str) -> str:
    """The key under which two texts count as the same (NFKC, case-folded, single spaces)."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def collapse(text: str) -> str:
    """Whitespace (tabs, newlines, no-break spaces) collapsed to single spaces, ends stripped."""
    return " ".join(text.split())
