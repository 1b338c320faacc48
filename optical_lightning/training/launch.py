"""Running a multi-process (DDP) job inside a Hydra multirun.

The trap: Lightning's DDP launcher starts ranks 1..N-1 by re-executing ``sys.argv``. In a
multirun that command line is the whole sweep (``run.py -m lang=sw,so ...``), so every child
would run every job again (Lightning issue 11300, Hydra issue 2070). The fix here keeps both
engines as they are: a multirun job that would spawn processes first writes its fully resolved
config into its own folder, then runs *as a single run* in a fresh process
(``run.py --config-path <job>/.launch --config-name config hydra.run.dir=<job>``). Inside that
process ``sys.argv`` describes exactly one job, so Lightning's launcher re-executes the job, not the
sweep. Processes started by a cluster (SLURM tasks, torchrun) are already one per rank and run in
place.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from optical_lightning.utils.atomic import atomic_write_text
from optical_lightning.utils.errors import OpticalError

log = logging.getLogger(__name__)
LAUNCH_DIR = ".launch"


def process_count(trainer_cfg: DictConfig) -> int:
    """Processes the trainer config asks Lightning to start on this node (1 when unsure)."""
    strategy = str(trainer_cfg.get("strategy", "auto"))
    if "spawn" in strategy or "fork" in strategy:
        return 1  # these launchers do not re-execute sys.argv
    devices = trainer_cfg.get("devices", 1)
    if isinstance(devices, int):
        return devices
    if isinstance(devices, str) and devices.isdigit():
        return int(devices)
    try:
        return len(devices)  # a list of device ids
    except TypeError:
        return 1


def launched_externally() -> bool:
    """True inside a process that a cluster or torchrun started as one rank."""
    env = os.environ
    return "LOCAL_RANK" in env or int(env.get("SLURM_NTASKS", "1")) > 1 or "TORCHELASTIC_RUN_ID" in env


def in_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def needs_own_process(cfg: DictConfig) -> bool:
    return in_multirun() and process_count(cfg.trainer) > 1 and not launched_externally()


def run_in_own_process(cfg: DictConfig, script: Path) -> dict[str, Any]:
    """Run this job as a single Hydra run in a child process; return its ``results.json``."""
    job_dir = Path(cfg.paths.output_dir).resolve()
    config_dir = job_dir / LAUNCH_DIR
    atomic_write_text(config_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    cmd = [sys.executable, str(script), "--config-path", str(config_dir), "--config-name", "config",
           f"hydra.run.dir={job_dir}", "hydra.output_subdir=null"]
    log.info("job with %d processes: running it as a single run (%s)", process_count(cfg.trainer), " ".join(cmd))
    env = dict(os.environ, TOKENIZERS_PARALLELISM=os.environ.get("TOKENIZERS_PARALLELISM", "false"))
    done = subprocess.run(cmd, env=env, check=False)
    results = job_dir / "results.json"
    if done.returncode != 0 or not results.is_file():
        raise OpticalError(f"job in {job_dir} failed (exit code {done.returncode}); see {job_dir}/run.log")
    return json.loads(results.read_text())
