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
from optical_lightning.evaluation.suite import EvalSuite
from optical_lightning.reporting.summary import flatten_results, print_summary
from optical_lightning.reporting.tracking import ResumableCSVLogger, finish, publish
from optical_lightning.training.launch import announce_rendezvous, check_cluster, rendezvous_failed
from optical_lightning.training.module import check_loss_weights
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


def _cache_state(suite: EvalSuite, teacher_counts: dict[str, int] | None) -> str:
    """``cold`` if the run computed document embeddings or teacher tokens, ``warm`` if all were cached."""
    misses = suite.cache.misses + (teacher_counts or {}).get("encoded", 0)
    hits = suite.cache.hits + (teacher_counts or {}).get("cached", 0)
    return "cold" if misses else "warm" if hits else "none"


def run(cfg: DictConfig) -> dict[str, Any]:
    """Evaluate zero-shot, train (unless ``distill=none``), evaluate again, save the student, write results.

    Returns the results dictionary that is also written to ``<run dir>/results.json``.
    """
    loggers: list[Any] = []
    # one run per folder: under DDP rank 0 holds the lock for the ranks it starts
    with locked(Path(cfg.paths.output_dir)) if rank_zero_only.rank == 0 else contextlib.nullcontext():
        try:
            return _run(cfg, loggers)
        finally:
            finish(loggers)  # close W&B runs even on errors, so the next job of a multirun starts clean


