"""The LightningModule: a trainable student distilled from a frozen teacher.

One training step, for a batch of (English, target-language) pairs:

1. teacher(English) -> token cloud + pooled vector (no grad, never trained);
2. student(target)  -> token cloud + pooled vector;
3. loss = sum of ``weight * term(outputs)`` over the loss terms the config lists
   (:mod:`optical_lightning.losses.terms`: OPTICAL's transport, pooled MSE, in-batch InfoNCE), each
   logged under its own name, so ``distill=optical``, ``distill=mse`` and any weighted mix are configs,
   not code; a term with weight 0 is left out.

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
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch import Tensor, nn
from torch.optim import Optimizer

from optical_lightning.losses.marginals import idf_table
from optical_lightning.losses.ot import OTOutput
from optical_lightning.losses.terms import LossTerm, StepOutputs, TransportTerm
from optical_lightning.models.encoder import Encoder, EncoderOutput
from optical_lightning.training.callbacks import StepWatchdog, use_atomic_checkpoints
from optical_lightning.utils.errors import ConfigError, TrainingDiverged

# InfoNCE divides cosines (in [-1, 1]) by the temperature. CLIP caps 1/temperature at 100 and e5 trains
# at 0.01; below 1e-3 the softmax is one-hot for any cosine gap above ~0.02 (exp(-20)), so only the
# hardest negative gets a gradient, and near 1e-38 cos/temperature overflows float32 (a NaN loss).
MIN_NCE_TEMPERATURE = 1e-3


class DistillationModule(pl.LightningModule):
    """The student, the frozen teacher and the loss terms; built by ``conf/distill/default.yaml``
    (``distill.module``, a partial) with the encoders and the optimiser injected by the pipeline.

    Args:
        student: the encoder that trains.
        teacher: the frozen encoder whose English token clouds and pooled vectors are the targets.
        loss_terms: the weighted terms, by name (a config mapping) or as a list; weight 0 leaves one out.
        optimizer: ``optimizer(params=...)``, a partial of ``conf/optim``.
        scheduler: ``scheduler(optimizer=..., total_steps=...)``, or None for a constant rate.
    """

    def __init__(
        self,
        student: Encoder,
        teacher: Encoder,
        loss_terms: Mapping[str, LossTerm] | Sequence[LossTerm],
        optimizer: Callable[..., Optimizer],
        scheduler: Callable[..., Any] | None,
    ) -> None:
        super().__init__()
        terms = list(loss_terms.values()) if isinstance(loss_terms, Mapping) else list(loss_terms)
        active = [t for t in terms if t.weight > 0]
        if not active:
            raise ConfigError("every loss term has weight 0: nothing to train (use distill=none)")
        self.loss_terms = nn.ModuleList(active)
        if self.needs_base_tgt and not _adapted_from(student, teacher):
            raise ConfigError("distill.base_plan_weight > 0 reads the base model's states through the teacher, so the "
                              "student must be the teacher's own model with adapters (student=qwen_coder_1_5b or tiny_lm "
                              "with the matching teacher=); else set distill.base_plan_weight=0")
        self.student, self.teacher = student, teacher.freeze()
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.teacher_idf: Tensor | None = None
        self.student_idf: Tensor | None = None

    @property
    def transport_term(self) -> TransportTerm | None:
        return next((t for t in self.loss_terms if isinstance(t, TransportTerm)), None)

    @property
    def needs_base_tgt(self) -> bool:
        """Whether a term reads the base model's states of the student's batch (one more forward, no gradients)."""
        return any(t.needs_base_tgt for t in self.loss_terms)

    @property
    def needs_student_en(self) -> bool:
        """Whether a term reads the student's English side (the collator then encodes it too)."""
        return any(t.needs_student_en for t in self.loss_terms)

    # ------------------------------------------------------------------ setup
    def configure_callbacks(self) -> list[pl.Callback]:
        return [StepWatchdog()]  # SIGTERM stops an overrunning step (see training/callbacks.py)

    def setup(self, stage: str) -> None:
        if self._trainer is not None:
            use_atomic_checkpoints(self.trainer)  # checkpoints whole or not at all, never of NaN weights
        if any(t.wants_idf for t in self.loss_terms) and self.teacher_idf is None:
            pairs = self.trainer.datamodule.train_pairs
            self.teacher_idf = _idf(self.teacher, [p.en for p in pairs])
            self.student_idf = _idf(self.student, [p.tgt for p in pairs])

    # ------------------------------------------------------------------ steps
    def distillation_loss(self, batch: dict[str, dict[str, Tensor]]) -> tuple[Tensor, dict[str, Tensor]]:
        """The weighted loss of one batch (see the module docstring) and its parts, detached, for logging."""
        teacher_batch = batch["teacher_en"]
        if "tokens" in teacher_batch:  # precomputed by the teacher cache
            teacher_en = _cached_output(teacher_batch)
        else:
            with torch.no_grad():
                teacher_en = self.teacher(teacher_batch)
        out = self.step_outputs(teacher_en, batch)
        loss = torch.zeros((), device=out.student.pooled.device)
        logs: dict[str, Tensor] = {}
        for term in self.loss_terms:
            value, extra = term(out)
            loss = loss + term.weight * value
            logs[f"{term.name}_loss"] = value.detach()
            logs.update(extra)
        logs["loss"] = loss.detach()
        return loss, logs

    def step_outputs(self, teacher_en: EncoderOutput, batch: dict[str, dict[str, Tensor]]) -> StepOutputs:
        """The student's outputs of ``batch`` beside the teacher's, for the loss terms."""
        student_tgt = self.student(batch["student_tgt"])  # before the English side: dropout draws in this order
        student_en = self.student(batch["student_en"]) if "student_en" in batch and self.needs_student_en else None
        base_tgt = None
        if self.needs_base_tgt and "base_tgt" in batch:  # precomputed by the teacher cache
            base_tgt = _cached_output(batch["base_tgt"])
            if base_tgt.tokens.shape[:2] != student_tgt.tokens.shape[:2]:
                raise RuntimeError(f"the cached base states have shape {tuple(base_tgt.tokens.shape[:2])}, the student's "
                                   f"batch {tuple(student_tgt.tokens.shape[:2])}: the two read the text differently")
        elif self.needs_base_tgt:
            with torch.no_grad():
                base_tgt = self.teacher(batch["student_tgt"])  # the teacher's view: the student's adapters off
        return StepOutputs(teacher=teacher_en, student=student_tgt,
                           teacher_ids=batch["teacher_en"]["input_ids"], student_ids=batch["student_tgt"]["input_ids"],
                           student_en=student_en.pooled if student_en is not None else None,
                           student_en_out=student_en,
                           student_en_ids=batch["student_en"]["input_ids"] if student_en is not None else None,
                           teacher_idf=self.teacher_idf, student_idf=self.student_idf, base_tgt=base_tgt,
                           gather=self._global_targets)

    def _global_targets(self, teacher_pooled: Tensor) -> tuple[Tensor, int]:
        """The teacher's vectors of the global batch and this rank's first row (see losses/contrastive.py)."""
        trainer = self._trainer
        if trainer is None or trainer.world_size == 1:
            return teacher_pooled, 0
        gathered = self.all_gather(teacher_pooled.detach())  # (world, B, d): equal B, the sampler pads
        return gathered.flatten(0, 1), trainer.global_rank * teacher_pooled.shape[0]

    def transport(self, teacher: EncoderOutput, batch: dict[str, dict[str, Tensor]]) -> OTOutput:
        """The transport term's plan and cost of ``batch`` (the plan heatmaps of training/callbacks.py)."""
        return self.transport_term.plan(self.step_outputs(teacher, batch))

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
        loss_settings = "the loss settings (" + ", ".join(
            f"{name} {value:g}" for term in self.loss_terms for name, value in term.settings().items()) + ")"
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


