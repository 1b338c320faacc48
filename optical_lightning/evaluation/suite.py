"""The evaluation suite of a run: which sets exist for the language, and their metrics per stage.

Stages: ``zero_shot`` (the student before training), ``trained`` (after), and ``teacher_en``
(the teacher on the human English version of the queries: the upper bound distillation aims at).
Queries are always encoded by the query encoder in the ``query`` role, documents by the frozen
teacher in the ``passage`` role; the teacher's document embeddings are cached on disk. With
``translate_test`` and a dictionary for the language, ``translate_dense`` and ``translate_bm25``
(:mod:`~optical_lightning.evaluation.translate_test`) evaluate the word-by-word translated queries
with the teacher and with BM25 on every set but the teacher-graded ones.

Set names resolve inside ``data_dir`` (see ``make data``):

* ``afriqa`` / ``udhr`` -> ``retrieval/<name>-<lang>-en/`` (queries, docs, qrels[, queries.en])
* ``afriqa-passages-dev`` / ``mafand-dev-long`` -> dev sets derived from other files (``PSEUDO_SETS``,
  ``JOINED_SETS``)
* anything else -> ``translation/<lang>/<name>.tsv`` ("find the translation" on held-out bitext)

``domain_sets`` (the domain's ``in_domain_eval``, e.g. ``afriqa-questions-dev``) are evaluated
besides ``sets`` in every run that uses the domain (when they exist: ``eval.sets=[]`` with a missing
domain set still trains).

Sets missing for the language are skipped with one log line and listed under ``skipped``.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from pathlib import Path
from typing import Any

from optical_lightning.data.bitext import BitextPair, read_bitext
from optical_lightning.evaluation.cache import EmbeddingCache, document_embeddings
from optical_lightning.evaluation.datasets import (
    RetrievalSet,
    file_key,
    load_retrieval_dir,
    load_translation_set,
    read_docs,
    translation_set,
)
from optical_lightning.evaluation.distributed import encode_shared
from optical_lightning.evaluation.metrics import DEFAULT_METRICS, check_depth, evaluate_run
from optical_lightning.evaluation.scoring import maxsim_search, pooled_search
from optical_lightning.evaluation.stages import Stage
from optical_lightning.evaluation.translate_test import STAGES as TRANSLATE_STAGES
from optical_lightning.evaluation.translate_test import WordTranslator, bm25_search
from optical_lightning.models.encoder import Encoder
from optical_lightning.prepare.sources.freedict import PACKAGES as DICTIONARY_LANGS
from optical_lightning.utils.errors import ConfigError, DataError, as_list, require_int
from optical_lightning.utils.precision import inference_dtype

log = logging.getLogger(__name__)
RETRIEVAL_DIRS = ("afriqa", "udhr")
#: dev sets whose relevance comes from the teacher: name -> (retrieval folder of the collection, bitext of
#: held-out questions). Each held-out question's gold list is the teacher's top ``PSEUDO_DEPTH`` passages for
#: its English side (graded by rank), so the set measures, with no test query and no qrels, how closely the
#: student's ranking for the <lang> question follows the teacher's ranking for the English one.
PSEUDO_SETS = {"afriqa-passages-dev": ("afriqa", "afriqa-questions-dev")}
PSEUDO_DEPTH = 10
#: long-input dev sets: name -> (translation set, how many consecutive pairs join into one). Consecutive
#: MAFAND dev sentences come from one news article, so the joined paragraphs (about 58 Swahili words, the
#: length of a UDHR article) are long *and* close to their neighbours in topic, which is what makes UDHR hard
#: and what ``bitext-val-long`` (random held-out pairs joined: P@1 0.98 zero-shot) lacks.
JOINED_SETS = {"mafand-dev-long": ("mafand-dev", 3)}
SCORINGS = ("pooled", "maxsim")


class EvalSuite:
    def __init__(
        self,
        data_dir: str,
        lang: str,
        sets: list[str],
        domain_sets: list[str] = (),
        scoring: list[str] = ("pooled",),
        metrics: list[str] = DEFAULT_METRICS,
        max_queries: int | None = None,
        batch_size: int = 64,
        cache_dir: str | None = None,
        seed: int = 0,
        top_k: int = 100,
        zero_shot: bool = True,
        upper_bound: bool = True,
        bitext_val: bool = True,
        bitext_val_long: int = 0,
        precision: str = "auto",
        faiss: bool = False,
        translate_test: bool = False,
        dictionary: str | None = None,
    ) -> None:
        sets, scoring, metrics = as_list(sets), as_list(scoring), as_list(metrics)  # eval.sets=udhr is [udhr]
        bad = [s for s in scoring if s not in SCORINGS]
        if bad:
            raise ConfigError(f"eval.scoring={list(scoring)}: unknown {bad}; choose from {list(SCORINGS)}")
        check_depth("eval.top_k", top_k, metrics)  # also parses the metric names
        require_int("eval.max_queries", max_queries, minimum=1, allow_none=True)
        require_int("eval.batch_size", batch_size, minimum=1)
        inference_dtype(precision)  # fail fast on a typo
        self.precision, self.faiss = precision, faiss
        self.data_dir, self.lang = Path(data_dir), lang
        self.set_names, self.scoring, self.metrics = list(sets), list(scoring), list(metrics)
        # a domain's own sets join every run that uses it; absent ones are skipped, never an error
        self.domain_set_names = [n for n in dict.fromkeys(as_list(domain_sets)) if n not in self.set_names]
        self.max_queries, self.batch_size, self.seed, self.top_k = max_queries, batch_size, seed, top_k
        self.zero_shot, self.upper_bound, self.bitext_val = zero_shot, upper_bound, bitext_val
        require_int("eval.bitext_val_long", bitext_val_long, minimum=0)
        self.bitext_val_long = bitext_val_long
        self.cache = EmbeddingCache(cache_dir)
        self.sets: dict[str, RetrievalSet] = {}
        self.skipped: dict[str, str] = {}
        self.per_query: dict[str, dict[str, dict[str, float]]] = {}
        self.pseudo: set[str] = set()  # sets whose qrels the teacher's English ranking makes (PSEUDO_SETS)
        self.translate_test, self.dictionary = bool(translate_test), Path(dictionary) if dictionary else None
        self.translator: WordTranslator | None = None
        self.translations: dict[str, dict[str, str]] = {}  # set -> qid -> translated query

    @property
    def translate_stages(self) -> tuple[str, ...]:
        """The translate-test stages this run evaluates (none without ``translate_test`` or a dictionary)."""
        return TRANSLATE_STAGES if self.translator is not None else ()

    def available(self) -> dict[str, list[str]]:
        """Set name -> the languages it exists for under ``data_dir``."""
        found: dict[str, set[str]] = {}
        for folder in (self.data_dir / "retrieval").glob("*-*-en"):
            name, lang = folder.name[: -len("-en")].rsplit("-", 1)
            found.setdefault(name, set()).add(lang)
        for path in (self.data_dir / "translation").glob("*/*.tsv"):
            found.setdefault(path.stem, set()).add(path.parent.name)
        for name, (collection, questions) in PSEUDO_SETS.items():
            langs = found.get(collection, set()) & found.get(questions, set())
            if langs:
                found[name] = langs
        for name, (base, _) in JOINED_SETS.items():
            if base in found:
                found[name] = set(found[base])
        return {name: sorted(langs) for name, langs in sorted(found.items())}

    def load(self) -> dict[str, RetrievalSet]:
        """Read every configured set present for the language (cheap; done before models load).

        A missing set is skipped with a log line (AfriQA has no Somali), with a warning when it exists
        for no language at all (a typo?); when none is left, the error lists the sets there are.
        """
        available = self.available()
        if self.set_names and not available:
            raise DataError(f"no evaluation sets under {self.data_dir}: run `make data` to build them, point "
                            f"eval.data_dir at them, or set eval.sets=[] to train without evaluation")
        unknown = [n for n in self.set_names if n not in available]
        if unknown:
            log.warning("eval.sets: %s exist(s) for no language under %s (sets there: %s)", unknown, self.data_dir,
                        ", ".join(available))
        for name in [*self.set_names, *self.domain_set_names]:
            if name in PSEUDO_SETS:
                collection, questions = PSEUDO_SETS[name]
                folder = self.data_dir / "retrieval" / f"{collection}-{self.lang}-en"
                path = self.data_dir / "translation" / self.lang / f"{questions}.tsv"
                if not (folder / "docs.tsv").is_file() or not path.is_file():
                    self.skipped[name] = f"not found: {folder / 'docs.tsv'} or {path}"
                    log.info("eval set %s skipped for lang=%s (%s)", name, self.lang, self.skipped[name])
                    continue
                pairs = read_bitext(path, self.lang)
                rs = RetrievalSet(f"{name}-{self.lang}-en", {p.id: p.tgt for p in pairs}, read_docs(folder / "docs.tsv"),
                                  {}, {p.id: p.en for p in pairs}, file_key(folder / "docs.tsv"))
                self.sets[rs.name] = rs.subsample_queries(self.max_queries, self.seed)
                self.pseudo.add(rs.name)
                continue
            if name in JOINED_SETS:
                base, group = JOINED_SETS[name]
                path = self.data_dir / "translation" / self.lang / f"{base}.tsv"
                loader = lambda p=path, n=name, g=group: translation_set(  # noqa: E731
                    long_pairs(read_bitext(p, self.lang), g, prefix=n), f"{n}-{self.lang}-en", f"{file_key(p)}-long{g}")
            elif name in RETRIEVAL_DIRS:
                path = self.data_dir / "retrieval" / f"{name}-{self.lang}-en"
                loader = lambda p=path, n=name: load_retrieval_dir(p, f"{n}-{self.lang}-en")  # noqa: E731
            else:
                path = self.data_dir / "translation" / self.lang / f"{name}.tsv"
                loader = lambda p=path, n=name: load_translation_set(p, self.lang, f"{n}-{self.lang}-en")  # noqa: E731
            if not path.exists():
                self.skipped[name] = f"not found: {path}"
                log.info("eval set %s skipped for lang=%s (%s)", name, self.lang, path)
                continue
            rs = loader().subsample_queries(self.max_queries, self.seed)
            self.sets[rs.name] = rs
        if self.set_names and not self.sets:
            here = [n for n, langs in available.items() if self.lang in langs]
            raise DataError(f"none of the evaluation sets {self.set_names} exists for lang={self.lang} under "
                            f"{self.data_dir}; the sets for {self.lang} are: {', '.join(here) or 'none'} (set eval.sets "
                            f"to some of them, or eval.sets=[] to train without evaluation)")
        if self.translate_test:
            self._load_translator()
        return self.sets

    def _load_translator(self) -> None:
        """The dictionary of ``eval.translate_test``; a missing one skips both stages with one log line."""
        if self.dictionary is not None and self.dictionary.is_file():
            self.translator = WordTranslator.from_tsv(self.dictionary, self.lang)
            return
        if self.lang in DICTIONARY_LANGS:
            why = f"no dictionary at {self.dictionary}: run `make data` to build it (or set eval.dictionary)"
            log.warning("eval.translate_test skipped for lang=%s: %s", self.lang, why)
        else:
            why = f"no {self.lang}-en dictionary (FreeDict has none for {self.lang})"
            log.info("eval.translate_test skipped for lang=%s: %s", self.lang, why)
        self.skipped["translate_test"] = why

    def add_validation_bitext(self, pairs: list[BitextPair], domain_pairs: list[BitextPair] = ()) -> None:
        """"Find the translation" on the run's held-out training pairs: ``bitext-val``, a
        retrieval metric for model selection and sweepers that never touches a test set, and
        ``domain-val`` on the held-out pairs of the domain (``domain.val_size``): every domain's own
        in-domain set, also where no test set of that domain exists (software strings)."""
        if not self.bitext_val:
            return
        if pairs:
            self.sets["bitext-val"] = translation_set(pairs, "bitext-val")
            if self.bitext_val_long > 1 and len(pairs) >= 2 * self.bitext_val_long:
                self.sets["bitext-val-long"] = translation_set(long_pairs(pairs, self.bitext_val_long), "bitext-val-long")
        if domain_pairs:
            self.sets["domain-val"] = translation_set(list(domain_pairs), "domain-val")

    # ------------------------------------------------------------------ encoding
    def _docs(self, teacher: Encoder, rs: RetrievalSet) -> tuple[list[str], dict[str, Any]]:
        """Teacher embeddings of the collection, from the cache when this teacher has seen it before."""
        docids = list(rs.docs)
        docs = document_embeddings(teacher, [rs.docs[d] for d in docids], rs.docs_key, self.cache,
                                   with_tokens="maxsim" in self.scoring, batch_size=self.batch_size,
                                   precision=self.precision)
        return docids, docs

    def _teacher_qrels(self, teacher: Encoder, rs: RetrievalSet, docids: list[str], docs: Any) -> dict[str, dict[str, int]]:
        """Graded pseudo-relevance: the teacher's top ``PSEUDO_DEPTH`` passages for each English question."""
        qids = list(rs.queries_en)
        vectors = encode_shared(teacher, [rs.queries_en[q] for q in qids], "query", self.batch_size, precision=self.precision)
        run = pooled_search(vectors, docs, qids, docids, PSEUDO_DEPTH)
        ranked = {q: sorted(hits, key=hits.get, reverse=True) for q, hits in run.items()}
        return {q: {d: PSEUDO_DEPTH - i for i, d in enumerate(top[:PSEUDO_DEPTH])} for q, top in ranked.items()}

    def _search(self, encoder: Encoder, queries: dict[str, str], docids: list[str], docs: Any, scoring: str) -> dict:
        qids = list(queries)
        texts = [queries[q] for q in qids]
        if scoring == "pooled":
            return pooled_search(encode_shared(encoder, texts, "query", self.batch_size, precision=self.precision),
                                 docs, qids, docids, self.top_k, use_faiss=self.faiss)
        _, q_tokens = encode_shared(encoder, texts, "query", self.batch_size, tokens=True, precision=self.precision)
        return maxsim_search(q_tokens, docs, qids, docids, self.top_k)

    def _queries(self, rs: RetrievalSet, stage: str) -> dict[str, str]:
        """The queries ``stage`` searches with; empty where it does not apply to the set."""
        if stage == Stage.TEACHER_EN:  # on a teacher-graded set the teacher scores 1 by construction
            return {} if rs.name in self.pseudo else rs.queries_en
        if stage in TRANSLATE_STAGES:
            if rs.name in self.pseudo or self.translator is None:
                return {}
            if rs.name not in self.translations:
                counts: Counter = Counter()
                self.translations[rs.name] = {q: self.translator.translate(t, counts) for q, t in rs.queries.items()}
                log.info("translate-test %s: %d words translated (%d by a suffix), %d kept as written", rs.name,
                         counts["translated"], counts["by_suffix"], counts["kept"])
            return self.translations[rs.name]
        return rs.queries

    def _record(self, results: dict, name: str, stage: str, run: dict, qrels: dict, started: float) -> None:
        mean, per_query = evaluate_run(run, qrels, self.metrics)
        results[name] = mean
        self.per_query[f"{name}/{stage}"] = per_query
        log.info("%s %s: %s (%.1fs)", stage, name, ", ".join(f"{k}={v:.3f}" for k, v in mean.items()),
                 time.time() - started)

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, query_encoder: Encoder, teacher: Encoder, stage: str) -> dict[str, dict[str, float]]:
        """Metrics of ``query_encoder`` against ``teacher``-encoded documents, per set and scoring.

        ``stage="teacher_en"`` encodes the English versions of the queries with ``query_encoder``
        (pass the teacher) on the sets that have them; ``translate_dense`` the word-by-word
        translations (pass the teacher), ``translate_bm25`` searches them with BM25 (no encoder).
        """
        if not self.sets:
            self.load()
        results: dict[str, dict[str, float]] = {}
        for rs in self.sets.values():
            queries = self._queries(rs, stage)
            if not queries:
                continue
            if stage == Stage.TRANSLATE_BM25:
                t0, qids, docids = time.time(), list(queries), list(rs.docs)
                run = bm25_search([queries[q] for q in qids], [rs.docs[d] for d in docids], qids, docids, self.top_k)
                self._record(results, rs.name, stage, run, rs.qrels, t0)
                continue
            docids, docs = self._docs(teacher, rs)
            if rs.name in self.pseudo and not rs.qrels:
                rs.qrels.update(self._teacher_qrels(teacher, rs, docids, docs["pooled"]))
            qrels = rs.qrels if stage != Stage.TEACHER_EN else {q: rs.qrels[q] for q in queries if q in rs.qrels}
            for scoring in self.scoring:
                t0 = time.time()
                run = self._search(query_encoder, queries, docids, docs[scoring], scoring)
                self._record(results, rs.name if scoring == "pooled" else f"{rs.name}/{scoring}", stage, run, qrels, t0)
        return results


def long_pairs(pairs: list[BitextPair], group: int, prefix: str = "long") -> list[BitextPair]:
    """Paragraph-length pairs: each ``group`` consecutive pairs joined into one, both sides (a short tail is dropped).

    Why: the training pairs are single sentences, but some test sets (UDHR) query with whole
    articles; this is the dev view of how the student handles long inputs, carved from held-out
    training data (``bitext-val-long``) or a dev split (``JOINED_SETS``) only.
    """
    return [BitextPair(f"{prefix}{i // group}", " ".join(p.en for p in chunk), " ".join(p.tgt for p in chunk), prefix)
            for i in range(0, len(pairs) - group + 1, group) if len(chunk := pairs[i:i + group]) == group]
