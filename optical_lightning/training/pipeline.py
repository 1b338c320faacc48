"""The pipeline behind ``run.py``: config -> data -> encoders -> head -> evaluate -> fit -> evaluate -> results.

Everything is built from the Hydra config with :func:`~optical_lightning.utils.config.build` (Hydra's
``instantiate`` with one-line errors). The order is chosen to fail fast: the run directory, every
config value, the data files, the evaluation sets, the trainer, its callbacks and loggers, the
optimizer and the checkpoint to resume from are all checked before any weights load, and nothing in
the run directory changes until they are.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import signal
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import yaml
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.utilities import rank_zero_only
from pytorch_lightning.utilities.exceptions import SIGTERMException

from optical_lightning.data.collate import PairCollator
from optical_lightning.data.student_cache import FrozenLayersCache
from optical_lightning.data.teacher_cache import TeacherTokenCache
from optical_lightning.evaluation.protocol import Encoders, Evaluator, HeldOut
from optical_lightning.evaluation.stages import Stage
from optical_lightning.evaluation.translate_test import STAGES as TRANSLATE_STAGES
from optical_lightning.evaluation.translate_test import WordTranslator, load_translator
from optical_lightning.reporting.summary import flatten_results, print_summary
from optical_lightning.reporting.tracking import ResumableCSVLogger, finish, publish
from optical_lightning.training.launch import announce_rendezvous, check_cluster, rendezvous_failed
from optical_lightning.training.module import check_loss_weights, reads_like_its_teacher
from optical_lightning.training.optim import check_factories, check_numeric_settings
from optical_lightning.training.rundir import (
    CONFIG,
    RESULTS,
    RunDir,
    checkpoint_step,
    clear_outputs,
    data_fingerprints,
    locked,
    newest_checkpoint,
    plan_run_dir,
)
from optical_lightning.utils.atomic import atomic_write_json, atomic_write_text, point_symlink
from optical_lightning.utils.config import build
from optical_lightning.utils.errors import ConfigError, OpticalError, RunInterrupted, as_list, require_int
from optical_lightning.utils.languages import check_language
from optical_lightning.utils.resources import machine, peak_rss_mb, process_age_s, prompt_memory_return

log = logging.getLogger(__name__)

# The frozen teacher is in eval mode on purpose; Lightning warns about any eval-mode module at fit start.
warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode")


def _build_each(group: DictConfig | None, key: str) -> list[Any]:
    """Build every ``_target_`` entry of a dict-shaped group (callbacks, loggers)."""
    if not group:
        return []
    return [build(c, f"{key}.{name}") for name, c in group.items() if isinstance(c, DictConfig) and "_target_" in c]


def check_step_budget(trainer_cfg: DictConfig) -> int:
    """The training length as Lightning will read it; a one-line error for one that trains nothing."""
    max_steps, max_epochs = trainer_cfg.get("max_steps", -1), trainer_cfg.get("max_epochs")
    require_int("trainer.max_steps", max_steps, minimum=-1)
    require_int("trainer.max_epochs", max_epochs, minimum=1, allow_none=True)
    if max_steps == 0:
        raise ConfigError("trainer.max_steps=0: nothing to train; use distill=none to evaluate the untrained student")
    if max_steps == -1 and max_epochs is None:
        raise ConfigError("trainer.max_steps=-1 (no step limit) needs trainer.max_epochs=N")
    return max_steps


def resume_checkpoint(ckpt_path: str | None, state: RunDir) -> tuple[str | None, int]:
    """(checkpoint to resume from, its step). ``auto``: the newest one an earlier attempt left in the run
    directory (see :mod:`optical_lightning.training.rundir`), else a fresh start; ``null``: a fresh start; a path:
    that checkpoint, checked to be readable before any model loads."""
    if ckpt_path == "auto":
        if state.checkpoint is None:
            return None, 0
        log.info("resuming from %s (step %d)", state.checkpoint, state.checkpoint_step)
        return str(state.checkpoint), state.checkpoint_step
    if ckpt_path is None:
        return None, 0
    path = Path(ckpt_path)
    if not path.is_file():
        raise ConfigError(f"ckpt_path={ckpt_path}: no such checkpoint; use ckpt_path=auto (the run directory's "
                          f"newest) or null (start over)")
    return str(path), checkpoint_step(path)


def interrupted(exc: BaseException, trainer: pl.Trainer, out_dir: Path) -> RunInterrupted:
    """The one-line message of a run stopped by Ctrl-C or SIGTERM: where its checkpoint is, how to resume."""
    signum = signal.SIGTERM if isinstance(exc, SIGTERMException) else signal.SIGINT
    name = "SIGTERM" if signum == signal.SIGTERM else "Ctrl-C (SIGINT)"
    try:
        ckpt, step = newest_checkpoint(out_dir)
    except OpticalError as e:  # a checkpoint the signal cut short: say which, and how to go on
        return RunInterrupted(f"stopped by {name}; {e}", signum)
    if ckpt is None:
        return RunInterrupted(f"stopped by {name} at step {trainer.global_step}, before any checkpoint was saved; "
                              f"run the same command to start over", signum)
    return RunInterrupted(f"stopped by {name}; a checkpoint of step {step} is in {ckpt.parent} - run the same "
                          f"command with hydra.run.dir={out_dir} to resume (ckpt_path=auto)", signum)


def _command_line_overrides() -> list[str] | None:
    from hydra.core.hydra_config import HydraConfig

    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else None


def _cache_state(evaluators: list[Evaluator], teacher_counts: dict[str, int] | None) -> str:
    """``cold`` if the run computed document embeddings or teacher tokens, ``warm`` if all were cached."""
    counts = [e.cache_counts() for e in evaluators]
    misses = sum(m for _, m in counts) + (teacher_counts or {}).get("encoded", 0)
    hits = sum(h for h, _ in counts) + (teacher_counts or {}).get("cached", 0)
    return "cold" if misses else "warm" if hits else "none"


def run(cfg: DictConfig) -> dict[str, Any]:
    """Evaluate zero-shot, train (unless ``distill=none``), evaluate again, save the student, write results.

    Returns the results dictionary that is also written to ``<run dir>/results.json``.
    """
    loggers: list[Any] = []
    # one run per folder: under DDP rank 0 holds the lock for the ranks it starts
    with locked(Path(cfg.paths.output_dir)) if rank_zero_only.rank == 0 else contextlib.nullcontext():
        try:
            return train(cfg, loggers)
        finally:
            finish(loggers)  # close W&B runs even on errors, so the next job of a multirun starts clean


def train(cfg: DictConfig, loggers: list[Any]) -> dict[str, Any]:
    """Check, build, evaluate, fit, evaluate, write. Under DDP every rank runs this; only rank 0 evaluates
    before training and writes files (the other ranks are started by, or join, ``trainer.fit``), and after
    training all ranks share the evaluation (see evaluation/distributed.py)."""
    started = time.time()
    check_numeric_settings(cfg)  # seed=abc, nan or inf anywhere: one line before anything runs
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    check_language(cfg.lang.code)

    plan = plan_run(cfg)
    if plan.state.complete:
        return report_complete(plan)
    parts = build_parts(cfg, plan.state, loggers)
    claim_run_dir(cfg, plan)

    teacher = build(cfg.teacher, "teacher", frozen=True)
    # the teacher too: a language-model student wraps the teacher's own weights (models/causal_lm.py)
    student = build(cfg.student, "student", target_dim=teacher.dim, teacher=teacher)
    record = RunRecord(plan, timing={"load_s": time.time() - started})
    encoders = Encoders(student, teacher, parts.translator)
    for stage in parts.stages_before_training():
        evaluate_stage(parts, record, encoders, stage)
    if parts.train:
        fit(cfg, parts, record, teacher, student)
        if parts.evaluators:
            evaluate_stage(parts, record, encoders, Stage.TRAINED)
    if parts.trainer is not None and not parts.trainer.is_global_zero:
        return {}
    return write_results(cfg, parts, record, student, started, loggers)


@dataclass
class RunPlan:
    """Where a run writes and what an earlier attempt left there."""

    out_dir: Path
    config: dict[str, Any]  # the resolved settings, with the training files' fingerprints
    state: RunDir


def plan_run(cfg: DictConfig) -> RunPlan:
    """The run directory: a complete run is not redone, an unfinished one resumes only with its own settings
    (training files included, by size and sha256)."""
    out_dir = Path(cfg.paths.output_dir)
    config = OmegaConf.to_container(cfg, resolve=True)
    if cfg.distill.train:  # a training file replaced between an interruption and its resume is a changed setting
        config["data_files"] = data_fingerprints({key: as_list(config["data"].get(key.split(".")[1]))
                                                  for key in ("data.train", "data.domain_files")})
    state = plan_run_dir(out_dir, config, rerun=bool(cfg.rerun), allow_config_change=bool(cfg.allow_config_change),
                         resume=cfg.ckpt_path == "auto")
    return RunPlan(out_dir, config, state)


def report_complete(plan: RunPlan) -> dict[str, Any]:
    """A rerun of a complete run: say so, show its summary, redo nothing."""
    if rank_zero_only.rank == 0:
        print(f"{plan.out_dir} already holds this complete run ({RESULTS}); nothing to redo (add rerun=true to "
              f"run it again and replace its outputs)")
        print_summary(plan.state.results)
    return plan.state.results


@dataclass
class RunParts:
    """What a run is built from, every one checked before any weights load."""

    train: bool
    teacher_role: str
    evaluators: list[Evaluator]  # those with something to evaluate (conf/eval: evaluators)
    stages: list[Stage]  # the stages before training, in order
    translator: WordTranslator | None = None  # the translate-test stages' dictionary
    skipped: dict[str, str] = field(default_factory=dict)  # inputs left out: name -> why
    datamodule: Any | None = None
    make_module: Callable[..., Any] | None = None  # DistillationModule, waiting for the encoders
    trainer: pl.Trainer | None = None
    optimizer: Callable[..., Any] | None = None
    scheduler: Callable[..., Any] | None = None
    ckpt: str | None = None
    ckpt_step: int = 0
    teacher_counts: dict[str, int] | None = None  # the teacher cache's hits and misses

    def stages_before_training(self) -> list[Stage]:
        """Rank 0 evaluates the teacher in English, the translate-test baselines and the untrained student."""
        return self.stages if rank_zero_only.rank == 0 and self.evaluators else []


def build_evaluators(cfg: DictConfig, held_out: HeldOut,
                     train: bool) -> tuple[list[Evaluator], list[Stage], WordTranslator | None, dict[str, str]]:
    """The evaluators of ``eval.evaluators`` (an empty entry is left out), each loaded and checked; the stages
    before training that ``eval`` asks for; the translate-test dictionary; what was skipped and why."""
    evaluators: list[Evaluator] = []
    skipped: dict[str, str] = {}
    for name, node in (cfg.eval.get("evaluators") or {}).items():
        if not node:  # retrieval=none, mcqa=none
            continue
        evaluator: Evaluator = build(node, f"eval.evaluators.{name}")
        evaluator.load(held_out)
        skipped.update(evaluator.skipped)
        if evaluator.active:
            evaluators.append(evaluator)
    translator = None
    if cfg.eval.get("translate_test") and evaluators:
        translator, why = load_translator(cfg.eval.get("dictionary"), cfg.lang.code)
        if why:
            skipped["translate_test"] = why
    stages = [Stage.TEACHER_EN] if cfg.eval.get("upper_bound") else []
    stages += list(TRANSLATE_STAGES) if translator is not None else []
    stages += [Stage.ZERO_SHOT] if cfg.eval.get("zero_shot") or not train else []
    return evaluators, stages, translator, skipped


def build_parts(cfg: DictConfig, state: RunDir, loggers: list[Any]) -> RunParts:
    """Every setting, cheapest first, before any weights load: loss terms, data, evaluation sets, loggers,
    trainer, optimiser and the checkpoint to resume from."""
    train_student = bool(cfg.distill.train)
    teacher_role = cfg.distill.teacher_role
    if teacher_role not in ("query", "passage"):
        raise ConfigError(f"distill.teacher_role={teacher_role!r}: use query or passage (the teacher's prefix for the English side)")
    make_module = None
    if train_student:
        check_loss_weights(cfg.distill.ot_weight, cfg.distill.mse_weight, cfg.distill.nce_weight,
                           cfg.distill.nce_temperature, cfg.distill.get("anchor_weight", 0.0),
                           cfg.distill.get("spread_weight", 0.0), cfg.distill.get("base_plan_weight", 0.0))
        build(cfg.ot, "ot")  # the OT head's settings named as the user gives them (ot.blur), not as distill.module's copy
        make_module = build(cfg.distill.module, "distill.module")  # the loss terms are checked here
    datamodule = build(cfg.data, "data") if train_student else None
    if datamodule is not None:
        datamodule.setup("fit")
    held_out = HeldOut(datamodule.val_pairs, datamodule.domain_val_pairs) if datamodule is not None else HeldOut()
    evaluators, stages, translator, skipped = build_evaluators(cfg, held_out, train_student)
    parts = RunParts(train_student, teacher_role, evaluators, stages, translator, skipped, datamodule, make_module)
    loggers.extend(_build_each(cfg.get("logger"), "logger"))
    if train_student:
        max_steps = check_step_budget(cfg.trainer)
        check_cluster(cfg.trainer)
        parts.trainer = build(cfg.trainer, "trainer", callbacks=_build_each(cfg.get("callbacks"), "callbacks"),
                              logger=loggers or False)
        parts.optimizer = build(cfg.optim.optimizer, "optim.optimizer")
        parts.scheduler = build(cfg.optim.scheduler, "optim.scheduler")
        check_factories(parts.optimizer, parts.scheduler, total_steps=max(1, max_steps))
        parts.ckpt, parts.ckpt_step = resume_checkpoint(cfg.ckpt_path, state)
        for logger in loggers:
            if isinstance(logger, ResumableCSVLogger):
                logger.resume_step = parts.ckpt_step  # keep the metrics an earlier attempt logged before the checkpoint
    if state.changed:
        log.warning("resuming %s with changed settings (allow_config_change=true): %s", state.path,
                    ", ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in state.changed.items()))
    return parts


def claim_run_dir(cfg: DictConfig, plan: RunPlan) -> None:
    """Every check passed: the run directory is this run's now (``rerun=true`` clears it first)."""
    if rank_zero_only.rank != 0:
        return
    if cfg.rerun:
        clear_outputs(plan.out_dir)
    plan.out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(plan.out_dir / CONFIG, yaml.safe_dump(plan.config, sort_keys=False, allow_unicode=True))


