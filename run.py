"""Entry point: `python run.py [group=option ...] [key=value ...]`, or `python run.py -m ...` to sweep.

Thin by design: compose the config with Hydra, hand it to `optical_lightning.train.run`, and
return the metric a sweeper optimises. User mistakes are printed as one line, not a traceback.
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from optical_lightning.config import register_resolvers
from optical_lightning.errors import user_error

register_resolvers()


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    from optical_lightning.train import run  # heavy imports after Hydra has parsed the command line

    try:
        results = run(cfg)
    except Exception as e:
        if (cause := user_error(e)) is None:
            raise
        print(f"error: {cause}", file=sys.stderr)
        sys.exit(2)
    return results.get("flat", {}).get(cfg.optimized_metric)


if __name__ == "__main__":
    main()
