"""From ``conf/`` to objects: the OmegaConf resolvers the configs use (registered once by ``run.py``
and the tests) and :func:`build`, Hydra's ``instantiate`` with one-line errors that name the setting."""

from __future__ import annotations

import difflib
import inspect
import os
import re
from pathlib import Path
from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import get_object, instantiate
from omegaconf import DictConfig, OmegaConf

from optical_lightning.utils.errors import ConfigError, OpticalError, user_error


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
    from optical_lightning.utils.precision import training_precision

    return training_precision(accelerator)


RESOLVERS = {"wandb_offline": wandb_offline, "run_name": run_name, "run_group": run_group,
             "auto_precision": auto_precision}


def register_resolvers() -> None:
    for name, fn in RESOLVERS.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)


def build(node: DictConfig, key: str, **kwargs: Any) -> Any:
    """``instantiate(node, **kwargs)``; a failure becomes one :class:`ConfigError` naming ``key``
    (the config path, e.g. ``trainer``) and the root cause, instead of Hydra's wrapped traceback."""
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as e:
        raise explain(e, key) from e


def explain(exc: InstantiationException, key: str) -> OpticalError:
    """The one-line error behind a failed ``instantiate`` of the setting ``key``."""
    if (ours := user_error(exc)) is not None:  # our constructors already say what to fix
        return ours
    root: BaseException = exc
    while root.__cause__ is not None:
        root = root.__cause__
    if (nested := re.search(r"full_key: (\S+)", str(exc))) is not None:  # e.g. callbacks.plan_figure
        found = nested.group(1)  # absolute when the node still knows its parent config, else relative to it
        key = found if found == key or found.startswith(f"{key}.") else f"{key}.{found}"
    if isinstance(root, ModuleNotFoundError) and "torch_xla" in f"{root.name} {root}":  # no pip extra provides it
        return ConfigError(f"{key}.accelerator=tpu needs the package torch_xla, which installs only on a TPU host "
                           f"(a Cloud TPU VM), so `make install` cannot provide it; use {key}.accelerator=gpu or cpu")
    if isinstance(root, ModuleNotFoundError) and not str(root.name).startswith("optical_lightning"):
        return ConfigError(f"{key}: cannot import {root.name or root} - a dependency is missing from this "
                           f"environment; run `make install` (or pip install -e .)")
    if isinstance(root, ImportError) or root is exc:  # the _target_ itself cannot be found
        return ConfigError(f"{key}: {' '.join(str(root).split())}")
    unknown = re.search(r"unexpected keyword argument '(\w+)'", str(root))
    if isinstance(root, TypeError) and unknown:
        return ConfigError(_unknown_setting(key, unknown.group(1), _failed_target(exc)))
    return ConfigError(f"{key}: {type(root).__name__}: {' '.join(str(root).split())}")


def _failed_target(exc: InstantiationException) -> Any:
    """The callable whose call failed, as Hydra names it ("Error in call to target 'x.y.Z'")."""
    named = re.search(r"Error in call to target '([^']+)'", str(exc))
    try:
        return get_object(named.group(1)) if named else None
    except Exception:  # noqa: BLE001 - only used to list the settings in a message
        return None


def _unknown_setting(key: str, name: str, target: Any) -> str:
    try:
        known = [p for p in inspect.signature(target).parameters if p not in ("self", "args", "kwargs")]
    except (TypeError, ValueError):
        known = []
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" (did you mean {key}.{close[0]}?)" if close else ""
    where = f" of {getattr(target, '__qualname__', target)}" if target is not None else ""
    settings = f"; its settings are {', '.join(known)}" if known else ""
    return f"{key}.{name}: unknown setting{where}{hint}{settings}"
