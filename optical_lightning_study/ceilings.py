"""Ceilings and role pairings: what a perfect student could reach, and which target a set measures.

Distillation pulls student(x, query) towards teacher(en, r), with ``r = distill.teacher_role``; the
evaluation compares student(x, query) with teacher(documents, passage). These rows separate "the student
did not reach its target" from "the target is not what the set measures", per set:

* ``x query -> en passage``: what the evaluation measures, for the given query encoder;
* ``x query -> en query``: the same queries against the English side encoded in the query role, the
  distillation target of ``teacher_role=query`` (translation sets only: their documents are sentences);
* ``en query -> en passage``: the teacher on the English version of each query, i.e. a student that
  matched its ``teacher_role=query`` target exactly (for a translation set the English version of a
  query is its relevant document);
* ``en passage -> en passage``: the same for ``teacher_role=passage`` (translation sets only).
"""

from __future__ import annotations

from typing import Any

from optical_lightning.evaluation.cache import EmbeddingCache, document_embeddings
from optical_lightning.evaluation.datasets import RetrievalSet
from optical_lightning.evaluation.metrics import evaluate_run
from optical_lightning.evaluation.scoring import pooled_search


def english_versions(rs: RetrievalSet) -> dict[str, str]:
    """The English text of each query: ``queries_en`` when the set has it, else (a translation set)
    the text of its one relevant document."""
    if rs.queries_en:
        return dict(rs.queries_en)
    out = {}
    for qid, rel in rs.qrels.items():
        relevant = [d for d, r in rel.items() if r > 0]
        if qid in rs.queries and len(relevant) == 1:
            out[qid] = rs.docs[relevant[0]]
    return out


def role_pairings(query_encoder: Any, teacher: Any, rs: RetrievalSet, metrics: list[str], translation: bool,
                  batch_size: int = 64, precision: str = "32", top_k: int = 100,
                  cache: EmbeddingCache | None = None) -> dict[str, dict[str, float]]:
    """Row name -> mean metrics (see the module docstring); ``cache``: the evaluation's embedding cache,
    which already holds the teacher's passage embeddings of every set a run has evaluated."""
    docids = list(rs.docs)
    doc_texts = [rs.docs[d] for d in docids]
    qids = [q for q in rs.queries if q in rs.qrels]
    english = english_versions(rs)
    en_qids = [q for q in qids if q in english]

    def score(encoder: Any, texts: list[str], ids: list[str], role: str, doc_role: str, docs=None):
        q = encoder.encode(texts, role, batch_size, precision=precision)
        d = docs if docs is not None else teacher.encode(doc_texts, doc_role, batch_size, precision=precision)
        mean, _ = evaluate_run(pooled_search(q, d, ids, docids, top_k), {i: rs.qrels[i] for i in ids}, metrics)
        return mean, d

    rows: dict[str, dict[str, float]] = {}
    x_texts = [rs.queries[q] for q in qids]
    passages = document_embeddings(teacher, doc_texts, rs.docs_key, cache or EmbeddingCache(None), with_tokens=False,
                                   batch_size=batch_size, precision=precision)["pooled"]
    rows["x query -> en passage"], _ = score(query_encoder, x_texts, qids, "query", "passage", passages)
    if translation:
        rows["x query -> en query"], _ = score(query_encoder, x_texts, qids, "query", "query")
    if en_qids:
        en_texts = [english[q] for q in en_qids]
        rows["en query -> en passage"], _ = score(teacher, en_texts, en_qids, "query", "passage", passages)
        if translation:
            rows["en passage -> en passage"], _ = score(teacher, en_texts, en_qids, "passage", "passage", passages)
    return rows
