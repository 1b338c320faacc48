"""IR metrics through ir-measures (``nDCG@10``, ``RR@10``, ``R@100``, ``P@1`` ... any measure string it parses).

Queries with relevance judgements but no retrieved document still count (as 0), so a run that
silently drops queries cannot look better than it is.
"""

from __future__ import annotations

import ir_measures

from optical_lightning.utils.errors import ConfigError, require_int

DEFAULT_METRICS = ("nDCG@10", "RR@10", "R@100", "P@1")


def parse_metrics(names: list[str] | tuple[str, ...]) -> list:
    """ir-measures objects for ``names``; an unknown name or a cutoff below 1 is a :class:`ConfigError`.

    The cutoff is checked here, where both ``retrieval.metrics`` and ``search --metrics`` are parsed, because
    pytrec_eval aborts the whole process (a C assertion, no exception) on ``nDCG@0``.
    """
    try:
        measures = [ir_measures.parse_measure(n) for n in names]
    except Exception as e:  # ir-measures raises several types for unparsable strings
        raise ConfigError(f"unknown metric in {list(names)}: use ir-measures names such as nDCG@10, RR@10, R@100") from e
    for name, measure in zip(names, measures):
        cutoff = measure.params.get("cutoff")
        if cutoff is not None and (isinstance(cutoff, bool) or not isinstance(cutoff, int) or cutoff < 1):
            raise ConfigError(f"metric {name}: the cutoff @{cutoff} must be an integer >= 1 (e.g. "
                              f"{name.split('@')[0]}@10)")
    return measures


def deepest_cutoff(names: list[str] | tuple[str, ...]) -> int:
    """The largest ``@k`` among the metrics (1 when none has one): the depth a search must return."""
    return max([int(m.params.get("cutoff") or 1) for m in parse_metrics(names)] or [1])


def check_depth(key: str, k: object, names: list[str] | tuple[str, ...]) -> int:
    """``k`` (documents retrieved per query) as a positive integer that reaches every metric's cutoff."""
    require_int(key, k, minimum=1)
    depth = deepest_cutoff(names)
    if k < depth:
        raise ConfigError(f"{key}={k} retrieves fewer documents than the metrics need ({depth} for "
                          f"{', '.join(n for n in names if f'@{depth}' in n)}); set {key}={depth} or more, or leave that metric out")
    return k


def evaluate_run(run: dict[str, dict[str, float]], qrels: dict[str, dict[str, int]],
                 metrics: list[str] | tuple[str, ...] = DEFAULT_METRICS) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """Mean of each metric over all judged queries, and the per-query values ``{qid: {metric: value}}``."""
    measures = parse_metrics(metrics)
    judged = {q: docs for q, docs in qrels.items() if any(r > 0 for r in docs.values())}
    per_query: dict[str, dict[str, float]] = {q: {str(m): 0.0 for m in measures} for q in judged}
    qrel_list = [ir_measures.Qrel(q, d, r) for q, docs in judged.items() for d, r in docs.items()]
    run_list = [ir_measures.ScoredDoc(q, d, s) for q, docs in run.items() if q in judged for d, s in docs.items()]
    for value in ir_measures.iter_calc(measures, qrel_list, run_list):
        per_query[value.query_id][str(value.measure)] = float(value.value)
    n = max(1, len(per_query))
    mean = {str(m): sum(v[str(m)] for v in per_query.values()) / n for m in measures}
    return mean, per_query
