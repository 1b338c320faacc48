"""One protocol for every measurement of a run, after sentence-transformers' ``SentenceEvaluator``.

An evaluator is called with the run's encoders and a stage and returns ``{result name: metrics}``::

    evaluator.load(held_out)                       # cheap: read and check files before any weights load
    evaluator(Encoders(student, teacher), stage)   # -> {"afriqa-sw-en": {"nDCG@10": 0.69, ...}}

The pipeline and the learning-curve callback only loop over a list of evaluators, so one is added by
config alone: ``eval.evaluators.NAME={_target_: my.Evaluator, ...}`` (a config file or the command
line). Which encoder a stage measures is :meth:`Encoders.for_stage`'s rule, not each evaluator's.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from optical_lightning.data.bitext import BitextPair
from optical_lightning.evaluation.stages import Stage
from optical_lightning.utils.errors import require_int
from optical_lightning.utils.precision import inference_dtype

if TYPE_CHECKING:
    from optical_lightning.evaluation.translate_test import WordTranslator

#: the stages that measure the frozen English teacher rather than the student
TEACHER_STAGES = (Stage.TEACHER_EN, Stage.TRANSLATE_DENSE, Stage.TRANSLATE_BM25)

Metrics = dict[str, dict[str, Any]]


@dataclass(frozen=True)
class Encoders:
    """What a stage is measured with: the student, the frozen teacher, and for the translate-test stages
    the word-by-word translator of the run's language into English (``None`` without a dictionary)."""

    student: Any
    teacher: Any
    translator: WordTranslator | None = None

    def for_stage(self, stage: Stage | str) -> Any:
        """The encoder of the queries at ``stage``: the teacher at ``teacher_en`` and translate-test, else the
        student (``zero_shot``, ``trained``, and the learning curve's ``step<N>``)."""
        return self.teacher if stage in TEACHER_STAGES else self.student


@dataclass(frozen=True)
class HeldOut:
    """The run's held-out training pairs (``data.val_size``) and its domain's (``domain.val_size``)."""

    pairs: Sequence[BitextPair] = ()
    domain_pairs: Sequence[BitextPair] = ()


@dataclass(frozen=True)
class Encoding:
    """How evaluators encode text: batch size, precision (``auto`` | ``32`` | ``bf16``), and where the
    teacher's document embeddings are cached (``None``: not cached)."""

    batch_size: int = 64
    precision: str = "auto"
    cache_dir: str | None = None

    def __post_init__(self) -> None:
        require_int("batch_size", self.batch_size, minimum=1)
        inference_dtype(self.precision)  # fail fast on a typo


class Evaluator(ABC):
    """The base of every evaluator (see the module docstring). Subclasses implement :meth:`__call__`;
    the other methods have neutral defaults."""

    #: a missing input that the run skips rather than fails on: name -> why (``results.json: eval_skipped``);
    #: read-only here, an evaluator that skips something assigns its own dict
    skipped: Mapping[str, str] = MappingProxyType({})

    def load(self, held_out: HeldOut = HeldOut()) -> None:  # noqa: B008, B027 - frozen default; optional hook
        """Read and check the inputs (before any weights load); a missing optional one goes to :attr:`skipped`."""

    @property
    def active(self) -> bool:
        """Whether anything is left to evaluate after :meth:`load`."""
        return True

    @abstractmethod
    def __call__(self, encoders: Encoders, stage: Stage | str) -> Metrics:
        """``{result name: metrics}`` of ``stage``; empty where the stage does not apply."""

    def records(self) -> dict[str, Any]:
        """Files written beside ``results.json``: name -> JSON content (``per_query.json``, ``mcqa.json``)."""
        return {}

    def clear_records(self) -> None:  # noqa: B027 - optional hook
        """Forget what :meth:`records` would write (the learning curve evaluates many steps)."""

    def sizes(self) -> dict[str, dict[str, int]]:
        """Result name -> its size (queries, documents) for ``results.json: eval_sets``."""
        return {}

    def cache_counts(self) -> tuple[int, int]:
        """(hits, misses) of the embedding cache: whether this run computed or reused document embeddings."""
        return 0, 0

    def curve_values(self, metrics: dict[str, Any]) -> dict[str, float]:
        """The values of one result that the learning curve follows (default: every number)."""
        return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
