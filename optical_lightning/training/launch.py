"""Running a multi-process (DDP) job inside a Hydra multirun.

The trap: Lightning's DDP launcher starts ranks 1..N-1 by re-executing ``sys.argv``. In a
multirun that command line is the whole sweep (``run.py -m lang=sw,so ...``), so every child
would run every job again (a known interaction of Lightning's DDP launcher and Hydra multiruns). The fix here keeps both
engines as they are: a multirun job that would spawn processes first writes its fully resolved
config into its own folder, then runs *as a single run* in a fresh process
(``run.py --config-path <job>/.launch --config-name config hydra.run.dir=<job>``). Inside that
process ``sys.argv`` describes exactly one job, so Lightning's launcher re-executes the job, not the
sweep. Processes started by a cluster (SLURM tasks, torchrun) are already one per rank and run in
place.

Several nodes (``trainer.num_nodes=N``) meet at ``MASTER_ADDR:MASTER_PORT``, and rank 0 waits there
until every process has joined. Started on one machine without a cluster, that wait never ends
(Lightning printed ``MEMBER: 1/4`` and nothing else), so :func:`check_cluster` refuses ``num_nodes > 1``
outside a cluster before any model loads, :func:`announce_rendezvous` says what the job waits for and
for how long, and :func:`rendezvous_failed` turns the timeout into one line.
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
from optical_lightning.utils.errors import ConfigError, OpticalError, require_int

log = logging.getLogger(__name__)
LAUNCH_DIR = ".launch"
# Variables set by what starts one process per node: SLURM, torchrun, LSF, MPI, or by hand (Lightning's
# "general cluster": MASTER_ADDR, MASTER_PORT and NODE_RANK on every node).
CLUSTER_VARIABLES = ("SLURM_JOB_ID", "SLURM_NTASKS", "TORCHELASTIC_RUN_ID", "GROUP_RANK", "LSB_JOBID",
                     "OMPI_COMM_WORLD_SIZE", "MASTER_ADDR", "NODE_RANK")
STRATEGY_TIMEOUT = ("'++trainer.strategy={_target_:pytorch_lightning.strategies.DDPStrategy,"
                    "timeout:{_target_:datetime.timedelta,minutes:10}}'")


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


def check_cluster(trainer_cfg: DictConfig) -> int:
    """``trainer.num_nodes`` as an integer >= 1; more than 1 only inside a cluster (one line otherwise)."""
    num_nodes = require_int("trainer.num_nodes", trainer_cfg.get("num_nodes", 1), minimum=1)
    if num_nodes > 1 and not any(name in os.environ for name in CLUSTER_VARIABLES):
        raise ConfigError(
            f"trainer.num_nodes={num_nodes} but nothing started this process as one of {num_nodes} nodes (no SLURM job, "
            f"torchrun, or MASTER_ADDR/NODE_RANK), so it would wait for the other nodes forever; start it on every node "
            f"(srun, torchrun --nnodes={num_nodes}, or MASTER_ADDR, MASTER_PORT and NODE_RANK=0..{num_nodes - 1} set "
            f"by hand), or set trainer.num_nodes=1")
    return num_nodes


def _meeting_point(trainer: Any) -> tuple[str, str, Any]:
    """(address, port, timeout) where and for how long the processes of ``trainer`` wait for each other."""
    env = trainer.strategy.cluster_environment
    address = os.environ.get("MASTER_ADDR") or getattr(env, "main_address", "?")
    port = os.environ.get("MASTER_PORT") or getattr(env, "main_port", "?")
    return address, str(port), getattr(trainer.strategy, "_timeout", None)


def announce_rendezvous(trainer: Any) -> None:
    """One log line before a multi-node ``trainer.fit``: what it waits for, where, and for how long."""
    if trainer.num_nodes <= 1 or trainer.global_rank != 0:
        return
    address, port, timeout = _meeting_point(trainer)
    log.info("waiting for the processes of %d more node(s) to join at %s:%s (%d processes in all); gives up after %s "
             "(the DDP strategy's timeout: %s)", trainer.num_nodes - 1, address, port, trainer.world_size, timeout,
             STRATEGY_TIMEOUT)


def rendezvous_failed(exc: BaseException, trainer: Any) -> OpticalError | None:
    """The one-line error of processes that did not all join within the timeout, else None."""
    import torch.distributed as dist

    text = " ".join(str(exc).split())
    if not isinstance(exc, dist.DistError) or ("waiting for clients" not in text and "timed out" not in text.lower()):
        return None
    address, port, timeout = _meeting_point(trainer)
    return OpticalError(
        f"the {trainer.world_size} processes of trainer.num_nodes={trainer.num_nodes} did not all meet at {address}:{port} "
        f"within {timeout} ({text}); start the job on every node with the same MASTER_ADDR/MASTER_PORT, wait longer "
        f"with {STRATEGY_TIMEOUT}, or set trainer.num_nodes=1")
