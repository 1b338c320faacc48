"""Entry point: `python run.py [group=option ...] [key=value ...]`, or `python run.py -m ...` to sweep.

Thin by design: compose the config with Hydra, hand it to `optical_lightning.train.run`, and
return the metric a sweeper optimises. User mistakes are printed as one line, not a traceback.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from optical_lightning.config import register_resolvers
from optical_lightning.errors import user_error

register_resolvers()


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    from pytorch_lightning.utilities.exceptions import SIGTERMException

    from optical_lightning.launch import needs_own_process, run_in_own_process
    from optical_lightning.train import run  # heavy imports after Hydra has parsed the command line

    try:
        # a DDP job of a multirun runs as a single run in its own process (see optical_lightning/launch.py)
        results = run_in_own_process(cfg, Path(__file__)) if needs_own_process(cfg) else run(cfg)
    except SIGTERMException:  # Lightning's SystemExit(0) after SIGTERM: a stopped run must not look successful
        print(f"stopped by SIGTERM; a checkpoint is in {cfg.paths.output_dir}/checkpoints - run the same command "
              f"with hydra.run.dir={cfg.paths.output_dir} to resume (ckpt_path=auto)", file=sys.stderr)
        sys.exit(128 + signal.SIGTERM)
    except Exception as e:
        if (cause := user_error(e)) is None:
            raise
        print(f"error: {cause}", file=sys.stderr)
        sys.exit(2)
    return results.get("flat", {}).get(cfg.optimized_metric)


if __name__ == "__main__":
    main()
