"""The cross-source union behind ``train.tsv``.

Sources overlap (Kolibri and Django both translate "Save"; NTREX and MAFAND share news phrasing),
and a pair seen twice would be weighted twice in training. Pairs are keyed by their normalised
English *and* target text (NFKC, case-folded, single spaces); the first source in build order wins
and each kept pair records it in ``source``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from optical_lightning.data.bitext import BitextPair
from optical_lightning.prepare.records import Bitext
from optical_lightning.prepare.text import normalize


def union(bitexts: Iterable[Bitext]) -> tuple[list[BitextPair], Counter[str], int]:
    """``(kept pairs with their source, kept count per source, number of duplicates removed)``."""
    seen: set[tuple[str, str]] = set()
    kept: list[BitextPair] = []
    per_source: Counter[str] = Counter()
    duplicates = 0
    for b in bitexts:
        for p in b.pairs:
            key = (normalize(p.en), normalize(p.tgt))
            if key in seen:
                duplicates += 1
                continue
            seen.add(key)
            kept.append(BitextPair(p.id, p.en, p.tgt, b.name))
            per_source[b.name] += 1
    return kept, per_source, duplicates
