"""Lightning callbacks of a distillation run."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import WandbLogger

from optical_lightning.reporting.plots import learning_curves, plan_heatmaps
from optical_lightning.utils.atomic import atomic_write_json
from optical_lightning.utils.errors import ConfigError, DataError, require_int

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


class LearningCurve(pl.Callback):
    """Evaluate the student on small fixed dev slices every ``every_n_steps`` optimizer steps.

    Writes ``<run dir>/curves.json`` (one row per evaluated step) and ``plots/learning_curves.png``,
    and logs every value as ``curve/<set>/<metric>`` to the run's loggers. With ``restore_best`` the
    student ends training with the weights of its best evaluated step (checkpoint selection on dev
    data), judged by the mean of the ``monitor`` values; step 0 (the starting point) is a candidate,
    so selection can never return a student worse on dev than the one it started from.

    Args:
        suite: the curve's own :class:`~optical_lightning.evaluation.suite.EvalSuite` (small sets;
            ``max_queries`` caps each). ``bitext_val`` adds ``bitext_val_size`` held-out training pairs.
        mcqa: an optional :class:`~optical_lightning.evaluation.mcqa.MCQAEvaluator` (its cross-lingual
            ``accuracy`` and ``agreement`` are logged); a missing optional file is skipped.
        every_n_steps: the interval; ``null`` (or 0) turns the callback off.
        monitor: curve keys (``<set>/<metric>``; a set name may leave out its ``-<lang>-en`` suffix)
            whose mean selects the best step.
    Only rank 0 evaluates; the restored weights are broadcast to every rank.
    """

    def __init__(self, suite: Any = None, mcqa: Any = None, every_n_steps: int | None = None,
                 bitext_val_size: int = 200, monitor: list[str] = ("bitext-val/P@1",), restore_best: bool = False,
                 filename: str = "curves.json", plot: str = "plots/learning_curves.png") -> None:
        require_int("callbacks.learning_curve.every_n_steps", every_n_steps, minimum=0, allow_none=True)
        self.suite, self.mcqa, self.every_n_steps = suite, mcqa, every_n_steps or 0
        self.bitext_val_size, self.monitor, self.restore_best = bitext_val_size, list(monitor or []), restore_best
        if restore_best and not self.monitor:
            raise ConfigError("callbacks.learning_curve.restore_best=true needs a monitor (e.g. [bitext-val/P@1])")
        self.filename, self.plot = filename, plot
        self.history: list[dict[str, float]] = []
        self.best: dict[str, Any] | None = None  # {"step", "score", "state"}: the best step's trainable weights
        self._ready = False

    @property
    def enabled(self) -> bool:
        return self.every_n_steps > 0 and self.suite is not None

    # ------------------------------------------------------------------ hooks
    def on_fit_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if not self.enabled or not trainer.is_global_zero:
            return
        if not self._ready:
            try:
                self.suite.load()
            except DataError as e:  # the curve is a diagnostic: held-out training pairs alone still make one
                log.warning("learning curve: %s", e)
            dm = trainer.datamodule
            if dm is not None and getattr(dm, "val_pairs", None):
                self.suite.add_validation_bitext(dm.val_pairs[: self.bitext_val_size])
            if self.mcqa is not None and not self.mcqa.load():
                self.mcqa = None
            self._ready = True
        if not any(row["step"] == trainer.global_step for row in self.history):
            self._evaluate(trainer, module)

    def on_train_batch_end(self, trainer: pl.Trainer, module: pl.LightningModule, *args: Any) -> None:
        step = trainer.global_step
        if (self.enabled and trainer.is_global_zero and step % self.every_n_steps == 0
                and not any(row["step"] == step for row in self.history)):
            self._evaluate(trainer, module)

    def on_fit_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if not self.enabled:
            return
        if trainer.is_global_zero and not any(row["step"] == trainer.global_step for row in self.history):
            self._evaluate(trainer, module)  # the last step, whatever the interval
        if self.restore_best:
            best = trainer.strategy.broadcast(self.best if trainer.is_global_zero else None, src=0)
            if best is not None and best["step"] != trainer.global_step:
                module.student.load_state_dict(best["state"], strict=False)
                log.info("learning curve: restored the student of step %d (dev score %.4f, monitor %s)",
                         best["step"], best["score"], self.monitor)
        if trainer.is_global_zero:
            self.write(Path(trainer.default_root_dir))

    # ------------------------------------------------------------------ resume
    def state_dict(self) -> dict[str, Any]:
        return {"history": self.history, "best": self.best}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history, self.best = list(state_dict.get("history", [])), state_dict.get("best")

    # ------------------------------------------------------------------ work
    @torch.no_grad()
    def _evaluate(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        step = trainer.global_step
        student, teacher = module.student, module.teacher
        was_training = student.training
        student.eval()
        row: dict[str, float] = {}
        stage = f"step{step}"
        for name, values in self.suite.evaluate(student, teacher, stage).items():
            row.update({f"{name}/{metric}": float(v) for metric, v in values.items()})
        self.suite.per_query.clear()
        if self.mcqa is not None:
            for name, report in self.mcqa.evaluate(student, teacher, stage).items():
                row.update({f"{name}/{k}": float(report[k]) for k in ("accuracy", "agreement") if k in report})
            self.mcqa.stages.clear()
        student.train(was_training)
        score = self.score(row)
        self.history.append({"step": step, **row, **({"score": score} if score is not None else {})})
        for logger in trainer.loggers:
            logger.log_metrics({f"curve/{k}": v for k, v in row.items()}, step=step)
        if self.restore_best and score is not None and (self.best is None or score > self.best["score"]):
            state = {k: v.detach().cpu().clone() for k, v in student.named_parameters() if v.requires_grad}
            self.best = {"step": step, "score": score, "state": state}
        log.info("learning curve, step %d: %s", step, ", ".join(f"{k}={v:.3f}" for k, v in row.items()))

    def score(self, row: dict[str, float]) -> float | None:
        """The mean of the monitored values in ``row`` (``None`` when none is there)."""
        values = []
        for key in self.monitor:
            name, _, metric = key.rpartition("/")
            hits = [v for k, v in row.items() if k.rpartition("/")[2] == metric
                    and (k.rpartition("/")[0] == name or k.rpartition("/")[0].startswith(f"{name}-"))]
            values.extend(hits[:1])
        return sum(values) / len(values) if values else None

    def write(self, out_dir: Path) -> None:
        if not self.history:
            return
        rows = sorted(self.history, key=lambda r: r["step"])
        record = {"every_n_steps": self.every_n_steps, "monitor": self.monitor,
                  "best_step": self.best["step"] if self.best else None, "restored": self.restore_best, "rows": rows}
        atomic_write_json(out_dir / self.filename, record)
        learning_curves(rows, out_dir / self.plot, best_step=record["best_step"])