def _run(cfg: DictConfig, loggers: list[Any]) -> dict[str, Any]:
    started = time.time()
    out_dir = Path(cfg.paths.output_dir)
    # Under DDP every rank runs this function; only rank 0 writes files and evaluates before
    # training (the other ranks are started by, or join, trainer.fit). After training all ranks
    # share the evaluation (see evaluation/distributed.py) and rank 0 writes the results.
    rank0 = rank_zero_only.rank == 0
    check_numeric_settings(cfg)  # seed=abc, nan or inf anywhere: one line before anything runs
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    check_language(cfg.lang.code)

    # 1. The run directory: a complete run is not redone, an unfinished one resumes only with its own settings.
    config = OmegaConf.to_container(cfg, resolve=True)
    if cfg.distill.train:  # a training file replaced between an interruption and its resume is a changed setting
        config["data_files"] = data_fingerprints({key: as_list(config["data"].get(key.split(".")[1]))
                                                  for key in ("data.train", "data.domain_files")})
    state = plan_run_dir(out_dir, config, rerun=bool(cfg.get("rerun", False)),
                         allow_config_change=bool(cfg.get("allow_config_change", False)),
                         resume=cfg.get("ckpt_path") == "auto")
    if state.complete:
        if rank0:
            print(f"{out_dir} already holds this complete run ({RESULTS}); nothing to redo (add rerun=true to "
                  f"run it again and replace its outputs)")
            print_summary(state.results)
        return state.results

    # 2. Every setting, cheapest first, before any weights load.
    train_student = bool(cfg.distill.train)
    teacher_role = cfg.distill.teacher_role
    if teacher_role not in ("query", "passage"):
        raise ConfigError(f"distill.teacher_role={teacher_role!r}: use query or passage (the teacher's prefix for the English side)")
    make_module = None
    if train_student:
        check_loss_weights(cfg.distill.ot_weight, cfg.distill.mse_weight, cfg.distill.nce_weight,
                           cfg.distill.nce_temperature)
        build(cfg.ot, "ot")  # the OT head's settings named as the user gives them (ot.blur), not as distill.module's copy
        make_module = build(cfg.distill.module, "distill.module")  # the loss terms are checked here
    datamodule = build(cfg.data, "data") if train_student else None
    if datamodule is not None:
        datamodule.setup("fit")
    suite: EvalSuite = build(cfg.eval, "eval")
    suite.load()
    if datamodule is not None and suite.sets:
        suite.add_validation_bitext(datamodule.val_pairs, datamodule.domain_val_pairs)
    mcqa = build(cfg.mcqa, "mcqa") if cfg.get("mcqa") else None
    if mcqa is not None and not mcqa.load():  # an optional set whose file is missing: skipped, said once
        suite.skipped[mcqa.name] = mcqa.skipped
        mcqa = None
    loggers.extend(_build_each(cfg.get("logger"), "logger"))
    trainer = optimizer = scheduler = None
    ckpt, ckpt_step = None, 0
    if train_student:
        max_steps = check_step_budget(cfg.trainer)
        check_cluster(cfg.trainer)
        trainer = build(cfg.trainer, "trainer", callbacks=_build_each(cfg.get("callbacks"), "callbacks"),
                        logger=loggers or False)
        optimizer, scheduler = build(cfg.optim.optimizer, "optim.optimizer"), build(cfg.optim.scheduler, "optim.scheduler")
        check_factories(optimizer, scheduler, total_steps=max(1, max_steps))
        ckpt, ckpt_step = resume_checkpoint(cfg.get("ckpt_path"), state)
        for logger in loggers:
            if isinstance(logger, ResumableCSVLogger):
                logger.resume_step = ckpt_step  # keep the metrics an earlier attempt logged before the checkpoint
    if state.changed:
        log.warning("resuming %s with changed settings (allow_config_change=true): %s", out_dir,
                    ", ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in state.changed.items()))

    # 3. Every check passed: the run directory is this run's now.
    if rank0:
        if cfg.get("rerun", False):
            clear_outputs(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out_dir / CONFIG, yaml.safe_dump(config, sort_keys=False, allow_unicode=True))

    teacher = build(cfg.teacher, "teacher", frozen=True)
    student = build(cfg.student, "student", target_dim=teacher.dim)
    timing: dict[str, float] = {"load_s": time.time() - started}
    metrics: dict[str, dict[str, dict[str, float]]] = {}

    def evaluate(encoder, stage: str) -> None:
        t0 = time.time()
        for name, values in (suite.evaluate(encoder, teacher, stage) if suite.sets else {}).items():
            metrics.setdefault(name, {})[stage] = values
        if stage == "translate_dense" and mcqa is not None:  # translate-test of the questions (no BM25: 4 choices)
            answered = mcqa.evaluate_translated(suite.translator.translate, teacher, stage)
        elif mcqa is not None and stage not in suite.translate_stages and (stage != "teacher_en" or mcqa.teacher_row):
            answered = mcqa.evaluate(encoder, teacher, stage)
        else:
            answered = {}
        for name, report in answered.items():
            metrics.setdefault(name, {})[stage] = report
            log.info("%s %s: accuracy=%.3f [%.3f, %.3f] (chance %.3f, n=%d)%s", stage, name, report["accuracy"],
                     report["ci95_low"], report["ci95_high"], report["chance"], report["n"],
                     f", agreement with the teacher in English {report['agreement']:.3f}"
                     if "agreement" in report else "")
        timing[f"eval_{stage}_s"] = time.time() - t0

    evaluating = bool(suite.sets) or mcqa is not None
    if rank0 and evaluating and suite.upper_bound:
        evaluate(teacher, "teacher_en")
    for stage in suite.translate_stages if rank0 and suite.sets else ():  # the word-by-word translation baselines
        evaluate(teacher, stage)
    if rank0 and evaluating and (suite.zero_shot or not train_student):
        evaluate(student, "zero_shot")

    training: dict[str, float] = {}
    teacher_counts: dict[str, int] | None = None
    if train_student:
        teacher_cache = None
        if datamodule.teacher_cache:
            t0 = time.time()
            datamodule.trainer = trainer  # the step budget decides which sentences are visited
            precision = "bf16" if "bf16" in str(trainer.precision) else "32"  # as the live teacher would run
            teacher_cache = TeacherTokenCache(datamodule.teacher_cache_dir or Path(cfg.paths.cache_dir) / "teacher_tokens",
                                              teacher, role=teacher_role, precision=precision)
            teacher_counts = teacher_cache.prepare(p.en for p in datamodule.planned_pairs())
            timing["teacher_cache_s"] = time.time() - t0
            log.info("teacher cache: %d sentences cached, %d encoded (%.1fs)", teacher_counts["cached"], teacher_counts["encoded"],
                     timing["teacher_cache_s"])
        module = make_module(student=student, teacher=teacher, optimizer=optimizer, scheduler=scheduler)
        with_student_en = module.needs_student_en
        student_cache = None
        if datamodule.student_cache:
            t0 = time.time()
            datamodule.trainer = trainer
            student_cache = FrozenLayersCache(student)
            planned = datamodule.planned_pairs()
            counts = student_cache.prepare([p.tgt for p in planned] + ([p.en for p in planned] if with_student_en else []))
            timing["student_cache_s"] = time.time() - t0
            log.info("student cache: the fixed lower %d layers of %d sentences (%.1fs)", student.frozen_below,
                     counts["encoded"], timing["student_cache_s"])
        datamodule.collate_fn = PairCollator(teacher, student, with_student_en=with_student_en,
                                             teacher_cache=teacher_cache, teacher_role=teacher_role,
                                             student_cache=student_cache)
        t0 = time.time()
        with prompt_memory_return():  # keeps training's peak RSS near what its tensors use
            try:
                announce_rendezvous(trainer)
                trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt)
            except Exception as e:  # nodes that never all joined: one line (training/launch.py)
                if (failed := rendezvous_failed(e, trainer)) is None:
                    raise
                raise failed from e
            except SystemExit as e:  # Lightning exits after Ctrl-C (status 1) and SIGTERM (status 0)
                if isinstance(e, SIGTERMException) or trainer.interrupted:
                    raise interrupted(e, trainer, out_dir) from None
                raise
            timing["fit_s"] = time.time() - t0
            training = {k: float(v) for k, v in trainer.callback_metrics.items()}
            if datamodule.val_prefixes:  # the final student's held-out losses, whatever the step budget was
                for per_loader in trainer.validate(module, datamodule=datamodule, verbose=False):
                    training.update({k: float(v) for k, v in per_loader.items()})
        if evaluating:
            evaluate(student, "trained")

    results: dict[str, Any] = {}
    if trainer is None or trainer.is_global_zero:
        if cfg.get("save_student", True):
            student.save_pretrained(out_dir / "student")
        timing["total_s"] = time.time() - started
        if (age := process_age_s()) is not None:
            # what the user of a single run waits for, start-up and imports included (in a multirun: since the sweep began)
            timing["process_s"] = age
        timing["peak_rss_mb"] = peak_rss_mb()
        overrides = _command_line_overrides()
        results = {
            # `make bench` reports the latest default run (no overrides), cold and warm cache, from this record
            "run": {"overrides": overrides, "default": overrides == [], "cache": _cache_state(suite, teacher_counts),
                    "machine": machine()},
            "config": config,
            "metrics": metrics,
            "training": training,
            "data": datamodule.summary() if datamodule else {},
            "eval_sets": {name: {"queries": len(rs.queries), "docs": len(rs.docs)} for name, rs in suite.sets.items()},
            "eval_skipped": suite.skipped,
            "timing": timing,
            "distributed": {"world_size": trainer.world_size if trainer else 1,
                            "strategy": type(trainer.strategy).__name__ if trainer else None},
            "student_dir": str(out_dir / "student") if cfg.get("save_student", True) else None,
        }
        if ckpt is not None:  # this attempt continued an earlier one
            results["resumed"] = {"checkpoint": ckpt, "step": ckpt_step,
                                  "changed": {k: list(v) for k, v in state.changed.items()}}
        results["flat"] = flatten_results(results)
        if suite.per_query:
            atomic_write_json(out_dir / "per_query.json", suite.per_query)
        if mcqa is not None and mcqa.stages:
            atomic_write_json(out_dir / "mcqa.json", mcqa.details())
        atomic_write_json(out_dir / "results.json", results)  # last: its presence marks a complete run
        if not cfg.get("keep_checkpoints", True):  # they exist to resume an unfinished run; this one is finished
            shutil.rmtree(out_dir / "checkpoints", ignore_errors=True)
        point_symlink(Path(cfg.paths.log_dir) / "latest", out_dir)
        publish(loggers, results, suite.per_query)
        print_summary(results)
    return results
