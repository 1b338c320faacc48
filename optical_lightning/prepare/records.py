"""The data types every source returns and the pipeline passes along.

A source yields one :class:`SourceResult`: metadata (licence, origin, version) plus any number of
:class:`Bitext` sets (each one language and one :data:`BitextRole`) of
:class:`~optical_lightning.data.bitext.BitextPair`, :class:`RetrievalFolder` sets, :class:`MCQASet` files
and :class:`Dictionary` word lists. The role decides where a set is written and whether it may train a
model, which is what keeps evaluation text out of training data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from optical_lightning.data.bitext import BitextPair

#: What a bitext is used for (the ``role`` of a :class:`Bitext` and of its manifest entry):
#: ``train``: general-domain training union; ``medical``/``medical_terms``/``questions``: domain
#: training data kept out of ``train.tsv``; ``eval``: translation evaluation sets (never trained on).
BitextRole = Literal["train", "medical", "medical_terms", "questions", "eval"]
TRAINING_ROLES: frozenset[str] = frozenset({"train", "medical", "medical_terms", "questions"})


@dataclass
class Bitext:
    """One named set of pairs in one language, with where it came from and what cleaning dropped."""

    name: str
    lang: str
    role: BitextRole
    pairs: list[BitextPair]
    licence: str
    origin: str
    raw: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    #: pairs removed because their text occurs in an evaluation set (filled in by the build).
    overlap_removed: int = 0
    #: what the alignment check found and did per document (:func:`optical_lightning.data.alignment_check.summary`)
    alignment: dict[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.raw:
            self.raw = len(self.pairs)


@dataclass
class RetrievalFolder:
    """A query -> document evaluation set as a source yields it, to be written as a folder (``queries.tsv``,
    ``queries.en.tsv``, ``docs.tsv``, ``qrels.tsv``) that evaluation reads back as a
    :class:`~optical_lightning.evaluation.datasets.RetrievalSet`; all rows are ``(id, text)`` except qrels
    ``(qid, docid, relevance)``."""

    name: str
    lang: str
    queries: list[tuple[str, str]]
    queries_en: list[tuple[str, str]]
    docs: list[tuple[str, str]]
    qrels: list[tuple[str, str, int]]
    licence: str
    origin: str
    #: extra texts (e.g. single paragraphs of a multi-paragraph query) that must not be trained on.
    extra_texts: list[str] = field(default_factory=list)


@dataclass
class MCQASet:
    """Multiple-choice questions in Global-MMLU columns (``sample_id`` or ``id``, ``subject, question,
    option_a .. option_d, answer``), written to ``eval/mcqa/<name>-<lang>.jsonl``, or to
    ``eval/mcqa/<name>/<lang>.<split>.jsonl`` for a set with splits (AfriMMLU)."""

    name: str
    lang: str
    rows: list[dict[str, str]]
    licence: str
    origin: str
    skipped: int = 0  # malformed rows (e.g. stray header lines) left out
    split: str | None = None
    #: whether its questions and choices are removed from every training file (the overlap check)
    keep_out_of_training: bool = True

    @property
    def file(self) -> str:
        """Where the set is written, relative to ``eval/mcqa/``."""
        return f"{self.name}/{self.lang}.{self.split}.jsonl" if self.split else f"{self.name}-{self.lang}.jsonl"


#: joins the senses of a headword in the ``en`` column of ``eval/dictionaries/<lang>-en.tsv``
SENSE_SEPARATOR = " | "


@dataclass
class Dictionary:
    """A ``<lang>`` -> English word list for the translate-test baseline, written to
    ``eval/dictionaries/<lang>-en.tsv``: headword -> English senses in the dictionary's order.
    Never training data: it only translates queries at evaluation time."""

    lang: str
    entries: dict[str, list[str]]
    licence: str
    origin: str

    @property
    def name(self) -> str:
        return f"{self.lang}-en"

    @property
    def file(self) -> str:
        """Where it is written, relative to ``eval/dictionaries/``."""
        return f"{self.name}.tsv"

    def rows(self) -> list[tuple[str, str]]:
        """``(<lang>, en)`` rows: one per headword, its senses joined by :data:`SENSE_SEPARATOR`."""
        return [(word, SENSE_SEPARATOR.join(" ".join(s.replace("|", "/").split()) for s in senses))
                for word, senses in self.entries.items()]


@dataclass
class SourceResult:
    """Everything one source produced, or why it produced nothing (``status == "skipped"``)."""

    name: str
    licence: str
    origin: str
    status: Literal["ok", "skipped"] = "ok"
    reason: str = ""
    version: str = ""
    bitexts: list[Bitext] = field(default_factory=list)
    retrieval: list[RetrievalFolder] = field(default_factory=list)
    mcqa: list[MCQASet] = field(default_factory=list)
    dictionaries: list[Dictionary] = field(default_factory=list)


@dataclass(frozen=True)
class SourceContext:
    """What every source's ``load`` is given: where to cache downloads, which languages to build,
    whether the network may be used, and the optional local data mirror."""

    cache: Path
    langs: tuple[str, ...] = ("sw", "so")
    offline: bool = False
    mirror: Path | None = None


class SourceSkipped(Exception):
    """Raised by a source whose tool, package or file is unavailable; the build logs one warning
    line (``skipped: <why>``) and carries on with the other sources."""
