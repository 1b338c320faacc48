"""`make bench`: `python experiments/bench.py [overrides]` writes outputs/bench/bench.{json,md}.

See optical_lightning_study/bench/ for what is measured; the config is conf/bench.yaml.
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from optical_lightning.utils.config import register_resolvers
from optical_lightning.utils.errors import user_error

register_resolvers()


@hydra.main(version_base="1.3", config_path="../conf", config_name="bench")
def main(cfg: DictConfig) -> None:
    from optical_lightning_study.bench.runner import markdown, run_bench

    try:
        results = run_bench(cfg)
    except Exception as e:
        if (cause := user_error(e)) is None:
            raise
        print(f"error: {cause}", file=sys.stderr)
        sys.exit(2)
    print(markdown(results))


if __name__ == "__main__":
    main()
