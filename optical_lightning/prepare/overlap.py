"""Keep evaluation text out of training data.

A pair whose normalised English *or* normalised target text appears anywhere in an evaluation set
of the same language (translation sets on both sides, retrieval queries and their English
versions, UDHR sections and paragraphs) is removed from every training file - otherwise a later
retrieval or translation score could be inflated by memorisation. The number removed per file is
recorded in the manifest.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from optical_lightning.prepare.records import Bitext, Pair, RetrievalSet
from optical_lightning.prepare.text import normalize


def eval_texts(bitexts: Iterable[Bitext], retrieval: Iterable[RetrievalSet] = ()) -> set[str]:
    """Normalised texts of every evaluation pair (both sides) and retrieval query."""
    texts: set[str] = set()
    for b in bitexts:
        for p in b.pairs:
            texts.add(normalize(p.en))
            texts.add(normalize(p.tgt))
    for r in retrieval:
        texts.update(normalize(t) for _, t in (*r.queries, *r.queries_en))
        texts.update(normalize(t) for t in r.extra_texts)
    texts.discard("")
    return texts


def remove_overlap(pairs: Sequence[Pair], texts: set[str]) -> tuple[list[Pair], int]:
    """``pairs`` without those whose en or target text is in ``texts``, and how many were removed."""
    kept = [p for p in pairs if normalize(p.en) not in texts and normalize(p.tgt) not in texts]
    return kept, len(pairs) - len(kept)
