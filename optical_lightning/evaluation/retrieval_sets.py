"""Which retrieval sets a run evaluates, read from ``data_dir`` for its language.

Set names resolve inside ``data_dir`` (see ``make data``):

* ``afriqa`` / ``udhr`` -> ``retrieval/<name>-<lang>-en/`` (queries, docs, qrels[, queries.en])
* ``afriqa-passages-dev`` -> a dev set whose relevance the teacher grades (:data:`PSEUDO_SETS`)
* ``mafand-dev-long`` -> consecutive dev pairs joined into paragraphs (:data:`JOINED_SETS`)
* anything else -> ``translation/<lang>/<name>.tsv`` ("find the translation" on held-out bitext)

``domain_sets`` (the domain's ``in_domain_eval``, e.g. ``afriqa-questions-dev``) join ``sets`` in every
run that uses the domain, when they exist. Sets missing for the language are skipped with one log line
and listed under ``skipped``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from optical_lightning.data.bitext import BitextPair, read_bitext
from optical_lightning.evaluation.datasets import (
    RetrievalSet,
    file_key,
    load_retrieval_dir,
    load_translation_set,
    read_docs,
    translation_set,
)
from optical_lightning.utils.errors import DataError, as_list, require_int

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


class RetrievalSets:
    """The named sets of one language under ``data_dir``, each capped at ``max_queries`` (a seeded subset)
    and, for quick runs, at ``max_documents`` (the judged ones and a seeded sample of the rest)."""

    def __init__(self, data_dir: str, lang: str, names: Sequence[str], domain_names: Sequence[str] = (),
                 max_queries: int | None = None, seed: int = 0, max_documents: int | None = None) -> None:
        require_int("max_queries", max_queries, minimum=1, allow_none=True)
        require_int("max_documents", max_documents, minimum=1, allow_none=True)
        self.data_dir, self.lang = Path(data_dir), lang
        self.names = list(dict.fromkeys(as_list(names)))  # retrieval.sets=udhr is [udhr]
        # a domain's own sets join every run that uses it; absent ones are skipped, never an error
        self.domain_names = [n for n in dict.fromkeys(as_list(domain_names)) if n not in self.names]
        self.max_queries, self.max_documents, self.seed = max_queries, max_documents, seed
        self.sets: dict[str, RetrievalSet] = {}
        self.skipped: dict[str, str] = {}
        self.pseudo: set[str] = set()  # sets whose qrels the teacher's English ranking makes (PSEUDO_SETS)

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

    def load(self, required: bool = True) -> dict[str, RetrievalSet]:
        """Read every configured set present for the language (cheap; done before models load).

        A missing set is skipped with a log line (AfriQA has no Somali), with a warning when it exists
        for no language at all (a typo?); when none is left, the error (a warning where not ``required``:
        the run's held-out pairs still evaluate) lists the sets there are.
        """
        available = self.available()
        if self.names and not available:
            raise DataError(f"no evaluation sets under {self.data_dir}: run `make data` to build them, point "
                            f"retrieval.data_dir at them, or set retrieval.sets=[] to train without evaluation")
        unknown = [n for n in self.names if n not in available]
        if unknown:
            log.warning("retrieval.sets: %s exist(s) for no language under %s (sets there: %s)", unknown,
                        self.data_dir, ", ".join(available))
        for name in [*self.names, *self.domain_names]:
            rs = self._read(name)
            if rs is not None:
                rs = rs.subsample_queries(self.max_queries, self.seed)
                self.sets[rs.name] = rs.subsample_documents(self.max_documents, self.seed)
        if self.names and not self.sets:
            here = [n for n, langs in available.items() if self.lang in langs]
            why = (f"none of the evaluation sets {self.names} exists for lang={self.lang} under {self.data_dir}; the "
                   f"sets for {self.lang} are: {', '.join(here) or 'none'}")
            if required:
                raise DataError(f"{why} (set retrieval.sets to some of them, or retrieval.sets=[] to train without "
                                f"evaluation)")
            log.warning("%s: evaluating the held-out training pairs only", why)
        return self.sets

    def _read(self, name: str) -> RetrievalSet | None:
        """One set, or ``None`` (recorded in :attr:`skipped`) when its files are not there."""
        translation = self.data_dir / "translation" / self.lang
        if name in PSEUDO_SETS:
            collection, questions = PSEUDO_SETS[name]
            folder, path = self.data_dir / "retrieval" / f"{collection}-{self.lang}-en", translation / f"{questions}.tsv"
            if not (folder / "docs.tsv").is_file() or not path.is_file():
                return self._skip(name, f"not found: {folder / 'docs.tsv'} or {path}")
            pairs = read_bitext(path, self.lang)
            self.pseudo.add(f"{name}-{self.lang}-en")
            return RetrievalSet(f"{name}-{self.lang}-en", {p.id: p.tgt for p in pairs}, read_docs(folder / "docs.tsv"),
                                {}, {p.id: p.en for p in pairs}, file_key(folder / "docs.tsv"))
        if name in JOINED_SETS:
            base, group = JOINED_SETS[name]
            path = translation / f"{base}.tsv"
            if not path.exists():
                return self._skip(name, f"not found: {path}")
            return translation_set(long_pairs(read_bitext(path, self.lang), group, prefix=name),
                                   f"{name}-{self.lang}-en", f"{file_key(path)}-long{group}")
        if name in RETRIEVAL_DIRS:
            path = self.data_dir / "retrieval" / f"{name}-{self.lang}-en"
            return load_retrieval_dir(path, f"{name}-{self.lang}-en") if path.exists() else self._skip(
                name, f"not found: {path}")
        path = translation / f"{name}.tsv"
        return load_translation_set(path, self.lang, f"{name}-{self.lang}-en") if path.exists() else self._skip(
            name, f"not found: {path}")

    def _skip(self, name: str, why: str) -> None:
        self.skipped[name] = why
        log.info("eval set %s skipped for lang=%s (%s)", name, self.lang, why)

    def held_out(self, pairs: Sequence[BitextPair], domain_pairs: Sequence[BitextPair] = (),
                 long_group: int = 0) -> dict[str, RetrievalSet]:
        """"Find the translation" on the run's held-out training pairs: ``bitext-val``, a retrieval metric for
        model selection and sweepers that never touches a test set; ``bitext-val-long`` on ``long_group`` of
        them joined (long inputs); ``domain-val`` on the domain's held-out pairs (``domain.val_size``): every
        domain's own in-domain set, also where no test set of that domain exists (software strings)."""
        require_int("bitext_val_long", long_group, minimum=0)
        sets = {}
        if pairs:
            sets["bitext-val"] = translation_set(list(pairs), "bitext-val")
            if long_group > 1 and len(pairs) >= 2 * long_group:
                sets["bitext-val-long"] = translation_set(long_pairs(list(pairs), long_group), "bitext-val-long")
        if domain_pairs:
            sets["domain-val"] = translation_set(list(domain_pairs), "domain-val")
        return sets


def long_pairs(pairs: list[BitextPair], group: int, prefix: str = "long") -> list[BitextPair]:
    """Paragraph-length pairs: each ``group`` consecutive pairs joined into one, both sides (a short tail is dropped).

    Why: the training pairs are single sentences, but some test sets (UDHR) query with whole
    articles; this is the dev view of how the student handles long inputs, carved from held-out
    training data (``bitext-val-long``) or a dev split (``JOINED_SETS``) only.
    """
    return [BitextPair(f"{prefix}{i // group}", " ".join(p.en for p in chunk), " ".join(p.tgt for p in chunk), prefix)
            for i in range(0, len(pairs) - group + 1, group) if len(chunk := pairs[i:i + group]) == group]
