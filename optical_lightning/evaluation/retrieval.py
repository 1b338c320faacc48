"""Cross-lingual retrieval: the stage's encoder searches with the queries, the frozen teacher encodes the
documents (cached on disk), and the ranking is scored against the relevance judgements.

Queries are encoded in the ``query`` role, documents in the ``passage`` role. Per stage
(:meth:`~optical_lightning.evaluation.protocol.Encoders.for_stage`): the student reads the queries in the
run's language (``zero_shot``, ``trained``); the teacher reads their human English versions
(``teacher_en``, the upper bound) or their word-by-word translations (``translate_dense``), and BM25 searches
the translations (``translate_bm25``). On a teacher-graded set (``afriqa-passages-dev``) the teacher stages
are skipped: the teacher scores 1 there by construction.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

from optical_lightning.evaluation.cache import EmbeddingCache, document_embeddings
from optical_lightning.evaluation.datasets import RetrievalSet
from optical_lightning.evaluation.distributed import encode_shared
from optical_lightning.evaluation.metrics import DEFAULT_METRICS, check_depth, evaluate_run
from optical_lightning.evaluation.protocol import Encoders, Encoding, Evaluator, HeldOut, Metrics
from optical_lightning.evaluation.retrieval_sets import PSEUDO_DEPTH, RetrievalSets
from optical_lightning.evaluation.scoring import maxsim_search, pooled_search
from optical_lightning.evaluation.stages import Stage
from optical_lightning.evaluation.translate_test import STAGES as TRANSLATE_STAGES
from optical_lightning.evaluation.translate_test import WordTranslator, bm25_search
from optical_lightning.models.encoder import Encoder
from optical_lightning.utils.errors import ConfigError, as_list, require_int

log = logging.getLogger(__name__)
SCORINGS = ("pooled", "maxsim")


class RetrievalEvaluator(Evaluator):
    """Retrieval metrics per set and scoring (``pooled``; ``maxsim``: ColBERT-style late interaction).

    Args:
        sets: the sets of the run's language.
        scoring, metrics, top_k: how rankings are made and scored (``nDCG@10``, ``RR@10``, ``R@100``, ``P@1``).
        encoding: batch size, precision and the document-embedding cache.
        faiss: pooled search through a FAISS flat index (for big collections).
        bitext_val: also "find the translation" on the run's held-out training pairs (``bitext-val``).
        bitext_val_long: and on paragraphs of this many of them joined (``bitext-val-long``; 0: off).
    """

    def __init__(self, sets: RetrievalSets, scoring: Sequence[str] = ("pooled",),
                 metrics: Sequence[str] = DEFAULT_METRICS, top_k: int = 100, encoding: Encoding = Encoding(),  # noqa: B008
                 faiss: bool = False, bitext_val: bool = True, bitext_val_long: int = 0) -> None:
        scoring, metrics = as_list(scoring), as_list(metrics)
        bad = [s for s in scoring if s not in SCORINGS]
        if bad:
            raise ConfigError(f"retrieval.scoring={list(scoring)}: unknown {bad}; choose from {list(SCORINGS)}")
        check_depth("retrieval.top_k", top_k, metrics)  # also parses the metric names
        require_int("retrieval.bitext_val_long", bitext_val_long, minimum=0)
        self.sets, self.scoring, self.metrics, self.top_k = sets, list(scoring), list(metrics), top_k
        self.encoding, self.faiss = encoding, faiss
        self.bitext_val, self.bitext_val_long = bitext_val, bitext_val_long
        self.cache = EmbeddingCache(encoding.cache_dir)
        self.per_query: dict[str, dict[str, dict[str, float]]] = {}
        self.translations: dict[str, dict[str, str]] = {}  # set -> qid -> translated query
        self.skipped = sets.skipped

    @classmethod
    def from_settings(cls, data_dir: str, lang: str, sets: Sequence[str], domain_sets: Sequence[str] = (),
                      max_queries: int | None = None, seed: int = 0, scoring: Sequence[str] = ("pooled",),
                      metrics: Sequence[str] = DEFAULT_METRICS, top_k: int = 100, batch_size: int = 64,
                      precision: str = "auto", cache_dir: str | None = None, faiss: bool = False,
                      bitext_val: bool = True, bitext_val_long: int = 0,
                      max_documents: int | None = None) -> RetrievalEvaluator:
        """The evaluator from the flat settings of ``conf/retrieval`` (``retrieval.sets=[udhr]`` on the command line)."""
        require_int("retrieval.max_queries", max_queries, minimum=1, allow_none=True)
        require_int("retrieval.max_documents", max_documents, minimum=1, allow_none=True)
        require_int("retrieval.batch_size", batch_size, minimum=1)
        return cls(RetrievalSets(data_dir, lang, sets, domain_sets, max_queries, seed, max_documents), scoring, metrics, top_k,
                   Encoding(batch_size, precision, cache_dir), faiss, bitext_val, bitext_val_long)

    # ------------------------------------------------------------------ protocol
    def load(self, held_out: HeldOut = HeldOut()) -> None:  # noqa: B008
        """Read the sets (one-line errors before any model loads); the held-out training pairs join them
        when the run evaluates retrieval at all (``retrieval.sets=[]`` with no domain set: training only)."""
        wanted = self.bitext_val and (self.sets.names or self.sets.domain_names)
        held = self.sets.held_out(held_out.pairs, held_out.domain_pairs, self.bitext_val_long) if wanted else {}
        try:
            self.sets.load(required=not held)
        finally:  # a learning curve on held-out pairs alone still works where no dev set exists (Somali)
            self.sets.sets.update(held)

    @property
    def active(self) -> bool:
        return bool(self.sets.sets)

    def __call__(self, encoders: Encoders, stage: Stage | str) -> Metrics:
        results: Metrics = {}
        for rs in self.sets.sets.values():
            queries = self._queries(rs, stage, encoders.translator)
            if not queries:
                continue
            if stage == Stage.TRANSLATE_BM25:
                t0, qids, docids = time.time(), list(queries), list(rs.docs)
                run = bm25_search([queries[q] for q in qids], [rs.docs[d] for d in docids], qids, docids, self.top_k)
                self._record(results, rs.name, stage, run, rs.qrels, t0)
                continue
            docids, docs = self._docs(encoders.teacher, rs)
            if rs.name in self.sets.pseudo and not rs.qrels:
                rs.qrels.update(self._teacher_qrels(encoders.teacher, rs, docids, docs["pooled"]))
            qrels = rs.qrels if stage != Stage.TEACHER_EN else {q: rs.qrels[q] for q in queries if q in rs.qrels}
            for scoring in self.scoring:
                t0 = time.time()
                run = self._search(encoders.for_stage(stage), queries, docids, docs[scoring], scoring)
                self._record(results, rs.name if scoring == "pooled" else f"{rs.name}/{scoring}", stage, run, qrels, t0)
        return results

    def records(self) -> dict[str, Any]:
        return {"per_query.json": self.per_query} if self.per_query else {}

    def clear_records(self) -> None:
        self.per_query.clear()

    def sizes(self) -> dict[str, dict[str, int]]:
        return {name: {"queries": len(rs.queries), "docs": len(rs.docs)} for name, rs in self.sets.sets.items()}

    def cache_counts(self) -> tuple[int, int]:
        return self.cache.hits, self.cache.misses

    # ------------------------------------------------------------------ work
    def _queries(self, rs: RetrievalSet, stage: Stage | str, translator: WordTranslator | None) -> dict[str, str]:
        """The queries ``stage`` searches with; empty where it does not apply to the set."""
        if stage == Stage.TEACHER_EN:  # on a teacher-graded set the teacher scores 1 by construction
            return {} if rs.name in self.sets.pseudo else rs.queries_en
        if stage in TRANSLATE_STAGES:
            if rs.name in self.sets.pseudo or translator is None:
                return {}
            if rs.name not in self.translations:
                counts: Counter = Counter()
                self.translations[rs.name] = {q: translator.translate(t, counts) for q, t in rs.queries.items()}
                log.info("translate-test %s: %d words translated (%d by a suffix), %d kept as written", rs.name,
                         counts["translated"], counts["by_suffix"], counts["kept"])
            return self.translations[rs.name]
        return rs.queries

    def _docs(self, teacher: Encoder, rs: RetrievalSet) -> tuple[list[str], dict[str, Any]]:
        """Teacher embeddings of the collection, from the cache when this teacher has seen it before."""
        docids = list(rs.docs)
        docs = document_embeddings(teacher, [rs.docs[d] for d in docids], rs.docs_key, self.cache,
                                   with_tokens="maxsim" in self.scoring, batch_size=self.encoding.batch_size,
                                   precision=self.encoding.precision)
        return docids, docs

    def _teacher_qrels(self, teacher: Encoder, rs: RetrievalSet, docids: list[str], docs: Any) -> dict[str, dict[str, int]]:
        """Graded pseudo-relevance: the teacher's top ``PSEUDO_DEPTH`` passages for each English question."""
        qids = list(rs.queries_en)
        vectors = encode_shared(teacher, [rs.queries_en[q] for q in qids], "query", self.encoding.batch_size,
                                precision=self.encoding.precision)
        run = pooled_search(vectors, docs, qids, docids, PSEUDO_DEPTH)
        ranked = {q: sorted(hits, key=hits.get, reverse=True) for q, hits in run.items()}
        return {q: {d: PSEUDO_DEPTH - i for i, d in enumerate(top[:PSEUDO_DEPTH])} for q, top in ranked.items()}

    def _search(self, encoder: Encoder, queries: dict[str, str], docids: list[str], docs: Any, scoring: str) -> dict:
        qids = list(queries)
        texts = [queries[q] for q in qids]
        batch, precision = self.encoding.batch_size, self.encoding.precision
        if scoring == "pooled":
            return pooled_search(encode_shared(encoder, texts, "query", batch, precision=precision),
                                 docs, qids, docids, self.top_k, use_faiss=self.faiss)
        _, q_tokens = encode_shared(encoder, texts, "query", batch, tokens=True, precision=precision)
        return maxsim_search(q_tokens, docs, qids, docids, self.top_k)

    def _record(self, results: Metrics, name: str, stage: Stage | str, run: dict, qrels: dict, started: float) -> None:
        mean, per_query = evaluate_run(run, qrels, self.metrics)
        results[name] = mean
        self.per_query[f"{name}/{stage}"] = per_query
        log.info("%s %s: %s (%.1fs)", stage, name, ", ".join(f"{k}={v:.3f}" for k, v in mean.items()),
                 time.time() - started)
