"""Optimisation: the learning-rate schedule (linear warm-up then linear decay to zero, the BERT
fine-tuning default) and a dry run of the configured factories before any model loads."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from optical_lightning.utils.errors import ConfigError, OpticalError


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
    if scheduler is not None:
        _dry_run("optim.scheduler", scheduler, optimizer=built, total_steps=total_steps)


def _dry_run(key: str, factory: Callable[..., Any], **kwargs: Any) -> Any:
    try:
        return factory(**kwargs)
    except OpticalError:
        raise
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{key}: {' '.join(str(e).split())}") from e
