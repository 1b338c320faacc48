"""The pipeline behind ``run.py``: config -> data -> encoders -> head -> evaluate -> fit -> evaluate -> results.

Everything is built from the Hydra config with ``hydra.utils.instantiate``; the order is chosen to
fail fast: config values, data files and evaluation sets are checked before any weights load.
"""

from __future__ import annotations

import logging
import shutil
import time
import warnings
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.utilities import rank_zero_only

from optical_lightning.atomic import atomic_write_json, atomic_write_text, point_symlink
from optical_lightning.data.teacher_cache import TeacherTokenCache
from optical_lightning.errors import ConfigError
from optical_lightning.evaluation.suite import EvalSuite
from optical_lightning.languages import check_language
from optical_lightning.models.collate import PairCollator
from optical_lightning.module import DistillationModule
from optical_lightning.resources import machine, peak_rss_mb, process_age_s, prompt_memory_return
from optical_lightning.summary import flatten_results, print_summary
from optical_lightning.tracking import finish, publish

log = logging.getLogger(__name__)

# The frozen teacher is in eval mode on purpose; Lightning warns about any eval-mode module at fit start.
warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode")


def _instantiate_list(group: DictConfig | None) -> list[Any]:
    """Instantiate every ``_target_`` entry of a dict-shaped group (callbacks, loggers)."""
    if not group:
        return []
    return [instantiate(c) for c in group.values() if isinstance(c, DictConfig) and "_target_" in c]


def resume_path(ckpt_path: str | None, out_dir: Path) -> str | None:
    """``auto``: continue from ``<run dir>/checkpoints/last.ckpt`` when an earlier attempt left one
    (a killed or requeued run re-launched into the same folder), else start fresh. On SLURM,
    Lightning's own ``hpc_ckpt_*.ckpt`` wins when no path is given. Other values go to Lightning."""
    if ckpt_path != "auto":
        return ckpt_path
    last = out_dir / "checkpoints" / "last.ckpt"
    if last.is_file():
        log.info("resuming from %s", last)
        return str(last)
    return None


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
    if rank0:
        out_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    check_language(cfg.lang.code)

    # Cheap checks first: OT hyper-parameters, training files, evaluation sets.
    train_student = bool(cfg.distill.train)
    teacher_role = cfg.distill.get("teacher_role", "query")
    if teacher_role not in ("query", "passage"):
        raise ConfigError(f"distill.teacher_role={teacher_role!r}: use query or passage (the teacher's prefix for the English side)")
    ot_head = instantiate(cfg.ot) if train_student and cfg.distill.ot_weight > 0 else None
    datamodule = instantiate(cfg.data) if train_student else None
    if datamodule is not None:
        datamodule.setup("fit")
    suite: EvalSuite = instantiate(cfg.eval)
    suite.load()
    if datamodule is not None and suite.sets:
        suite.add_validation_bitext(datamodule.val_pairs)
    mcqa = instantiate(cfg.mcqa) if cfg.get("mcqa") else None
    if mcqa is not None:
        mcqa.load()

    loggers.extend(_instantiate_list(cfg.get("logger")))
    teacher = instantiate(cfg.teacher, frozen=True)
    student = instantiate(cfg.student, target_dim=teacher.dim)
    timing: dict[str, float] = {"load_s": time.time() - started}
    metrics: dict[str, dict[str, dict[str, float]]] = {}

    mcqa_details: dict[str, dict] = {}

    def evaluate(encoder, stage: str) -> None:
        t0 = time.time()
        for name, values in (suite.evaluate(encoder, teacher, stage) if suite.sets else {}).items():
            metrics.setdefault(name, {})[stage] = values
        if mcqa is not None and (stage != "teacher_en" or mcqa.teacher_row):
            report = mcqa.evaluate(encoder, teacher)
            mcqa_details[stage] = {k: report.pop(k) for k in ("per_group", "per_subject")}
            metrics.setdefault(mcqa.name, {})[stage] = report
            log.info("%s %s: accuracy=%.3f (chance %.3f, n=%d)", stage, mcqa.name, report["accuracy"],
                     report["chance"], report["n"])
        timing[f"eval_{stage}_s"] = time.time() - t0

    evaluating = bool(suite.sets) or mcqa is not None
    if rank0 and evaluating and suite.upper_bound:
        evaluate(teacher, "teacher_en")
    if rank0 and evaluating and (suite.zero_shot or not train_student):
        evaluate(student, "zero_shot")

    training: dict[str, float] = {}
    trainer = None
    teacher_counts: dict[str, int] | None = None
    if train_student:
        trainer = instantiate(
            cfg.trainer, callbacks=_instantiate_list(cfg.get("callbacks")),
            logger=loggers or False,
        )
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
        datamodule.collate_fn = PairCollator(teacher, student, with_student_en=cfg.distill.mse_weight > 0,
                                             teacher_cache=teacher_cache, teacher_role=teacher_role)
        module = DistillationModule(
            student, teacher, ot_head, ot_weight=cfg.distill.ot_weight, mse_weight=cfg.distill.mse_weight,
            optimizer=instantiate(cfg.optim.optimizer), scheduler=instantiate(cfg.optim.scheduler),
        )
        t0 = time.time()
        with prompt_memory_return():  # keeps training's peak RSS near what its tensors use
            trainer.fit(module, datamodule=datamodule, ckpt_path=resume_path(cfg.get("ckpt_path"), out_dir))
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
            "config": OmegaConf.to_container(cfg, resolve=True),
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
        results["flat"] = flatten_results(results)
        if suite.per_query:
            atomic_write_json(out_dir / "per_query.json", suite.per_query)
        if mcqa_details:
            atomic_write_json(out_dir / "mcqa.json", {"name": mcqa.name, "path": str(mcqa.path), "mode": mcqa.mode,
                                                      "stages": mcqa_details})
        atomic_write_json(out_dir / "results.json", results)  # last: its presence marks a complete run
        if not cfg.get("keep_checkpoints", True):  # they exist to resume an unfinished run; this one is finished
            shutil.rmtree(out_dir / "checkpoints", ignore_errors=True)
        point_symlink(Path(cfg.paths.log_dir) / "latest", out_dir)
        publish(loggers, results, suite.per_query)
        print_summary(results)
    return results
