"""Results to experiment trackers: the final tables of a run go to every W&B logger.

Lightning loggers already receive the training curves; what they lack is the end-of-run
evaluation, so :func:`publish` adds the full config, the flat metrics as the run summary, the
results table (set x metric x stage) and the per-query table. :func:`finish` closes the W&B run,
which a Hydra multirun needs between jobs: the next job in the same process would otherwise log
into the previous job's run.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pytorch_lightning.loggers import Logger, WandbLogger

from optical_lightning.summary import STAGES


def _wandb_loggers(loggers: Iterable[Logger]) -> list[WandbLogger]:
    return [lg for lg in loggers if isinstance(lg, WandbLogger)]


def publish(loggers: Iterable[Logger], results: dict[str, Any], per_query: dict[str, dict[str, dict[str, float]]]) -> None:
    targets = _wandb_loggers(loggers)
    if not targets:
        return
    import wandb

    rows = [[name, metric, *(stages.get(s, {}).get(metric) for s in STAGES)]
            for name, stages in results.get("metrics", {}).items()
            for metric in sorted({m for values in stages.values() for m in values})]
    query_rows = [[key, qid, metric, value] for key, queries in per_query.items()
                  for qid, values in queries.items() for metric, value in values.items()]
    for logger in targets:
        run = logger.experiment
        run.config.update(results.get("config", {}), allow_val_change=True)
        run.summary.update(results.get("flat", {}))
        run.summary.update({f"timing/{k}": v for k, v in results.get("timing", {}).items()})
        run.log({"results": wandb.Table(columns=["eval set", "metric", *STAGES], data=rows),
                 "per_query": wandb.Table(columns=["set/stage", "qid", "metric", "value"], data=query_rows)})


def finish(loggers: Iterable[Logger]) -> None:
    for logger in _wandb_loggers(loggers):
        if logger._experiment is not None:  # never started a run: nothing to close
            logger.experiment.finish()
