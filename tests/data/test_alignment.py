"""The model-free alignment check and the Somali TICO-19 repair, on three real test documents."""

from __future__ import annotations

import re

import pytest
from conftest import FIXTURES

from optical_lightning.data.alignment_check import check_document, documents, file_report, realign, shift
from optical_lightning.data.bitext import read_bitext

DOCS = FIXTURES / "tico19.test.docs3.en-so.tsv"  # Wikinews_4 (aligned), Wikinews_6, wiki_20 (shifted by one)


@pytest.fixture(scope="module")
def pairs():
    return read_bitext(DOCS, "so")


def test_each_real_document_gets_the_decision_its_rows_show(pairs):
    checks = {c.document: c for c in (check_document(n, d) for n, d in documents(pairs).items())}
    assert {n: (c.decision, c.offset) for n, c in checks.items()} == {
        "Wikinews_4": ("aligned", 0), "Wikinews_6": ("dropped", 0), "wiki_20": ("realigned", 1)}
    shifted = checks["wiki_20"]
    assert shifted.agreement[1] == 1.0 and shifted.agreement[0] < 0.5 and shifted.length_correlation[1] > 0.9


def test_realigning_pairs_each_somali_line_with_the_english_line_it_translates(pairs):
    doc = documents(pairs)["wiki_20"]
    # in the file, the Somali side of row 2 carries row 3's numbers: it translates the next English line
    numbers = lambda text: set(re.findall(r"\d{2,}", text))  # noqa: E731
    rows = shift(doc, 1)
    assert len(rows) == len(doc) - 1 and rows[0][0] == doc[1].id and rows[0][1] == doc[1].en and rows[0][2] == doc[0].tgt
    numbered = [(en, so) for _, en, so in rows if numbers(en)]
    assert numbered and all(numbers(en) & numbers(so) for en, so in numbered)
    kept, checks = realign(pairs)
    by_doc = {c.document: c.decision for c in checks}
    assert by_doc == {"Wikinews_4": "aligned", "Wikinews_6": "dropped", "wiki_20": "realigned"}
    assert len(kept) == 24 + 23  # Wikinews_4 whole, wiki_20 less its unpaired end lines, Wikinews_6 gone
    assert not any(i.startswith("Wikinews_6:") for i, _, _ in kept)
    again = [c.decision for c in (check_document(n, d) for n, d in documents(
        [type(pairs[0])(i, en, so) for i, en, so in kept]).items())]
    assert again == ["aligned", "aligned"]  # checked again, the repaired file is aligned throughout


def test_the_file_report_flags_what_it_would_not_trust(pairs):
    report = file_report(pairs)
    assert report["pairs"] == 61 and report["units"] == 3
    assert sorted(f.split(":")[0] for f in report["flagged"]) == ["Wikinews_6", "wiki_20"]


def test_an_aligned_real_file_is_left_alone():
    sw = read_bitext(FIXTURES / "tico19.dev200.en-sw.tsv", "sw")
    kept, checks = realign(sw)
    assert len(kept) == len(sw) and {c.decision for c in checks} <= {"aligned", "unjudged"}
