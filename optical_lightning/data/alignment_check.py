"""A model-free check that the two sides of a bitext file are translations of each other.

Numbers (two or more digits: years, counts, dates) survive translation unchanged, so in an aligned
pair the target line shares the English line's numbers. Among the pairs whose English side has a
number, ``own`` is the share whose target side shares one of them, and ``next``/``previous`` the share
whose target side shares none of its own line's numbers but one of the following/preceding English
line's: the signature of rows shifted by one. An aligned file scores ``own`` near 1 and ``next`` near 0.
The check needs no model, so it also judges evaluation sets that no encoder should be trusted on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from optical_lightning.data.bitext import BitextPair

_NUMBER = re.compile(r"\d{2,}")


@dataclass(frozen=True)
class NumberAgreement:
    pairs: int        # rows in the file
    with_numbers: int  # rows whose English side has a number: the ones judged
    own: float
    next: float
    previous: float


def _numbers(text: str) -> set[str]:
    return set(_NUMBER.findall(text))


def number_agreement(pairs: list[BitextPair]) -> NumberAgreement:
    """Share of numbered pairs whose target matches its own English line, or only a neighbour's."""
    numbers = [(_numbers(p.en), _numbers(p.tgt)) for p in pairs]
    judged = own = nxt = prev = 0
    for i, (en, tgt) in enumerate(numbers):
        if not en:
            continue
        judged += 1
        if en & tgt:
            own += 1
            continue
        nxt += i + 1 < len(numbers) and bool(numbers[i + 1][0] & tgt)
        prev += i > 0 and bool(numbers[i - 1][0] & tgt)
    share = (lambda k: k / judged) if judged else (lambda k: float("nan"))
    return NumberAgreement(len(pairs), judged, share(own), share(nxt), share(prev))
