"""Optimisation: the learning-rate schedule (linear warm-up then linear decay to zero, the BERT
fine-tuning default), a dry run of the configured factories before any model loads, and the
checks of numeric settings that would otherwise surface as a NaN loss minutes into training.

Bounds, and why:

* every float setting must be a finite number: ``nan`` or ``inf`` anywhere (a learning rate, a loss
  weight, ``trainer.gradient_clip_val``, ``ot.blur``) makes the loss or the weights non-finite;
* ``0 < lr <= 1`` (:data:`MAX_LR`): Adam-type optimisers (AdamW here) move every weight by about
  ``lr`` per step, and a pretrained encoder's weights are ~0.05 in size, so a step of 1 already
  overwrites them; ``lr=1e6`` (a slip for ``1e-6``) made the student 100% NaN within 3 steps;
* ``seed`` is an integer in numpy's range, as every generator of the run is seeded from it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from optical_lightning.utils.errors import ConfigError, OpticalError

MAX_LR = 1.0
MAX_SEED = 2**32 - 1  # numpy's seeds are 32-bit


def linear_warmup_decay(optimizer: Optimizer, total_steps: int, warmup_ratio: float = 0.1) -> LambdaLR:
    """Multiply the base lr by ``t / warmup`` for ``t < warmup`` and decay linearly to 0 at ``total_steps``."""
    if not 0.0 <= warmup_ratio < 1.0:
        raise ConfigError(f"optim.scheduler.warmup_ratio={warmup_ratio}: must lie in [0, 1)")
    total = max(1, int(total_steps))
    warmup = int(warmup_ratio * total)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return max(0.0, (total - step) / max(1, total - warmup))

    return LambdaLR(optimizer, factor)


def check_factories(optimizer: Callable[..., Optimizer], scheduler: Callable[..., Any] | None, total_steps: int) -> None:
    """Build the optimizer and scheduler once over a single dummy parameter: a negative lr or an
    unknown setting fails here, in one line, instead of inside ``trainer.fit`` minutes later."""
    built = _dry_run("optim.optimizer", optimizer, params=[torch.nn.Parameter(torch.zeros(1))])
    for group in built.param_groups:
        check_learning_rate(group.get("lr"))
    if scheduler is not None:
        _dry_run("optim.scheduler", scheduler, optimizer=built, total_steps=total_steps)


def _dry_run(key: str, factory: Callable[..., Any], **kwargs: Any) -> Any:
    try:
        return factory(**kwargs)
    except OpticalError:
        raise
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{key}: {' '.join(str(e).split())}") from e


def check_learning_rate(lr: object, key: str = "optim.optimizer.lr") -> None:
    """``0 < lr <= MAX_LR`` (see the module docstring); a one-line error otherwise, before any model loads."""
    if isinstance(lr, torch.Tensor):
        lr = lr.item()
    if isinstance(lr, bool) or not isinstance(lr, (int, float)):
        raise ConfigError(f"{key}={lr!r}: must be a number, e.g. 2e-4")
    if not math.isfinite(lr) or lr <= 0:
        raise ConfigError(f"{key}={lr}: must be a finite number > 0 (lr=0 trains nothing: use distill=none); e.g. 2e-4")
    if lr > MAX_LR:
        guess = f"; did you mean {1 / lr:g}?" if math.log10(lr).is_integer() else ""
        raise ConfigError(f"{key}={lr:g}: above {MAX_LR:g}, where an Adam-type optimiser moves every weight by about "
                          f"lr per step and the student diverges to NaN; use e.g. 2e-4{guess}")


def check_numeric_settings(config: Any) -> None:
    """Every interpolation resolves, ``seed`` is an integer in numpy's range and no float setting anywhere is
    ``nan`` or ``inf``.

    Runs first, on the config as given (so ``seed=abc`` is named before anything is seeded), and walks
    every setting, so a new float setting is covered without being listed here.
    """
    from omegaconf import DictConfig, ListConfig, OmegaConf
    from omegaconf.errors import InterpolationKeyError

    if isinstance(config, (DictConfig, ListConfig)):
        try:
            config = OmegaConf.to_container(config, resolve=True)
        except InterpolationKeyError as e:  # e.g. an evaluator reading ${mcqa.template} after mcqa=none
            missing = str(e.msg).split("'")[1] if "'" in str(e.msg) else str(e.msg)
            parent = (e.full_key or "the setting").rsplit(".", 1)[0]
            raise ConfigError(f"{e.full_key} refers to {missing}, which this config does not have: set {missing}, "
                              f"or drop the entry with {parent}=null") from None
    seed = config.get("seed") if isinstance(config, dict) else None
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise ConfigError(f"seed={seed!r}: must be an integer in [0, {MAX_SEED}] (it seeds torch, numpy and the data order), "
                          f"e.g. seed=42")
    # shallowest first: a value interpolated into a deeper node (distill.module's copy of ot) is named where it is set
    for key, value in sorted(_floats(config), key=lambda kv: kv[0].count(".")):
        if not math.isfinite(value):
            raise ConfigError(f"{key}={value}: not a finite number; every numeric setting must be finite "
                              f"(give a number, or null where the setting allows it)")


def _floats(node: Any, prefix: str = "") -> list[tuple[str, float]]:
    """Every float setting under ``node`` as (dotted key, value)."""
    if isinstance(node, dict):
        return [kv for k, v in node.items() for kv in _floats(v, f"{prefix}{k}.")]
    if isinstance(node, (list, tuple)):
        return [kv for i, v in enumerate(node) for kv in _floats(v, f"{prefix[:-1]}[{i}].")]
    return [(prefix[:-1], node)] if isinstance(node, float) else []
