"""What became of each job of a multirun: a failed job leaves ``error.json``, and the sweep goes on.

A user mistake in one job of ``python run.py -m ...`` (``distill.nce_weight=1,-1,0.5``) used to end the
whole sweep, so the valid jobs after it never ran. Now ``run.py`` prints the job's one-line error,
records it in ``<job dir>/error.json`` and lets Hydra start the next job; :class:`SweepStatus` (a Hydra
callback, ``conf/hydra/default.yaml``) lists every failed job at the end and exits with status 2, and
``experiments/summarize.py`` shows the same lines in its table.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from optical_lightning.utils.failures import ERROR, read_failure


class SweepStatus(Callback):
    """At the end of a multirun, one line per job that failed (``error.json`` written during this sweep);
    the process then exits with status 2 so that scripts and ``make`` see the failure."""

    def __init__(self) -> None:
        self.started = time.time()

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.started = time.time()

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        failed = [(path.parent, read_failure(path.parent)) for path in sorted(sweep_dir.rglob(ERROR))
                  if path.stat().st_mtime >= self.started - 1]
        failed = [(job, record) for job, record in failed if record is not None]
        if not failed:
            return
        print(f"error: {len(failed)} job(s) of this sweep failed; the others ran (see "
              f"`python experiments/summarize.py {sweep_dir}`):", file=sys.stderr)
        swept = swept_keys(config)
        for job, record in failed:
            varied = [o for o in record.get("overrides") or [] if o.split("=", 1)[0].lstrip("+~") in swept]
            print(f"  job {job.relative_to(sweep_dir)} ({','.join(varied)}): {record['error']}", file=sys.stderr)
        raise SystemExit(2)


def swept_keys(config: DictConfig) -> set[str]:
    """The settings a multirun varies (``a=1,2`` on the command line, or the sweeper's ``params``)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    arguments = list(config.hydra.overrides.task)
    params = config.hydra.sweeper.get("params") or {}
    arguments += [f"{key}={value}" for key, value in params.items()]
    try:
        parsed = OverridesParser.create().parse_overrides(arguments)
    except Exception:  # noqa: BLE001 - only used to shorten a message
        return set()
    return {o.get_key_element().lstrip("+~") for o in parsed if o.is_sweep_override()}