def _cached_output(batch: dict[str, Tensor]) -> EncoderOutput:
    """An encoder's outputs as the teacher cache serves them (data/teacher_cache.py)."""
    return EncoderOutput(tokens=batch["tokens"].float(), attention_mask=batch["attention_mask"].bool(),
                         content_mask=batch["content_mask"].bool(), pooled=batch["pooled"].float())


def reads_like_its_teacher(student: Encoder, teacher: Encoder) -> bool:
    """Whether the teacher, reading the student's target-language text as it reads its own (tokenizer, prefix,
    layer, norm), gives the base model's states of the student's batch: then the teacher cache can hold them."""
    return _adapted_from(student, teacher) and student.encoder_config() == teacher.encoder_config()


def _adapted_from(student: Encoder, teacher: Encoder) -> bool:
    """Whether ``student`` is ``teacher``'s own model with adapters, so the teacher reads the student's inputs
    as the untrained student would (models/causal_lm.py)."""
    base = getattr(student, "base_lm", None)
    return bool(getattr(student, "is_student", False)) and base is not None and base is getattr(teacher, "base_lm", None)


def check_loss_weights(ot_weight: object, mse_weight: object, nce_weight: object = 0.0,
                       nce_temperature: object = 0.05, anchor_weight: object = 0.0,
                       spread_weight: object = 0.0, base_plan_weight: object = 0.0) -> None:
    """The loss mix is finite non-negative numbers, not all 0, and a temperature of at least
    :data:`MIN_NCE_TEMPERATURE` (checked before any model loads). The English anchor and the spread term alone are
    not a mix: they only hold the student where it is, so at least one cross-lingual weight must be > 0."""
    weights = (("distill.ot_weight", ot_weight), ("distill.mse_weight", mse_weight), ("distill.nce_weight", nce_weight),
               ("distill.base_plan_weight", base_plan_weight))
    for key, value in (*weights, ("distill.anchor_weight", anchor_weight), ("distill.spread_weight", spread_weight)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}={value!r}: must be a number >= 0")
        if not (value >= 0 and math.isfinite(value)):  # also NaN
            raise ConfigError(f"{key}={value}: a loss weight must be >= 0 and finite")
    if all(value == 0 for _, value in weights):
        raise ConfigError("distill.ot_weight, mse_weight, nce_weight and base_plan_weight are all 0: nothing to train "
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
