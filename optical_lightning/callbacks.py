"""Lightning callbacks of a distillation run."""

from __future__ import annotations

import logging
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import WandbLogger

from optical_lightning.plots import plan_heatmaps

log = logging.getLogger(__name__)


class TransportPlanFigure(pl.Callback):
    """After training, draw the OT plan between teacher (English) and student tokens for a few
    held-out pairs: ``<run dir>/plots/ot_plan.png``, also logged as the ``ot_plan`` image to W&B.

    It shows what OPTICAL actually aligns (e.g. "fever" -> "homa"), which a loss curve cannot.
    Runs without an OT head (``distill=mse``) have no plan and skip it.
    """

    def __init__(self, num_pairs: int = 3, max_tokens: int = 24, filename: str = "plots/ot_plan.png") -> None:
        self.num_pairs, self.max_tokens, self.filename = num_pairs, max_tokens, filename
        self.path: Path | None = None

    @torch.no_grad()
    def on_fit_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        dm = trainer.datamodule
        if not trainer.is_global_zero or getattr(module, "ot_head", None) is None or dm is None:
            return
        pairs = (dm.val_pairs or dm.train_pairs)[: self.num_pairs]
        short = sorted(pairs, key=lambda p: len(p.en))  # readable figures: shortest first
        batch = dm.collate_fn(short)
        batch = {k: {n: t.to(module.device) for n, t in v.items()} for k, v in batch.items()}
        was_training = module.training
        module.eval()
        teacher, student = module.teacher(batch["teacher_en"]), module.student(batch["student_tgt"])
        out = module.transport(teacher, batch["teacher_en"], student, batch["student_tgt"])
        module.train(was_training)
        plans, en_tokens, tgt_tokens = [], [], []
        for i in range(len(short)):
            rows = out.plan[i].sum(1) > 0
            cols = out.plan[i].sum(0) > 0
            rows &= rows.cumsum(0) <= self.max_tokens
            cols &= cols.cumsum(0) <= self.max_tokens
            plans.append(out.plan[i][rows][:, cols].float().cpu())
            en_tokens.append(_tokens(module.teacher, batch["teacher_en"]["input_ids"][i][rows]))
            tgt_tokens.append(_tokens(module.student, batch["student_tgt"]["input_ids"][i][cols]))
        lang = getattr(dm, "lang", "tgt")
        self.path = plan_heatmaps(plans, en_tokens, tgt_tokens, Path(trainer.default_root_dir) / self.filename,
                                  lang=lang, title=f"OT plan after {trainer.global_step} steps (en x {lang})")
        log.info("wrote %s", self.path)
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_image("ot_plan", [str(self.path)], step=trainer.global_step)


def _tokens(encoder, ids: torch.Tensor) -> list[str]:
    return encoder.tokenizer.convert_ids_to_tokens(ids.tolist())
