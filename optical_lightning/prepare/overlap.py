"""Keep evaluation text out of training data.

A pair whose normalised English *or* normalised target text appears anywhere in an evaluation set
of the same language (translation sets on both sides, retrieval queries and their English
versions, UDHR sections and paragraphs) or in a multiple-choice set of any language (AfriMMLU's
questions and choices, Swahili and English) is removed from every training file - otherwise a
later score could be inflated by memorisation. The number removed per file is recorded in the
manifest. The held-out AfriQA questions are an evaluation set like any other, so no training file
keeps one of them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from optical_lightning.data.bitext import BitextPair
from optical_lightning.prepare.records import Bitext, MCQASet, RetrievalFolder
from optical_lightning.prepare.text import normalize


def eval_texts(bitexts: Iterable[Bitext], retrieval: Iterable[RetrievalFolder] = (),
               mcqa: Iterable[MCQASet] = ()) -> set[str]:
    """Normalised texts of every evaluation pair (both sides), retrieval query and multiple-choice
    question and choice."""
    texts: set[str] = set()
    for b in bitexts:
        for p in b.pairs:
            texts.add(normalize(p.en))
            texts.add(normalize(p.tgt))
    for r in retrieval:
        texts.update(normalize(t) for _, t in (*r.queries, *r.queries_en))
        texts.update(normalize(t) for t in r.extra_texts)
    for m in mcqa:
        for row in m.rows:
            texts.update(normalize(row[k]) for k in ("question", "option_a", "option_b", "option_c", "option_d"))
    texts.discard("")
    return texts


def remove_overlap(pairs: Sequence[BitextPair], texts: set[str]) -> tuple[list[BitextPair], int]:
    """``pairs`` without those whose en or target text is in ``texts``, and how many were removed."""
    kept = [p for p in pairs if normalize(p.en) not in texts and normalize(p.tgt) not in texts]
    return kept, len(pairs) - len(kept)