@dataclass
class RunRecord:
    """What a run measures as it goes: metrics by set and stage, training values, timings."""

    plan: RunPlan
    timing: dict[str, float]
    metrics: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    training: dict[str, float] = field(default_factory=dict)


def evaluate_stage(parts: RunParts, record: RunRecord, encoders: Encoders, stage: Stage) -> None:
    """One stage (see :class:`Stage`) by every evaluator."""
    t0 = time.time()
    for evaluator in parts.evaluators:
        for name, values in evaluator(encoders, stage).items():
            record.metrics.setdefault(name, {})[stage.value] = values
    record.timing[f"eval_{stage.value}_s"] = time.time() - t0


def fit(cfg: DictConfig, parts: RunParts, record: RunRecord, teacher: Any, student: Any) -> None:
    """Distil: fill the teacher and student caches if asked, build the module, ``trainer.fit``, then the
    final student's held-out losses."""
    datamodule, trainer, timing = parts.datamodule, parts.trainer, record.timing
    teacher_cache = None
    if datamodule.teacher_cache:
        t0 = time.time()
        datamodule.trainer = trainer  # the step budget decides which sentences are visited
        precision = "bf16" if "bf16" in str(trainer.precision) else "32"  # as the live teacher would run
        teacher_cache = TeacherTokenCache(datamodule.teacher_cache_dir or Path(cfg.paths.cache_dir) / "teacher_tokens",
                                          teacher, role=parts.teacher_role, precision=precision)
        parts.teacher_counts = teacher_cache.prepare(p.en for p in datamodule.planned_pairs())
        timing["teacher_cache_s"] = time.time() - t0
        log.info("teacher cache: %d sentences cached, %d encoded (%.1fs)", parts.teacher_counts["cached"],
                 parts.teacher_counts["encoded"], timing["teacher_cache_s"])
    module = parts.make_module(student=student, teacher=teacher, optimizer=parts.optimizer, scheduler=parts.scheduler)
    student_cache = None
    if datamodule.student_cache:
        t0 = time.time()
        datamodule.trainer = trainer
        student_cache = FrozenLayersCache(student)
        planned = datamodule.planned_pairs()
        counts = student_cache.prepare([p.tgt for p in planned] + ([p.en for p in planned] if module.needs_student_en else []))
        timing["student_cache_s"] = time.time() - t0
        log.info("student cache: the fixed lower %d layers of %d sentences (%.1fs)", student.frozen_below,
                 counts["encoded"], timing["student_cache_s"])
    base_cache = None
    if teacher_cache is not None and module.needs_base_tgt and reads_like_its_teacher(student, teacher):
        t0 = time.time()  # the base model's states of the target side: the teacher reads it as the student does
        base_cache = teacher_cache if teacher_cache.role == "query" else TeacherTokenCache(
            teacher_cache.dir.parent, teacher, role="query", precision=teacher_cache.precision)
        counts = base_cache.prepare(p.tgt for p in datamodule.planned_pairs())
        timing["base_cache_s"] = time.time() - t0
        log.info("base cache: %d target-language sentences cached, %d encoded (%.1fs)", counts["cached"],
                 counts["encoded"], timing["base_cache_s"])
    elif module.needs_base_tgt:
        log.info("the base model reads each target-language batch live (no teacher cache, or the student reads "
                 "the text otherwise than its teacher)")
    datamodule.collate_fn = PairCollator(teacher, student, with_student_en=module.needs_student_en,
                                         teacher_cache=teacher_cache, teacher_role=parts.teacher_role,
                                         student_cache=student_cache, base_cache=base_cache)
    t0 = time.time()
    with prompt_memory_return():  # keeps training's peak RSS near what its tensors use
        try:
            announce_rendezvous(trainer)
            trainer.fit(module, datamodule=datamodule, ckpt_path=parts.ckpt)
        except Exception as e:  # nodes that never all joined: one line (training/launch.py)
            if (failed := rendezvous_failed(e, trainer)) is None:
                raise
            raise failed from e
        except SystemExit as e:  # Lightning exits after Ctrl-C (status 1) and SIGTERM (status 0)
            if isinstance(e, SIGTERMException) or trainer.interrupted:
                raise interrupted(e, trainer, record.plan.out_dir) from None
            raise
        timing["fit_s"] = time.time() - t0
        record.training = {k: float(v) for k, v in trainer.callback_metrics.items()}
        if datamodule.val_prefixes:  # the final student's held-out losses, whatever the step budget was
            for per_loader in trainer.validate(module, datamodule=datamodule, verbose=False):
                record.training.update({k: float(v) for k, v in per_loader.items()})


