"""Evaluation: evaluators called with the encoders and a stage (:mod:`~optical_lightning.evaluation.protocol`)."""

from optical_lightning.evaluation.datasets import RetrievalSet, load_retrieval_dir, load_translation_set
from optical_lightning.evaluation.metrics import DEFAULT_METRICS, evaluate_run
from optical_lightning.evaluation.protocol import Encoders, Encoding, Evaluator, HeldOut
from optical_lightning.evaluation.retrieval import RetrievalEvaluator
from optical_lightning.evaluation.retrieval_sets import RetrievalSets
from optical_lightning.evaluation.scoring import maxsim_search, pooled_search

__all__ = [
    "DEFAULT_METRICS", "Encoders", "Encoding", "Evaluator", "HeldOut", "RetrievalEvaluator", "RetrievalSet",
    "RetrievalSets", "evaluate_run", "load_retrieval_dir", "load_translation_set", "maxsim_search", "pooled_search",
]
