"""OmegaConf resolvers used by ``conf/`` (registered once by ``run.py`` and the tests)."""

from __future__ import annotations

import os
from pathlib import Path

from omegaconf import OmegaConf


def wandb_offline() -> bool:
    """W&B stays offline unless ``WANDB_MODE=online``, or an API key is set and no mode forbids it."""
    mode = os.environ.get("WANDB_MODE", "").lower()
    if mode in ("offline", "disabled", "dryrun"):
        return True
    return not (mode == "online" or os.environ.get("WANDB_API_KEY"))


def run_name(task_name: str, overrides: str) -> str:
    """A run's display name: its command-line overrides (``lang=so,domain.ratio=0.5``), which is
    what tells the jobs of one sweep apart, or the task name when there are none."""
    return overrides or task_name


def run_group(task_name: str, mode: object, sweep_dir: str) -> str:
    """The W&B group: all jobs of one multirun share ``<task>/<sweep folder>``; single runs get the task."""
    return f"{task_name}/{Path(str(sweep_dir)).name}" if "MULTIRUN" in str(mode) else task_name


def auto_precision(accelerator: str = "cpu") -> str:
    from optical_lightning.precision import training_precision

    return training_precision(accelerator)


RESOLVERS = {"wandb_offline": wandb_offline, "run_name": run_name, "run_group": run_group,
             "auto_precision": auto_precision}


def register_resolvers() -> None:
    for name, fn in RESOLVERS.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)