def write_results(cfg: DictConfig, parts: RunParts, record: RunRecord, student: Any, started: float,
                  loggers: list[Any]) -> dict[str, Any]:
    """Save the student, then the records, ``results.json`` last (its presence marks a complete run);
    publish to the loggers and print the summary table."""
    out_dir, timing, trainer = record.plan.out_dir, record.timing, parts.trainer
    if cfg.save_student:
        student.save_pretrained(out_dir / "student")
    timing["total_s"] = time.time() - started
    if (age := process_age_s()) is not None:
        # what the user of a single run waits for, start-up and imports included (in a multirun: since the sweep began)
        timing["process_s"] = age
    timing["peak_rss_mb"] = peak_rss_mb()
    overrides = _command_line_overrides()
    results = {
        # `make bench` reports the latest default run (no overrides), cold and warm cache, from this record
        "run": {"overrides": overrides, "default": overrides == [], "cache": _cache_state(parts.evaluators, parts.teacher_counts),
                "machine": machine()},
        "config": record.plan.config,
        "metrics": record.metrics,
        "training": record.training,
        "data": parts.datamodule.summary() if parts.datamodule else {},
        "eval_sets": {name: size for e in parts.evaluators for name, size in e.sizes().items()},
        "eval_skipped": parts.skipped,
        "timing": timing,
        "distributed": {"world_size": trainer.world_size if trainer else 1,
                        "strategy": type(trainer.strategy).__name__ if trainer else None},
        "student_dir": str(out_dir / "student") if cfg.save_student else None,
    }
    if parts.ckpt is not None:  # this attempt continued an earlier one
        results["resumed"] = {"checkpoint": parts.ckpt, "step": parts.ckpt_step,
                              "changed": {k: list(v) for k, v in record.plan.state.changed.items()}}
    results["flat"] = flatten_results(results)
    files: dict[str, Any] = {}  # the evaluators' records (per_query.json, mcqa.json), merged by file name
    for evaluator in parts.evaluators:
        for name, content in evaluator.records().items():
            files[name] = {**files[name], **content} if name in files else content
    for name, content in files.items():
        atomic_write_json(out_dir / name, content)
    atomic_write_json(out_dir / "results.json", results)  # last: its presence marks a complete run
    if not cfg.keep_checkpoints:  # they exist to resume an unfinished run; this one is finished
        shutil.rmtree(out_dir / "checkpoints", ignore_errors=True)
    point_symlink(Path(cfg.paths.log_dir) / "latest", out_dir)
    publish(loggers, results, files.get("per_query.json", {}))
    print_summary(results)
    return results
