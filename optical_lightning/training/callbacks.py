"""Lightning callbacks of a distillation run, and the checkpoint writer every run uses."""

from __future__ import annotations

import _thread
import contextlib
import logging
import os
import random
import signal
import statistics
import tempfile
import threading
import time
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from lightning_fabric.plugins import TorchCheckpointIO
from pytorch_lightning.loggers import WandbLogger
from pytorch_lightning.utilities.exceptions import SIGTERMException

from optical_lightning.evaluation.protocol import Encoders, Evaluator, HeldOut
from optical_lightning.reporting.plots import learning_curves, plan_heatmaps
from optical_lightning.utils.atomic import atomic_write_json, public_mode
from optical_lightning.utils.errors import CheckpointWriteError, ConfigError, DataError, cause_of, require_int

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
        if not trainer.is_global_zero or getattr(module, "transport_term", None) is None or dm is None:
            return
        pairs = (dm.val_pairs or dm.train_pairs)[: self.num_pairs]
        short = sorted(pairs, key=lambda p: len(p.en))  # readable figures: shortest first
        batch = dm.collate_fn(short)
        batch = {k: {n: t.to(module.device) for n, t in v.items()} for k, v in batch.items()}
        was_training = module.training
        module.eval()
        out = module.transport(module.teacher(batch["teacher_en"]), batch)
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
        evaluators: the curve's own evaluators, by name (:mod:`~optical_lightning.evaluation.protocol`:
            small dev sets; ``bitext_val_size`` held-out training pairs join the retrieval sets); each
            logs its :meth:`~optical_lightning.evaluation.protocol.Evaluator.curve_values`.
        every_n_steps: the interval; ``null`` (or 0) turns the callback off.
        monitor: curve keys (``<set>/<metric>``; a set name may leave out its ``-<lang>-en`` suffix)
            whose mean selects the best step.
    Only rank 0 evaluates; the restored weights are broadcast to every rank.
    """

    def __init__(self, evaluators: Mapping[str, Evaluator] | None = None, every_n_steps: int | None = None,
                 bitext_val_size: int = 200, monitor: list[str] = ("bitext-val/P@1",), restore_best: bool = False,
                 filename: str = "curves.json", plot: str = "plots/learning_curves.png") -> None:
        require_int("callbacks.learning_curve.every_n_steps", every_n_steps, minimum=0, allow_none=True)
        self.evaluators = [e for e in (evaluators or {}).values() if e]
        self.every_n_steps = every_n_steps or 0
        self.bitext_val_size, self.monitor, self.restore_best = bitext_val_size, list(monitor or []), restore_best
        if restore_best and not self.monitor:
            raise ConfigError("callbacks.learning_curve.restore_best=true needs a monitor (e.g. [bitext-val/P@1])")
        self.filename, self.plot = filename, plot
        self.history: list[dict[str, float]] = []
        self.best: dict[str, Any] | None = None  # {"step", "score", "state"}: the best step's trainable weights
        self._ready = False

    @property
    def enabled(self) -> bool:
        return self.every_n_steps > 0 and bool(self.evaluators)

    # ------------------------------------------------------------------ hooks
    def on_fit_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if not self.enabled or not trainer.is_global_zero:
            return
        if not self._ready:
            dm = trainer.datamodule
            held_out = HeldOut(list(getattr(dm, "val_pairs", None) or [])[: self.bitext_val_size])
            for evaluator in self.evaluators:
                try:
                    evaluator.load(held_out)
                except DataError as e:  # the curve is a diagnostic: held-out training pairs alone still make one
                    log.warning("learning curve: %s", e)
            self.evaluators = [e for e in self.evaluators if e.active]
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
        student = module.student
        was_training = student.training
        student.eval()
        row: dict[str, float] = {}
        encoders = Encoders(student, module.teacher)
        for evaluator in self.evaluators:
            for name, values in evaluator(encoders, f"step{step}").items():
                row.update({f"{name}/{metric}": v for metric, v in evaluator.curve_values(values).items()})
            evaluator.clear_records()  # the curve keeps its row, not every query of every step
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


class StepWatchdog(pl.Callback):
    """Let SIGTERM stop a training step that has overrun, instead of waiting for it to end.

    Lightning notes SIGTERM (``timeout``, SLURM's warning before the kill) and acts on it between
    steps: it finishes the step, saves a checkpoint (``save_on_exception``) and exits, which is right
    for a step of normal length. A step that runs far past it (a slow OT solve near the bounds of
    ``ot.scaling`` and ``ot.refine_iters``) kept a job alive for 13 minutes after the signal, and SLURM
    kills a job 30 s after its SIGTERM by default. Here a SIGTERM during a step raises Lightning's own
    ``SIGTERMException`` in the step once the step has run ``patience`` x the median of the earlier
    steps, or ``grace_s`` after the signal, whichever comes first (at once when no step has finished
    yet: nothing would be lost); a step that ends before that stops as before, with its checkpoint.

    Never during the optimizer's update (from ``on_before_optimizer_step`` to the step's end), so the
    weights are never half-updated: a stopped step is simply not taken, and the checkpoint saved on
    exit holds the state before it, random generators included (their states at the step's start,
    about 10 KB copied per step, are put back), so a resumed run still repeats an uninterrupted one.
    The DistillationModule adds this callback to every run.
    """

    def __init__(self, patience: float = 3.0, grace_s: float = 10.0, history: int = 50) -> None:
        self.patience, self.grace_s = patience, grace_s
        self.durations: deque[float] = deque(maxlen=history)
        self.stopped_step: int | None = None  # the step a SIGTERM stopped, for tests and logs
        self._previous: Any = None
        self._installed = False
        self._started: float | None = None  # monotonic start of the running step, None between steps
        self._deadline: float | None = None  # when a signalled step is stopped
        self._updating = False
        self._step = 0
        self._timer: threading.Timer | None = None
        self._timer_fired = False
        self._rng: tuple[Any, ...] | None = None  # the generators' states at the running step's start

    # ------------------------------------------------------------------ hooks
    def on_train_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGTERM"):
            return
        self._previous = signal.getsignal(signal.SIGTERM)  # Lightning's: note the signal, stop after the step
        signal.signal(signal.SIGTERM, self._on_sigterm)
        self._installed = True

    def on_train_batch_start(self, trainer: pl.Trainer, module: pl.LightningModule, batch: Any, batch_idx: int) -> None:
        self._step += 1
        self._updating, self._deadline = False, None
        self._rng = (torch.get_rng_state(), random.getstate(), np.random.get_state(),
                     torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None)
        self._started = time.monotonic()

    def on_before_optimizer_step(self, trainer: pl.Trainer, module: pl.LightningModule, optimizer: Any) -> None:
        self._updating = True

    def on_train_batch_end(self, trainer: pl.Trainer, module: pl.LightningModule, *args: Any) -> None:
        if self._started is not None:
            self.durations.append(time.monotonic() - self._started)
        self._started, self._updating = None, False

    def on_train_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self._restore()

    def on_exception(self, trainer: pl.Trainer, module: pl.LightningModule, exception: BaseException) -> None:
        self._restore()

    def teardown(self, trainer: pl.Trainer, module: pl.LightningModule, stage: str) -> None:
        self._restore()

    # ------------------------------------------------------------------ the signal
    def _on_sigterm(self, signum: int, frame: Any) -> None:
        if self._timer_fired:  # our own reminder (see _remind), not a second signal
            self._timer_fired = False
        elif callable(self._previous):
            self._previous(signum, frame)
        if self._started is None or self._updating:
            return  # between steps or in the update: Lightning stops right after the step
        now = time.monotonic()
        usual = statistics.median(self.durations) if self.durations else 0.0
        if self._deadline is None:  # fixed at the first signal of this step
            self._deadline = min(self._started + self.patience * usual, now + self.grace_s)
        deadline = self._deadline
        if now >= deadline - 1e-3:
            self.stopped_step = self._step
            log.warning("SIGTERM during a training step that has run %.1fs (%s): stopping it now", now - self._started,
                        f"the median step takes {usual:.1f}s" if self.durations else "the first step")
            self._started = None
            if self._rng is not None:  # as if the step had never begun (dropout drew from these)
                torch_state, python_state, numpy_state, cuda_states = self._rng
                torch.set_rng_state(torch_state)
                random.setstate(python_state)
                np.random.set_state(numpy_state)
                if cuda_states is not None:
                    torch.cuda.set_rng_state_all(cuda_states)
            raise SIGTERMException()
        if self._timer is None:
            self._timer = threading.Timer(deadline - now, self._remind, args=(self._step,))
            self._timer.daemon = True
            self._timer.start()

    def _remind(self, step: int) -> None:
        """At the deadline, deliver SIGTERM to the main thread again if the same step still runs."""
        self._timer = None
        if self._installed and self._started is not None and self._step == step:
            self._timer_fired = True
            _thread.interrupt_main(signal.SIGTERM)

    def _restore(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._installed and signal.getsignal(signal.SIGTERM) == self._on_sigterm:
            signal.signal(signal.SIGTERM, self._previous)
        self._installed, self._started = False, None


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, except that a checkpoint appears whole or not at all, and never
    holds non-finite weights.

    Lightning writes ``last.ckpt`` in place, so a full disk left a truncated ``last.ckpt`` (and a 0-byte
    step checkpoint) that the next attempt could not resume from. Here the bytes go to a temporary
    file in the same folder, are flushed to disk, and replace the target with one ``os.replace``; a
    failed write removes the temporary file, keeps the previous checkpoint, and is one line
    (:class:`~optical_lightning.utils.errors.CheckpointWriteError`). A checkpoint whose weights are NaN
    or infinite (a diverged run: Lightning saves one when training stops on an error) is not written:
    resuming from it could only diverge again.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None or "://" in str(path):  # remote storage: Lightning's own writer
            return super().save_checkpoint(checkpoint, path, storage_options)
        if (bad := _non_finite(checkpoint.get("state_dict", {}))) is not None:
            log.warning("not saving %s: the weight %s is not finite (the run diverged)", path, bad)
            return
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
        try:
            public_mode(tmp)
            with os.fdopen(fd, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException as e:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            if (cause := cause_of(e, OSError)) is not None:  # torch.save reports a failed write as a RuntimeError
                raise CheckpointWriteError(
                    f"could not write checkpoint {path}: {cause.strerror or cause}; the previous checkpoint is unchanged "
                    f"- free space on that disk (or set callbacks.model_checkpoint.dirpath to another one) and run "
                    f"the same command to resume") from cause
            raise




def _non_finite(state_dict: dict[str, Any]) -> str | None:
    """The name of the first floating-point tensor in ``state_dict`` with a NaN or infinite value."""
    for name, value in state_dict.items():
        if isinstance(value, torch.Tensor) and value.is_floating_point() and not torch.isfinite(value).all():
            return name
    return None


def use_atomic_checkpoints(trainer: pl.Trainer) -> None:
    """Write this trainer's checkpoints with :class:`AtomicCheckpointIO` (unless a custom writer is set)."""
    strategy = trainer.strategy
    if type(strategy.checkpoint_io) is TorchCheckpointIO:
        strategy.checkpoint_io = AtomicCheckpointIO()
