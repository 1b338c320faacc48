"""Cross-lingual retrieval evaluation: student(queries) against teacher(documents)."""

from optical_lightning.evaluation.datasets import RetrievalSet, load_retrieval_dir, load_translation_set
from optical_lightning.evaluation.metrics import DEFAULT_METRICS, evaluate_run
from optical_lightning.evaluation.scoring import maxsim_search, pooled_search
from optical_lightning.evaluation.suite import EvalSuite

__all__ = [
    "DEFAULT_METRICS", "EvalSuite", "RetrievalSet", "evaluate_run", "load_retrieval_dir", "load_translation_set",
    "maxsim_search", "pooled_search",
]
