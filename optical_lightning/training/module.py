"""The LightningModule: a trainable student distilled from a frozen teacher.

One training step, for a batch of (English, target-language) pairs:

1. teacher(English) -> token cloud + pooled vector (no grad, never trained);
2. student(target)  -> token cloud + pooled vector;
3. loss = ``ot_weight`` * OT head (OPTICAL) + ``mse_weight`` * pooled MSE (Reimers & Gurevych)
   + ``nce_weight`` * in-batch InfoNCE of the pooled vectors (the only term that also pushes),
   so ``distill=optical``, ``distill=mse`` and any weighted mix are configs, not code.

The teacher is a registered submodule (so it follows the device under DDP) but is excluded from
checkpoints, as are the student's frozen weights: they hold only what training changes.

A run that diverges stops at once: a non-finite loss (checked before its backward pass) or
non-finite weights after an optimizer step raise :class:`~optical_lightning.utils.errors.TrainingDiverged`,
one line naming the step and the likely setting, so no NaN student is evaluated, saved or scored
(``lr=1e6`` used to finish "successfully" with a 100% NaN student). The checks cost one scalar
read-back and one norm per weight tensor per step.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch import Tensor
from torch.optim import Optimizer

from optical_lightning.losses.contrastive import in_batch_infonce
from optical_lightning.losses.marginals import alignment_mask, idf_table, token_weights
from optical_lightning.losses.mse import pooled_mse
from optical_lightning.losses.ot import OTDistillationHead, OTOutput
from optical_lightning.models.encoder import Encoder, EncoderOutput
from optical_lightning.training.callbacks import StepWatchdog, use_atomic_checkpoints
from optical_lightning.utils.errors import ConfigError, TrainingDiverged

# InfoNCE divides cosines (in [-1, 1]) by the temperature. CLIP caps 1/temperature at 100 and e5 trains
# at 0.01; below 1e-3 the softmax is one-hot for any cosine gap above ~0.02 (exp(-20)), so only the
# hardest negative gets a gradient, and near 1e-38 cos/temperature overflows float32 (a NaN loss).
MIN_NCE_TEMPERATURE = 1e-3


class DistillationModule(pl.LightningModule):
    def __init__(
        self,
        student: Encoder,
        teacher: Encoder,
        ot_head: OTDistillationHead | None = None,
        ot_weight: float = 1.0,
        mse_weight: float = 0.0,
        nce_weight: float = 0.0,
        nce_temperature: float = 0.05,
        optimizer: Callable[..., Optimizer] | None = None,
        scheduler: Callable[..., Any] | None = None,
    ) -> None:
        super().__init__()
        check_loss_weights(ot_weight, mse_weight, nce_weight, nce_temperature)
        if ot_weight > 0 and ot_head is None:
            raise ConfigError("distill.ot_weight > 0 needs an OT head (ot=sinkhorn)")
        self.student, self.teacher = student, teacher.freeze()
        self.ot_head = ot_head
        self.ot_weight, self.mse_weight = ot_weight, mse_weight
        self.nce_weight, self.nce_temperature = nce_weight, nce_temperature
        self.optimizer_factory = optimizer or (lambda params: torch.optim.AdamW(params, lr=2e-5))
        self.scheduler_factory = scheduler
        self.teacher_idf: Tensor | None = None
        self.student_idf: Tensor | None = None

    # ------------------------------------------------------------------ setup
    def configure_callbacks(self) -> list[pl.Callback]:
        return [StepWatchdog()]  # SIGTERM stops an overrunning step (see training/callbacks.py)

    def setup(self, stage: str) -> None:
        if self._trainer is not None:
            use_atomic_checkpoints(self.trainer)  # checkpoints whole or not at all, never of NaN weights
        head = self.ot_head
        if head is not None and head.marginals == "idf" and self.teacher_idf is None:
            pairs = self.trainer.datamodule.train_pairs
            self.teacher_idf = _idf(self.teacher, [p.en for p in pairs])
            self.student_idf = _idf(self.student, [p.tgt for p in pairs])

    # ------------------------------------------------------------------ steps
    def distillation_loss(self, batch: dict[str, dict[str, Tensor]]) -> tuple[Tensor, dict[str, Tensor]]:
        """The weighted loss of one batch (see the module docstring) and its parts, detached, for logging."""
        teacher_batch = batch["teacher_en"]
        if "tokens" in teacher_batch:  # precomputed by the teacher cache
            teacher_en = EncoderOutput(tokens=teacher_batch["tokens"].float(),
                                       attention_mask=teacher_batch["attention_mask"].bool(),
                                       content_mask=teacher_batch["content_mask"].bool(),
                                       pooled=teacher_batch["pooled"].float())
        else:
            with torch.no_grad():
                teacher_en = self.teacher(teacher_batch)
        student_tgt = self.student(batch["student_tgt"])
        loss = torch.zeros((), device=student_tgt.pooled.device)
        logs: dict[str, Tensor] = {}
        if self.ot_weight > 0:
            ot = self.transport(teacher_en, batch["teacher_en"], student_tgt, batch["student_tgt"])
            loss = loss + self.ot_weight * ot.loss
            logs.update(ot_loss=ot.loss.detach(), transport_cost=ot.transport_cost.mean(),
                        plan_entropy=ot.plan_entropy.mean())
        if self.mse_weight > 0:
            student_en = self.student(batch["student_en"]).pooled if "student_en" in batch else None
            mse = pooled_mse(student_tgt.pooled, teacher_en.pooled, student_en)
            loss = loss + self.mse_weight * mse
            logs["mse_loss"] = mse.detach()
        if self.nce_weight > 0:
            targets, offset = self._global_targets(teacher_en.pooled)
            nce = in_batch_infonce(student_tgt.pooled, targets, self.nce_temperature, offset)
            loss = loss + self.nce_weight * nce
            logs["nce_loss"] = nce.detach()
        logs["loss"] = loss.detach()
        return loss, logs

    def _global_targets(self, teacher_pooled: Tensor) -> tuple[Tensor, int]:
        """The teacher's vectors of the global batch and this rank's first row (see losses/contrastive.py)."""
        trainer = self._trainer
        if trainer is None or trainer.world_size == 1:
            return teacher_pooled, 0
        gathered = self.all_gather(teacher_pooled.detach())  # (world, B, d): equal B, the sampler pads
        return gathered.flatten(0, 1), trainer.global_rank * teacher_pooled.shape[0]

    def transport(self, teacher: EncoderOutput, teacher_batch: dict[str, Tensor],
                  student: EncoderOutput, student_batch: dict[str, Tensor]) -> OTOutput:
        """Run the OT head on the alignable tokens of both sides (also used for plan heatmaps)."""
        head = self.ot_head
        x_mask = alignment_mask(teacher.content_mask, teacher.attention_mask, head.special_tokens)
        y_mask = alignment_mask(student.content_mask, student.attention_mask, head.special_tokens)
        a = token_weights(x_mask, teacher_batch["input_ids"], self.teacher_idf)
        b = token_weights(y_mask, student_batch["input_ids"], self.student_idf)
        return head(teacher.tokens, a, student.tokens, b)

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        loss, logs = self.distillation_loss(batch)
        batch_size = batch["student_tgt"]["input_ids"].shape[0]
        loss_value = logs.pop("loss")
        if self._any_rank(not bool(torch.isfinite(loss_value))):  # before backward: the weights stay as they were
            raise TrainingDiverged(self._diverged(f"the loss is {_value(loss_value)} "
                                                  f"({', '.join(f'{k}={_value(v)}' for k, v in logs.items())})"))
        self.log("train/loss", loss_value, prog_bar=True, batch_size=batch_size)
        self.log_dict({f"train/{k}": v for k, v in logs.items()}, batch_size=batch_size)
        return loss

    def validation_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> None:
        # general held-out pairs log as val/*, held-out domain pairs (if any) as val_domain/*
        prefixes = getattr(self.trainer.datamodule, "val_prefixes", None) or ["val"]
        _, logs = self.distillation_loss(batch)
        self.log_dict({f"{prefixes[dataloader_idx]}/{k}": v for k, v in logs.items()}, prog_bar=False,
                      sync_dist=True, add_dataloader_idx=False, batch_size=batch["student_tgt"]["input_ids"].shape[0])

    # ------------------------------------------------------------------ divergence
    def optimizer_step(self, epoch: int, batch_idx: int, optimizer: Any, optimizer_closure: Any = None) -> None:
        """The optimizer's step, then a check that it left every trainable weight finite (before any
        callback, a checkpoint included, sees the weights)."""
        super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)
        params = [p.detach() for p in self.student.parameters() if p.requires_grad]
        if params and self._any_rank(not bool(torch.isfinite(torch.stack(torch._foreach_norm(params)).sum()))):
            raise TrainingDiverged(self._diverged("the student's weights became NaN or infinite in its optimizer step",
                                                  after_update=True))

    def _any_rank(self, bad: bool) -> bool:
        """``bad`` on any rank (all ranks then stop together instead of waiting for each other)."""
        trainer = self._trainer
        if trainer is None or trainer.world_size == 1:
            return bad
        return bool(trainer.strategy.reduce_boolean_decision(bad, all=False))

    def _diverged(self, what: str, after_update: bool = False) -> str:
        """The one-line message: the step, what went non-finite, and the settings to look at."""
        trainer = self._trainer
        step = trainer.global_step + 1 if trainer is not None else 1
        groups = [g for opt in (trainer.optimizers if trainer is not None else []) for g in opt.param_groups]
        lr = groups[0].get("initial_lr", groups[0]["lr"]) if groups else None
        loss_settings = (f"distill.ot_weight/mse_weight/nce_weight ({self.ot_weight:g}/{self.mse_weight:g}/"
                         f"{self.nce_weight:g}), distill.nce_temperature ({self.nce_temperature:g})"
                         + (f" and ot.blur ({self.ot_head.blur:g})" if self.ot_head is not None else ""))
        if step == 1 and not after_update:  # no update yet, so not the learning rate: the loss itself is out of range
            fix = f"check {loss_settings}"
        else:
            now = f" (now {lr:g})" if isinstance(lr, (int, float)) else ""
            fix = f"lower optim.optimizer.lr{now}, else check {loss_settings}"
        return f"training diverged at step {step}: {what}; no student or results were written - {fix}"

    # ------------------------------------------------------------------ optimisation
    def configure_optimizers(self) -> dict:
        params = [p for p in self.student.parameters() if p.requires_grad]
        optimizer = self.optimizer_factory(params=params)
        if self.scheduler_factory is None:
            return {"optimizer": optimizer}
        scheduler = self.scheduler_factory(optimizer=optimizer, total_steps=self.trainer.estimated_stepping_batches)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # ------------------------------------------------------------------ exact resume
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # dropout draws from the global generators: a resumed run must continue their streams
        checkpoint["rng_states"] = {"torch": torch.get_rng_state(), "python": random.getstate(),
                                    "numpy": _plain(np.random.get_state()),
                                    "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        states = checkpoint.get("rng_states")
        if not states:
            return
        torch.set_rng_state(states["torch"])
        random.setstate(states["python"])
        kind, keys, pos, has_gauss, gauss = states["numpy"]
        np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))
        if states["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(states["cuda"])

    # ------------------------------------------------------------------ checkpoints: what training changes
    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Tensor]:
        """Without the teacher and without the student's frozen weights (its fixed embedding table, lower
        layers or LoRA base): a run rebuilds those from its config, so checkpoints hold only what training
        changes - about a fifth of the student with ``freeze_embeddings``, far less with LoRA or top-k layers."""
        state = super().state_dict(*args, **kwargs)
        prefix = kwargs.get("prefix", "")
        frozen = {f"{prefix}student.{n}" for n, p in self.student.named_parameters() if not p.requires_grad}
        return type(state)((k, v) for k, v in state.items()
                           if not k.startswith(f"{prefix}teacher.") and k not in frozen)

    def load_state_dict(self, state_dict: dict[str, Tensor], strict: bool = True, assign: bool = False):
        full = dict(super().state_dict())  # the rebuilt weights fill in what the checkpoint leaves out
        full.update(state_dict)
        return super().load_state_dict(full, strict=strict, assign=assign)


def check_loss_weights(ot_weight: object, mse_weight: object, nce_weight: object = 0.0,
                       nce_temperature: object = 0.05) -> None:
    """The loss mix is finite non-negative numbers, not all 0, and a temperature of at least
    :data:`MIN_NCE_TEMPERATURE` (checked before any model loads)."""
    weights = (("distill.ot_weight", ot_weight), ("distill.mse_weight", mse_weight), ("distill.nce_weight", nce_weight))
    for key, value in weights:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}={value!r}: must be a number >= 0")
        if not (value >= 0 and math.isfinite(value)):  # also NaN
            raise ConfigError(f"{key}={value}: a loss weight must be >= 0 and finite")
    if all(value == 0 for _, value in weights):
        raise ConfigError("distill.ot_weight, distill.mse_weight and distill.nce_weight are all 0: nothing to train "
                          "(use distill=none)")
    if isinstance(nce_temperature, bool) or not isinstance(nce_temperature, (int, float)) or not nce_temperature > 0:
        raise ConfigError(f"distill.nce_temperature={nce_temperature!r}: must be a number > 0 (e.g. 0.05)")
    if not MIN_NCE_TEMPERATURE <= nce_temperature < math.inf:
        raise ConfigError(f"distill.nce_temperature={nce_temperature:g}: must be a finite number >= {MIN_NCE_TEMPERATURE:g} "
                          f"(below it the softmax over cosine/temperature is one-hot, then overflows); e.g. 0.05")


def _value(t: Tensor) -> str:
    return f"{float(t):.4g}"


def _plain(numpy_state: tuple) -> list:
    """numpy's RNG state as plain Python values: checkpoints load with ``weights_only=True``."""
    kind, keys, pos, has_gauss, gauss = numpy_state
    return [kind, keys.tolist(), int(pos), int(has_gauss), float(gauss)]


def _idf(encoder: Encoder, texts: list[str]) -> Tensor:
    ids = encoder.tokenizer(texts, truncation=True, max_length=encoder.max_length)["input_ids"]
    return idf_table(ids, len(encoder.tokenizer))
