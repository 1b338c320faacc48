"""Entry point: `python run.py [group=option ...] [key=value ...]`, or `python run.py -m ...` to sweep.

Thin by design: compose the config with Hydra, hand it to `optical_lightning.training.pipeline.run`, and
return the metric a sweeper optimises. User mistakes are printed as one line, not a traceback
(``HYDRA_FULL_ERROR=1`` shows it), and in a multirun the failed job is recorded and the sweep goes on
(:mod:`optical_lightning.training.sweep_status`); a run stopped by Ctrl-C or SIGTERM says how to resume and exits
with 128 + the signal number.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from optical_lightning.utils.config import register_resolvers
from optical_lightning.utils.errors import RunInterrupted, user_error
from optical_lightning.utils.failures import clear_failure, record_failure

register_resolvers()


def _multirun_job() -> tuple[int, list[str]] | None:
    """(job number, overrides) when this run is one job of a multirun, else None."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return None
    return HydraConfig.get().job.num, list(HydraConfig.get().overrides.task)


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    # heavy imports after Hydra has parsed the command line
    from optical_lightning.training.launch import needs_own_process, run_in_own_process
    from optical_lightning.training.pipeline import run

    job = _multirun_job()
    if job is not None:
        clear_failure(Path(cfg.paths.output_dir))
    try:
        # a DDP job of a multirun runs as a single run in its own process (see optical_lightning/training/launch.py)
        results = run_in_own_process(cfg, Path(__file__)) if needs_own_process(cfg) else run(cfg)
    except RunInterrupted as e:  # Ctrl-C or SIGTERM during training: say where the checkpoint is
        print(f"{e}", file=sys.stderr)
        sys.exit(128 + e.signum)
    except KeyboardInterrupt:  # Ctrl-C outside training (loading, evaluating)
        print(f"interrupted; run the same command with hydra.run.dir={cfg.paths.output_dir} to continue "
              f"(a complete run is never redone, an unfinished one resumes from its last checkpoint)", file=sys.stderr)
        sys.exit(128 + signal.SIGINT)
    except Exception as e:
        if (cause := user_error(e)) is None or os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        if job is None:
            print(f"error: {cause}", file=sys.stderr)
            sys.exit(2)
        # one bad job of a sweep must not stop the others: record it, and let Hydra start the next job
        number, overrides = job
        print(f"error: job {number}: {cause}", file=sys.stderr)
        record_failure(Path(cfg.paths.output_dir), str(cause), overrides)
        return None
    return results.get("flat", {}).get(cfg.optimized_metric)


if __name__ == "__main__":
    main()
