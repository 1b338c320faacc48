"""Retrieval sets: queries (``qid, text``), documents (``docid, text``) and qrels (``qid, docid, relevance``).

Two kinds are read into the same :class:`RetrievalSet`:

* a **retrieval folder** (AfriQA, UDHR) with ``queries.tsv``, ``docs.tsv``, ``qrels.tsv`` and
  optionally ``queries.en.tsv`` - the same questions in English, for the teacher upper bound;
* a **bitext file** turned into "find the translation": queries are the ``<lang>`` side, documents
  the ``en`` side, and each query's only relevant document is its own translation.
"""

from __future__ import annotations

import hashlib
import logging
import random
from dataclasses import dataclass, field
from pathlib import Path

from optical_lightning.data.bitext import BitextPair, read_bitext
from optical_lightning.utils.errors import DataError
from optical_lightning.utils.textfiles import read_lines

log = logging.getLogger(__name__)


@dataclass
class RetrievalSet:
    name: str
    queries: dict[str, str]
    docs: dict[str, str]
    qrels: dict[str, dict[str, int]]
    queries_en: dict[str, str] = field(default_factory=dict)  # English versions of the queries, if any
    docs_key: str = ""  # identifies the document collection for the embedding cache

    def subsample_queries(self, n: int | None, seed: int) -> RetrievalSet:
        """Keep ``n`` judged queries (seeded); documents are never dropped, so the task stays as hard."""
        if n is None or n >= len(self.queries):
            return self
        keep = sorted(random.Random(seed).sample(sorted(self.queries), n))
        return RetrievalSet(self.name, {q: self.queries[q] for q in keep}, self.docs,
                            {q: self.qrels[q] for q in keep if q in self.qrels},
                            {q: self.queries_en[q] for q in keep if q in self.queries_en}, self.docs_key)

    def subsample_documents(self, n: int | None, seed: int) -> RetrievalSet:
        """Keep every document the queries judge, and a seeded sample of the others up to ``n`` in all.

        For quick runs only: a smaller collection is an easier task, so its scores compare with no full run
        (the embedding cache keys it apart). A teacher-graded set has no qrels yet, so its cap is a plain seeded draw.
        """
        if n is None or n >= len(self.docs):
            return self
        judged = {d for rels in self.qrels.values() for d in rels if d in self.docs}
        others = sorted(d for d in self.docs if d not in judged)
        drawn = set(random.Random(seed).sample(others, max(0, n - len(judged))))
        docs = {d: t for d, t in self.docs.items() if d in judged or d in drawn}
        return RetrievalSet(self.name, self.queries, docs, self.qrels, self.queries_en,
                            f"{self.docs_key}-docs{len(docs)}-seed{seed}")


def read_rows(path: Path, columns: tuple[str, ...]) -> list[tuple[int, list[str]]]:
    """``(line number, fields)`` of each row of a headed TSV with exactly ``columns`` first.

    A row needs at least ``columns`` fields and at most as many as the header names: a tab inside a
    text would otherwise cut the text short without a word (as the bitext reader, it is an error).
    """
    if not path.is_file():
        raise DataError(f"evaluation file not found: {path} - build the data with `make data`, or pass another path")
    lines = read_lines(path)
    header = [c.strip() for c in lines[0].split("\t")] if lines else []
    if header[: len(columns)] != list(columns):
        raise DataError(f"{path} line 1: expected a header starting with {', '.join(columns)} (tab-separated)")
    rows = []
    for lineno, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        cols = line.split("\t")
        if len(cols) < len(columns):
            raise DataError(f"{path} line {lineno}: expected {len(columns)} tab-separated fields "
                            f"({', '.join(columns)}), found {len(cols)}")
        if len(cols) > len(header):
            raise DataError(f"{path} line {lineno}: {len(cols)} tab-separated fields but the header names "
                            f"{len(header)} ({', '.join(header)}); a tab inside a text splits it - replace it with a space")
        rows.append((lineno, cols))
    return rows


def read_table(path: Path, columns: tuple[str, ...]) -> list[list[str]]:
    """Rows of a headed TSV with exactly ``columns`` first (see :func:`read_rows`)."""
    return [cols for _, cols in read_rows(path, columns)]


