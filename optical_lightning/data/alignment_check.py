"""A model-free check that the two sides of a bitext file are translations of each other.

Two signals survive translation without any model:

* **numbers** (two or more digits: years, counts, dates): in an aligned pair the target line shares
  the English line's numbers. Among the pairs whose English side has a number, ``own`` is the share
  whose target side shares one of them, and ``next``/``previous`` the share whose target side
  shares none of its own line's numbers but one of the following/preceding English line's: the
  signature of rows shifted by one. An aligned file scores ``own`` near 1 and ``next`` near 0.
* **lengths**: the log character lengths of a sentence and its translation correlate strongly
  (about 0.9 in TICO-19); between neighbouring, unrelated lines they do not (about 0).

:func:`check_document` applies both to one document at a set of offsets (target line ``i`` against
English line ``i + offset``) and decides: *aligned*; *realigned* when one constant non-zero offset is
confirmed by the numbers and by the lengths (9 of the 19 Somali TICO-19 test documents: each Somali
line translates the next English line); or *dropped* when neither holds (a shift that changes inside
the document, or one no number confirms). The check needs no model, so it also judges evaluation
sets that no encoder should be trusted on.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Literal, Protocol

from optical_lightning.data.bitext import BitextPair

_NUMBER = re.compile(r"\d{2,}")
OFFSETS = (-2, -1, 0, 1, 2)
#: a shift is undone only when this share of the numbered lines agrees at the new offset ...
MIN_AGREEMENT = 0.9
#: ... (in place, where the numbers agree best, this share suffices: translations respell some numbers)
MIN_IN_PLACE = 0.5
#: ... and the lengths correlate at least this much, and best, at that offset
MIN_LENGTH_CORRELATION = 0.5
#: rows per window when a file is only reported (long documents and files without document ids)
WINDOW = 200


class TextPair(Protocol):
    id: str
    en: str
    tgt: str


@dataclass(frozen=True)
class NumberAgreement:
    pairs: int        # rows in the file
    with_numbers: int  # rows whose English side has a number: the ones judged
    own: float
    next: float
    previous: float


def _numbers(text: str) -> set[str]:
    return set(_NUMBER.findall(text))


def number_agreement(pairs: Sequence[TextPair]) -> NumberAgreement:
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


def offset_agreement(pairs: Sequence[TextPair], offset: int) -> tuple[int, int]:
    """(agreeing, judged): target line ``i`` against the numbers of English line ``i + offset``."""
    agree = judged = 0
    for i, p in enumerate(pairs):
        j = i + offset
        if not 0 <= j < len(pairs):
            continue
        en = _numbers(pairs[j].en)
        if en:
            judged += 1
            agree += bool(en & _numbers(p.tgt))
    return agree, judged


def length_correlation(pairs: Sequence[TextPair], offset: int) -> float:
    """Pearson correlation of log lengths, target line ``i`` against English line ``i + offset``
    (NaN below 3 lines or without variance)."""
    xs, ys = [], []
    for i, p in enumerate(pairs):
        j = i + offset
        if 0 <= j < len(pairs):
            xs.append(math.log1p(len(pairs[j].en)))
            ys.append(math.log1p(len(p.tgt)))
    n = len(xs)
    if n < 3:
        return float("nan")
    mx, my = sum(xs) / n, sum(ys) / n
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys))
    sxx, syy = sum((x - mx) ** 2 for x in xs), sum((y - my) ** 2 for y in ys)
    return sxy / math.sqrt(sxx * syy) if sxx > 0 and syy > 0 else float("nan")


Decision = Literal["aligned", "realigned", "dropped", "unjudged"]


@dataclass(frozen=True)
class DocumentCheck:
    """What :func:`check_document` found in one document and decided."""

    document: str
    rows: int
    numbered: int                    # target lines judged at offset 0 (their English line has a number)
    agreement: dict[int, float]      # offset -> share of judged lines that share a number there
    length_correlation: dict[int, float]
    decision: Decision
    offset: int                      # the offset applied (0 unless realigned)
    reason: str

    def as_dict(self) -> dict:
        d = asdict(self)
        d["agreement"] = {str(k): _round(v) for k, v in self.agreement.items()}
        d["length_correlation"] = {str(k): _round(v) for k, v in self.length_correlation.items()}
        return d


def _round(x: float) -> float | None:
    return None if math.isnan(x) else round(x, 3)


def _best(values: dict[int, float]) -> int | None:
    finite = {k: v for k, v in values.items() if not math.isnan(v)}
    return max(finite, key=lambda k: (finite[k], k == 0)) if finite else None


def check_document(document: str, pairs: Sequence[TextPair]) -> DocumentCheck:
    """Decide whether ``pairs`` (one document, in order) is aligned, shifted by a constant offset
    that both signals confirm, or neither (see the module docstring)."""
    agreement, judged = {}, {}
    for o in OFFSETS:
        a, j = offset_agreement(pairs, o)
        agreement[o], judged[o] = (a / j if j else float("nan")), j
    corr = {o: length_correlation(pairs, o) for o in OFFSETS}
    by_numbers, by_length = _best(agreement), _best(corr)

    def made(decision: Decision, offset: int, reason: str) -> DocumentCheck:
        return DocumentCheck(document, len(pairs), judged[0], agreement, corr, decision, offset, reason)

    lengths_agree = lambda o: by_length == o and corr[o] >= MIN_LENGTH_CORRELATION  # noqa: E731
    if by_numbers is None:  # no line has a number: the lengths alone may keep it, never shift it
        if by_length is None:
            return made("unjudged", 0, "too short and no numbers: kept unchecked")
        if lengths_agree(0):
            return made("aligned", 0, f"no numbers; lengths correlate {corr[0]:.2f} in place")
        if corr[by_length] >= MIN_LENGTH_CORRELATION and not corr[0] >= MIN_LENGTH_CORRELATION:
            return made("dropped", 0, f"no numbers to confirm the shift the lengths suggest ({by_length:+d}, "
                                      f"{corr[by_length]:.2f} against {corr[0]:.2f} in place)")
        return made("unjudged", 0, "no numbers and no clear length signal: kept unchecked")
    if by_numbers == 0 and agreement[0] >= MIN_IN_PLACE and lengths_agree(0):
        return made("aligned", 0, f"numbers agree {agreement[0]:.2f}, lengths {corr[0]:.2f} in place")
    o = by_numbers
    if o != 0 and agreement[o] >= MIN_AGREEMENT and lengths_agree(o):
        return made("realigned", o, f"every target line belongs to English line {o:+d}: numbers agree "
                                    f"{agreement[o]:.2f} there ({agreement[0]:.2f} in place), lengths {corr[o]:.2f}")
    where = "nowhere" if by_length is None else f"at {by_length:+d} ({corr[by_length]:.2f})"
    return made("dropped", 0, f"no constant offset: numbers agree best at {o:+d} ({agreement[o]:.2f}), "
                              f"lengths {where}")


def shift(pairs: Sequence[TextPair], offset: int) -> list[tuple[str, str, str]]:
    """``(id, en, tgt)`` rows with target line ``i`` paired to English line ``i + offset`` (and that
    line's id); the lines left without a partner at either end are dropped."""
    return [(pairs[i + offset].id, pairs[i + offset].en, p.tgt) for i, p in enumerate(pairs)
            if 0 <= i + offset < len(pairs)]


def documents(pairs: Sequence[TextPair], window: int | None = None) -> dict[str, list[TextPair]]:
    """Rows grouped by document, the id up to its last ``:`` (TICO-19's ``PubMed_6:1234``; a merged
    file's ``source:...``), or one group when the ids name none; with ``window``, groups longer than
    that are cut into windows of ``window`` rows (for reporting: a local shift stands out)."""
    docs: dict[str, list[TextPair]] = {}
    named = bool(pairs) and all(":" in p.id for p in pairs)
    for p in pairs:
        docs.setdefault(p.id.rsplit(":", 1)[0] if named else "rows", []).append(p)
    if window is None:
        return docs
    cut: dict[str, list[TextPair]] = {}
    for name, doc in docs.items():
        if len(doc) <= window:
            cut[name] = doc
            continue
        for i in range(0, len(doc), window):
            cut[f"{name} rows {i + 1}-{min(i + window, len(doc))}"] = list(doc[i:i + window])
    return cut


def realign(pairs: Sequence[TextPair]) -> tuple[list[tuple[str, str, str]], list[DocumentCheck]]:
    """Every document of ``pairs`` checked: aligned and unjudged ones kept, confirmed shifts undone,
    the rest dropped. Returns the kept ``(id, en, tgt)`` rows, in order, and every document's check."""
    kept: list[tuple[str, str, str]] = []
    checks = []
    for name, doc in documents(pairs).items():
        check = check_document(name, doc)
        checks.append(check)
        if check.decision == "realigned":
            rows = shift(doc, check.offset)
            if check_document(name, [BitextPair(*r) for r in rows]).decision != "aligned":  # undoing it must fix it
                check = DocumentCheck(**{**asdict(check), "decision": "dropped",
                                         "reason": check.reason + "; still misaligned once shifted"})
                checks[-1] = check
            else:
                kept += rows
        elif check.decision != "dropped":
            kept += [(p.id, p.en, p.tgt) for p in doc]
    return kept, checks


def summary(checks: Sequence[DocumentCheck]) -> dict[str, object]:
    """Counts per decision (documents and rows) and the documents that were not aligned."""
    out: dict[str, object] = {}
    for decision in ("aligned", "realigned", "dropped", "unjudged"):
        chosen = [c for c in checks if c.decision == decision]
        out[decision] = {"documents": len(chosen), "rows": sum(c.rows for c in chosen)}
    out["not_aligned"] = [c.as_dict() for c in checks if c.decision in ("realigned", "dropped")]
    return out


def file_report(pairs: Sequence[TextPair]) -> dict[str, object]:
    """The check of a whole file, for the manifest: number agreement, length correlation in place and
    at +-1, and the documents (or windows of :data:`WINDOW` rows) that do not look aligned in place."""
    a = number_agreement(pairs)
    checks = [check_document(name, doc) for name, doc in documents(pairs, WINDOW).items()]
    flagged = [c for c in checks if c.decision in ("realigned", "dropped")]
    return {
        "pairs": a.pairs, "with_numbers": a.with_numbers,
        "own": _round(a.own), "next": _round(a.next), "previous": _round(a.previous),
        "length_correlation": {str(o): _round(length_correlation(pairs, o)) for o in (-1, 0, 1)},
        "units": len(checks), "flagged": [f"{c.document}: {c.reason}" for c in flagged],
    }
