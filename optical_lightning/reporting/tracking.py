"""Results to experiment trackers: the final tables of a run go to every W&B logger, and the CSV
log of a resumed run continues instead of starting over (:class:`ResumableCSVLogger`).

Lightning loggers already receive the training curves; what they lack is the end-of-run
evaluation, so :func:`publish` adds the full config, the flat metrics as the run summary, the
results table (set x metric x stage) and the per-query table. :func:`finish` closes the W&B run,
which a Hydra multirun needs between jobs: the next job in the same process would otherwise log
into the previous job's run.

:class:`WandbTracker` (``logger=wandb``) is Lightning's W&B logger with two one-line errors: an online
run without credentials is refused when the logger is built, before any model loads (it used to fail
after the zero-shot evaluation), and a W&B run that cannot start (no network) says so in one line.
"""

from __future__ import annotations

import csv
import netrc
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from pytorch_lightning.loggers import CSVLogger, Logger, WandbLogger
from pytorch_lightning.loggers.csv_logs import ExperimentWriter
from pytorch_lightning.loggers.logger import rank_zero_experiment

from optical_lightning.reporting.summary import stage_columns
from optical_lightning.utils.errors import ConfigError, OpticalError

OFFLINE_HINT = "or run offline with WANDB_MODE=offline (and `wandb sync <run dir>/wandb` later)"


def wandb_credentials() -> str | None:
    """Where an online W&B run would find its API key (``WANDB_API_KEY``, an identity token file, or a
    netrc entry for the W&B host), or None; reads files only, never the network."""
    if os.environ.get("WANDB_API_KEY"):
        return "WANDB_API_KEY"
    if os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return "WANDB_IDENTITY_TOKEN_FILE"
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname or "api.wandb.ai"
    path = Path(os.environ.get("NETRC") or Path.home() / ".netrc").expanduser()
    try:
        return str(path) if netrc.netrc(path).authenticators(host) else None
    except (OSError, netrc.NetrcParseError):
        return None


class WandbTracker(WandbLogger):
    """Lightning's :class:`WandbLogger`; an online run checks for credentials when built and turns a
    failed start into one line (see the module docstring)."""

    def __init__(self, *args: Any, offline: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, offline=offline, **kwargs)
        if not offline and os.environ.get("WANDB_MODE", "").lower() != "disabled" and wandb_credentials() is None:
            raise ConfigError("logger=wandb runs online (WANDB_MODE=online) but finds no W&B API key: set WANDB_API_KEY "
                              f"or run `wandb login`, {OFFLINE_HINT}")

    @property
    def experiment(self) -> Any:
        try:
            return WandbLogger.experiment.fget(self)
        except OpticalError:
            raise
        except Exception as e:  # wandb.init: no network, a rejected key, a timeout
            why = " ".join(str(e).split())[:200] or type(e).__name__
            raise OpticalError(f"logger=wandb could not start its W&B run ({type(e).__name__}: {why}); check the network "
                               f"and WANDB_API_KEY, {OFFLINE_HINT}") from e


def _wandb_loggers(loggers: Iterable[Logger]) -> list[WandbLogger]:
    return [lg for lg in loggers if isinstance(lg, WandbLogger)]


def publish(loggers: Iterable[Logger], results: dict[str, Any], per_query: dict[str, dict[str, dict[str, float]]]) -> None:
    targets = _wandb_loggers(loggers)
    if not targets:
        return
    import wandb

    columns = stage_columns(results.get("metrics", {}))
    rows = [[name, metric, *(stages.get(s, {}).get(metric) for s in columns)]
            for name, stages in results.get("metrics", {}).items()
            for metric in sorted({m for values in stages.values() for m in values})]
    query_rows = [[key, qid, metric, value] for key, queries in per_query.items()
                  for qid, values in queries.items() for metric, value in values.items()]
    for logger in targets:
        run = logger.experiment
        run.config.update(results.get("config", {}), allow_val_change=True)
        run.summary.update(results.get("flat", {}))
        run.summary.update({f"timing/{k}": v for k, v in results.get("timing", {}).items()})
        run.log({"results": wandb.Table(columns=["eval set", "metric", *columns], data=rows),
                 "per_query": wandb.Table(columns=["set/stage", "qid", "metric", "value"], data=query_rows)})


def finish(loggers: Iterable[Logger]) -> None:
    for logger in _wandb_loggers(loggers):
        if logger._experiment is not None:  # never started a run: nothing to close
            logger.experiment.finish()


class ResumableCSVLogger(CSVLogger):
    """Lightning's CSV logger, except that an existing ``metrics.csv`` is continued, not deleted.

    Lightning's writer removes the file it finds, so every resume lost the earlier attempt's rows.
    Here the rows logged before ``resume_step`` (the step of the checkpoint the run resumes from)
    are kept and new rows are appended; later rows are dropped, since the resumed run logs those
    steps again. A fresh start (``resume_step=0``) begins an empty log.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.resume_step = 0

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _ContinuingWriter(self.log_dir, keep_before_step=self.resume_step)
        return self._experiment


class _ContinuingWriter(ExperimentWriter):
    def __init__(self, log_dir: str, keep_before_step: int) -> None:
        self.keep_before_step = keep_before_step
        super().__init__(log_dir)

    def _check_log_dir_exists(self) -> None:  # Lightning's version deletes metrics.csv
        path = self.metrics_file_path
        if not os.path.isfile(path):
            return
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            header, rows = list(reader.fieldnames or []), list(reader)
        kept = [r for r in rows if r.get("step") not in (None, "") and int(float(r["step"])) < self.keep_before_step]
        if not kept:
            os.remove(path)
            return
        with open(path, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=header)
            writer.writeheader()
            writer.writerows(kept)
        self.metrics_keys = header  # new rows are appended under the same header (widened if keys are new)