def read_texts(path: Path, id_column: str) -> dict[str, str]:
    """``{id: text}`` of a ``<id_column>, text`` TSV.

    An id given twice with different texts is an error naming both lines (whichever came last would
    silently win); repeats of the same row are dropped with a warning.
    """
    texts: dict[str, str] = {}
    first_line: dict[str, int] = {}
    repeats = 0
    for lineno, (row_id, text, *_) in read_rows(path, (id_column, "text")):
        if row_id not in texts:
            texts[row_id], first_line[row_id] = text, lineno
        elif texts[row_id] != text:
            raise DataError(f"{path} lines {first_line[row_id]} and {lineno}: {id_column} {row_id!r} is given twice "
                            f"with different texts; give each {id_column} once")
        else:
            repeats += 1
    if repeats:
        log.warning("%s: %d rows repeat an earlier row (same %s and text); each is used once", path, repeats, id_column)
    return texts


def read_queries(path: Path) -> dict[str, str]:
    return read_texts(path, "qid")


def read_docs(path: Path) -> dict[str, str]:
    return read_texts(path, "docid")


def read_qrels(path: Path) -> dict[str, dict[str, int]]:
    qrels: dict[str, dict[str, int]] = {}
    for lineno, (qid, docid, rel, *_) in read_rows(path, ("qid", "docid", "relevance")):
        try:
            qrels.setdefault(qid, {})[docid] = int(rel)
        except ValueError as e:
            raise DataError(f"{path} line {lineno}: relevance '{rel}' is not an integer") from e
    return qrels


def unjudgeable(qrels: dict[str, dict[str, int]], docs: dict[str, str], qrels_name: str, docs_name: str) -> str | None:
    """A warning when judged documents are missing from the collection (None when all are there).

    Why: a relevant document that is not in the collection can never be retrieved, so its query scores
    0 without a word. When no relevant document is in the collection at all, the files cannot belong
    together: a :class:`DataError`.
    """
    judged = {d for q_docs in qrels.values() for d in q_docs}
    relevant = {d for q_docs in qrels.values() for d, r in q_docs.items() if r > 0}
    missing = sorted(judged - docs.keys())
    if relevant and not relevant & docs.keys():
        raise DataError(f"{qrels_name}: none of its {len(relevant)} relevant documents is in {docs_name} (e.g. "
                        f"{sorted(relevant)[0]!r}); are the qrels and the documents from the same set?")
    if not missing:
        return None
    return (f"{len(missing)} of {len(judged)} judged documents in {qrels_name} are not in {docs_name} (e.g. "
            f"{missing[0]!r}); they cannot be retrieved, so the queries that need them score lower")


def file_key(*paths: Path) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(p.read_bytes())
    return h.hexdigest()[:24]


def load_retrieval_dir(folder: str | Path, name: str | None = None) -> RetrievalSet:
    folder = Path(folder)
    queries, docs = read_queries(folder / "queries.tsv"), read_docs(folder / "docs.tsv")
    qrels = read_qrels(folder / "qrels.tsv")
    en = folder / "queries.en.tsv"
    return _checked(RetrievalSet(name or folder.name, queries, docs, qrels,
                                 read_queries(en) if en.is_file() else {}, file_key(folder / "docs.tsv")))


def load_translation_set(path: str | Path, lang: str, name: str | None = None) -> RetrievalSet:
    path = Path(path)
    return translation_set(read_bitext(path, lang), name or path.stem, file_key(path))


def translation_set(pairs: list[BitextPair], name: str, docs_key: str | None = None) -> RetrievalSet:
    """"Find the translation" over ``pairs``: target side as queries, English side as documents."""
    if docs_key is None:
        docs_key = hashlib.sha256("\n".join(p.en for p in pairs).encode()).hexdigest()[:24]
    # duplicates on either side would make the gold ambiguous; keep the first occurrence
    seen_q, seen_d, queries, docs, qrels = set(), set(), {}, {}, {}
    for p in pairs:
        if not p.en.strip() or not p.tgt.strip() or p.tgt in seen_q or p.en in seen_d:
            continue
        seen_q.add(p.tgt)
        seen_d.add(p.en)
        queries[p.id], docs[p.id], qrels[p.id] = p.tgt, p.en, {p.id: 1}
    return _checked(RetrievalSet(name, queries, docs, qrels, docs_key=docs_key))


def _checked(rs: RetrievalSet) -> RetrievalSet:
    judged = [q for q in rs.queries if any(d in rs.docs and r > 0 for d, r in rs.qrels.get(q, {}).items())]
    if not judged:
        raise DataError(f"retrieval set '{rs.name}': no query has a relevant document in the collection; "
                        f"check that qrels ids match queries.tsv and docs.tsv")
    if (warning := unjudgeable(rs.qrels, rs.docs, f"retrieval set '{rs.name}' qrels", "its documents")) is not None:
        log.warning("%s", warning)
    return rs
