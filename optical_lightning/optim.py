"""Learning-rate schedule: linear warm-up then linear decay to zero (the BERT fine-tuning default)."""

from __future__ import annotations

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from optical_lightning.errors import ConfigError


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
