"""Retrieval sets: queries (``qid, text``), documents (``docid, text``) and qrels (``qid, docid, relevance``).

Two kinds are read into the same :class:`RetrievalSet`:

* a **retrieval folder** (AfriQA, UDHR) with ``queries.tsv``, ``docs.tsv``, ``qrels.tsv`` and
  optionally ``queries.en.tsv`` - the same questions in English, for the teacher upper bound;
* a **bitext file** turned into "find the translation": queries are the ``<lang>`` side, documents
  the ``en`` side, and each query's only relevant document is its own translation.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from pathlib import Path

from optical_lightning.data.bitext import BitextPair, read_bitext
from optical_lightning.utils.errors import DataError
from optical_lightning.utils.textfiles import read_lines


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


def read_table(path: Path, columns: tuple[str, ...]) -> list[list[str]]:
    """Rows of a headed TSV with exactly ``columns`` first; a clear error for anything else."""
    if not path.is_file():
        raise DataError(f"evaluation file not found: {path} - build the data with `make data`, or pass another path")
    lines = read_lines(path)
    if not lines or [c.strip() for c in lines[0].split("\t")][: len(columns)] != list(columns):
        raise DataError(f"{path} line 1: expected a header starting with {', '.join(columns)} (tab-separated)")
    rows = []
    for lineno, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        cols = line.split("\t")
        if len(cols) < len(columns):
            raise DataError(f"{path} line {lineno}: expected {len(columns)} tab-separated fields "
                            f"({', '.join(columns)}), found {len(cols)}")
        rows.append(cols)
    return rows


def read_queries(path: Path) -> dict[str, str]:
    return {qid: text for qid, text, *_ in read_table(path, ("qid", "text"))}


def read_docs(path: Path) -> dict[str, str]:
    return {docid: text for docid, text, *_ in read_table(path, ("docid", "text"))}


def read_qrels(path: Path) -> dict[str, dict[str, int]]:
    qrels: dict[str, dict[str, int]] = {}
    for lineno, (qid, docid, rel, *_) in enumerate(read_table(path, ("qid", "docid", "relevance")), start=2):
        try:
            qrels.setdefault(qid, {})[docid] = int(rel)
        except ValueError as e:
            raise DataError(f"{path} line {lineno}: relevance '{rel}' is not an integer") from e
    return qrels


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
    return rs
