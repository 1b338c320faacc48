"""The translate-test baseline: translate the query word by word with a bilingual dictionary, then
search the English documents with English-only tools.

It asks whether distillation beats the cheapest way to cross the language barrier. Two stages use
the translation: ``translate_dense`` (the frozen English teacher encodes it in the query role and
searches its own cached passage embeddings) and ``translate_bm25`` (BM25 over the English documents,
through ``bm25s`` with English stopwords and no stemming).

:class:`WordTranslator` reads ``eval/dictionaries/<lang>-en.tsv`` (``make data``, FreeDict) and
replaces, left to right and looking words up in lower case:

* the longest dictionary phrase starting at a word (``mji mkuu`` -> ``capital city``), else the word;
* each by its first translation: the first comma- or semicolon-separated alternative of the first
  sense, without parenthesised notes (``acha``: ``leave | quit, stop doing sth`` -> ``leave``);
* a word that is no headword by the longest headword of at least :data:`MIN_SUFFIX` letters that
  ends it: Swahili verbs and adjectives carry subject, tense and class prefixes
  (``alizaliwa`` = a-li-zaliwa -> ``be born``, ``mkubwa`` = m-kubwa -> ``big``). Suffixes, noun
  class changes and anything else are not analysed;
* anything else (names, numbers, unknown words) stays as written, which helps BM25 match names.

Punctuation and spacing are kept. The word-by-word output is rough English on purpose: a baseline
with no trained component.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from pathlib import Path

import bm25s

from optical_lightning.evaluation.datasets import read_table
from optical_lightning.evaluation.scoring import Run
from optical_lightning.evaluation.stages import Stage
from optical_lightning.prepare.records import SENSE_SEPARATOR
from optical_lightning.prepare.sources.freedict import PACKAGES as DICTIONARY_LANGS

log = logging.getLogger(__name__)
STAGES = (Stage.TRANSLATE_DENSE, Stage.TRANSLATE_BM25)
MIN_SUFFIX = 4
WORD = re.compile(r"\w+(?:['’]\w+)*")


def first_translation(senses: str) -> str:
    """The first alternative of the first sense, without notes in parentheses."""
    first = re.sub(r"\([^)]*\)", " ", senses.split(SENSE_SEPARATOR)[0])
    return " ".join(re.split(r"[,;]", first)[0].split())


class WordTranslator:
    """Word-by-word translation with a ``{phrase or word: English}`` table (see the module docstring)."""

    def __init__(self, table: dict[str, str]) -> None:
        self.table = {" ".join(k.lower().split()): v for k, v in table.items() if v}
        self.longest = max((len(k.split()) for k in self.table), default=1)

    @classmethod
    def from_tsv(cls, path: Path, lang: str) -> WordTranslator:
        """The first translation of every headword of a ``<lang>, en`` dictionary TSV."""
        return cls({row[0]: first_translation(row[1]) for row in read_table(path, (lang, "en"))})

    def translate(self, text: str, counts: Counter | None = None) -> str:
        """``text`` in rough English; ``counts`` (if given) adds up words ``translated`` (of them
        ``by_suffix``) and ``kept``."""
        counts = Counter() if counts is None else counts
        words = list(WORD.finditer(text))
        out, pos, i = [], 0, 0
        while i < len(words):
            n, english, how = self._match(text, words, i)
            out += [text[pos:words[i].start()], english]
            counts[how] += n
            if how == "by_suffix":
                counts["translated"] += n
            pos, i = words[i + n - 1].end(), i + n
        return "".join([*out, text[pos:]])

    def _match(self, text: str, words: list[re.Match], i: int) -> tuple[int, str, str]:
        """(words used, their English, how) for the words from ``i`` on."""
        for n in range(min(self.longest, len(words) - i), 1, -1):
            span = words[i:i + n]
            if all(text[a.end():b.start()].isspace() for a, b in zip(span, span[1:])):
                phrase = " ".join(w.group().lower() for w in span)
                if phrase in self.table:
                    return n, self.table[phrase], "translated"
        word = words[i].group().lower()
        if word in self.table:
            return 1, self.table[word], "translated"
        for start in range(1, len(word) - MIN_SUFFIX + 1):  # longest suffix first
            if word[start:] in self.table:
                return 1, self.table[word[start:]], "by_suffix"
        return 1, words[i].group(), "kept"


def bm25_search(queries: list[str], docs: list[str], qids: list[str], docids: list[str], k: int = 100) -> Run:
    """Top-``k`` BM25 (``bm25s`` defaults, English stopwords) as ``{qid: {docid: score}}``; documents
    that share no term with the query score 0 and are left out, as a term index would never return them."""
    k = min(k, len(docids))
    if not queries or k == 0:
        return {qid: {} for qid in qids}
    retriever = bm25s.BM25()
    retriever.index(bm25s.tokenize(docs, stopwords="en", show_progress=False), show_progress=False)
    tokens = bm25s.tokenize(queries, stopwords="en", return_ids=False, show_progress=False)
    found, scores = retriever.retrieve(tokens, k=k, show_progress=False)
    return {qid: {docids[j]: float(s) for j, s in zip(row_j.tolist(), row_s.tolist()) if s > 0}
            for qid, row_j, row_s in zip(qids, found, scores)}


def load_translator(dictionary: str | Path | None, lang: str) -> tuple[WordTranslator | None, str | None]:
    """The dictionary of ``eval.translate_test``, or ``(None, why)``: a missing one skips both stages with one
    log line (a warning where ``make data`` would build it)."""
    if dictionary is not None and Path(dictionary).is_file():
        return WordTranslator.from_tsv(Path(dictionary), lang), None
    if lang in DICTIONARY_LANGS:
        why = f"no dictionary at {dictionary}: run `make data` to build it (or set eval.dictionary)"
        log.warning("eval.translate_test skipped for lang=%s: %s", lang, why)
    else:
        why = f"no {lang}-en dictionary (FreeDict has none for {lang})"
        log.info("eval.translate_test skipped for lang=%s: %s", lang, why)
    return None, why
