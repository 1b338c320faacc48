"""The language-model rows of ``make bench``: what the reasoning job (``experiment=reasoning``) spends its time on.

* **load** - the converted model folder into memory (``load_causal_lm``), the first thing every run pays;
* **scoring** - letter log-likelihoods of AfriMMLU prompts (``question_logliks``) against a bare ``transformers``
  forward over the same prompts, batch size and dtype, in input order, as a hand-written script would; ours also
  sorts by length, reads the four letters and copies them to the CPU;
* **training step** - one step of the reasoning recipe's OT term (batch of real bitext pairs of about ``tokens``
  tokens a side, LoRA on the layers below ``align_layer``), in bf16 where the CPU has it, and with float32 weights
  and no autocast: what a CPU without bf16 runs (``dtype: auto``);
* **teacher cache** - the same step with the teacher's hidden states read from the cache, against Amdahl's bound
  (a cache can at most remove the teacher's forward pass);
* **the job** - the latest ``experiment=reasoning`` records under ``outputs/``: wall time and peak RSS.
"""

from __future__ import annotations

import gc
import json
import logging
import time
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from optical_lightning.data.bitext import BitextPair
from optical_lightning.evaluation.loglik import format_prompt, question_logliks, resolve_template
from optical_lightning.evaluation.questions import read_mcqa
from optical_lightning_study.bench.measure import time_call
from optical_lightning_study.bench.steps import StepBench, bench_steps, pick_pairs

log = logging.getLogger(__name__)


def bare_forward(lm: Any, tokenizer: Any, prompts: list[str], batch_size: int) -> None:
    """The prompts with their four letters, in input order, through ``lm`` with no grad: only the logits."""
    texts = [p + " A" for p in prompts]  # one row per prompt: the four letters are read at the same position
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            enc = tokenizer(texts[start:start + batch_size], padding=True, return_tensors="pt")
            _ = lm(**enc).logits


def bench_scoring(encoder: Any, questions: list, template: str, batch_size: int, repeats: int) -> dict[str, Any]:
    prompts = [format_prompt(q, template) for q in questions]
    lm, tokenizer = encoder.lm, encoder.tokenizer
    question_logliks(lm, tokenizer, questions[:batch_size], template, batch_size)  # one-off costs
    ours = time_call(lambda: question_logliks(lm, tokenizer, questions, template, batch_size), 0, repeats)
    bare = time_call(lambda: bare_forward(lm, tokenizer, prompts, batch_size), 0, repeats)
    return {"questions": len(questions), "batch_size": batch_size, "dtype": str(lm.dtype).removeprefix("torch."),
            "ours_s_per_question": ours["median_s"] / len(questions),
            "bare_s_per_question": bare["median_s"] / len(questions),
            "ratio": bare["median_s"] / ours["median_s"]}


def bench_training(teacher: Any, lm_cfg: DictConfig, pairs: list[BitextPair], precision: str, head_factory: Any,
                   optimizer_factory: Any, warmup: int, repeats: int) -> dict[str, Any]:
    student = instantiate(lm_cfg.student, teacher=teacher)
    chosen = pick_pairs(pairs, teacher, student, lm_cfg.batch_size, lm_cfg.tokens)
    bench = StepBench(teacher, student, head_factory, optimizer_factory, chosen, precision, torch.device("cpu"))
    steps = bench_steps(bench, ["optical"], warmup, repeats)
    tc = steps["teacher_cache"]
    achieved = tc["live_step_s"] / tc["cached_step_s"]
    return {**steps, "cache_speedup": achieved, "cache_of_bound": achieved / tc["speedup_bound"]}


def latest_reasoning_run(log_dir: str | Path) -> dict[str, Any] | None:
    """The most recent complete ``experiment=reasoning`` run on the default recipe and split, and its cost."""
    latest = None
    for path in sorted(Path(log_dir).glob("reasoning/**/results.json"), key=lambda p: p.stat().st_mtime):
        try:
            results = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        run = results.get("run") or {}
        overrides = [o for o in run.get("overrides", []) if not o.startswith(("trainer.enable_progress_bar", "hydra."))]
        if overrides != ["experiment=reasoning"]:
            continue
        timing = results.get("timing", {})
        latest = {"wall_s": timing.get("process_s", timing.get("total_s")), "peak_rss_mb": timing.get("peak_rss_mb"),
                  "cache": run.get("cache"), "machine": run.get("machine"), "results": str(path)}
    return latest


def bench_language_model(cfg: DictConfig, pairs: list[BitextPair], head_factory: Any, optimizer_factory: Any,
                         warmup: int, repeats: int) -> dict[str, Any]:
    """Every row above, for bf16 weights (where ``bench.language_model.bf16``) and float32 ones."""
    lm_cfg = cfg.bench.language_model
    mcqa = lm_cfg.mcqa
    questions = read_mcqa(mcqa.path)[: lm_cfg.questions]
    template = resolve_template(mcqa.template)
    out: dict[str, Any] = {}
    for dtype, precision in (("bf16", "bf16-mixed"), ("32", "32-true")):
        if dtype == "bf16" and not lm_cfg.bf16:
            continue
        gc.collect()
        started = time.perf_counter()
        teacher = instantiate(lm_cfg.teacher, dtype=dtype)
        load_s = time.perf_counter() - started
        out.update(model=teacher.name, align_layer=teacher.align_layer)
        log.info("language model (%s): loaded in %.1f s; scoring %d questions", dtype, load_s, len(questions))
        row: dict[str, Any] = {"load_s": load_s,
                               "scoring": bench_scoring(teacher, questions, template, mcqa.batch_size, repeats=1)}
        log.info("language model (%s): training steps", dtype)
        row["training"] = bench_training(teacher, lm_cfg, pairs, precision, head_factory, optimizer_factory,
                                         warmup, repeats)
        out[dtype] = row
        del teacher
    out["reasoning_run"] = latest_reasoning_run(cfg.bench.runs_dir)
    return out


def markdown_rows(lm: dict[str, Any]) -> list[str]:
    """The language-model table of ``bench.md``: one column per weight dtype."""
    dtypes = [d for d in ("bf16", "32") if d in lm]
    names = {"bf16": "bf16 weights, bf16 autocast", "32": "float32 weights (a CPU without bf16)"}
    lines = ["", f"Language model `{lm['model']}`, training at layer {lm['align_layer']} (LoRA below it):", "",
             "| | " + " | ".join(names[d] for d in dtypes) + " |", "|---|" + "---|" * len(dtypes)]

    def row(label: str, value) -> None:
        lines.append(f"| {label} | " + " | ".join(value(lm[d]) for d in dtypes) + " |")

    row("load the converted folder (s)", lambda r: f"{r['load_s']:.1f}")
    row("scoring, ours (s per question)", lambda r: f"{r['scoring']['ours_s_per_question']:.3f}")
    row("scoring, bare forward (s per question)", lambda r: f"{r['scoring']['bare_s_per_question']:.3f}")
    row("scoring throughput vs bare forward", lambda r: f"{r['scoring']['ratio']:.2f}")
    row("training step, live teacher (s)", lambda r: f"{r['training']['teacher_cache']['live_step_s']:.2f}")
    row("training step, cached teacher (s)", lambda r: f"{r['training']['steps']['optical_cached']['median_s']:.2f}")
    row("teacher forward (s)", lambda r: f"{r['training']['teacher_cache']['teacher_forward_s']:.2f}")
    row("cache speed-up / Amdahl bound", lambda r: f"{r['training']['cache_speedup']:.2f} / "
        f"{r['training']['teacher_cache']['speedup_bound']:.2f}")
    first = lm[dtypes[0]]
    batch = first["training"]["batch"]
    lines += ["", f"Scoring: {first['scoring']['questions']} AfriMMLU questions, batch {first['scoring']['batch_size']}. "
              f"Training: batch {batch['pairs']}, {batch['teacher_tokens']:.0f} English / {batch['student_tokens']:.0f} "
              f"Swahili tokens a side."]
    run = lm.get("reasoning_run")
    lines.append("" if not run else f"The job (`python run.py experiment=reasoning`, {run['cache']} cache): "
                 f"{run['wall_s'] / 60:.1f} min, peak RSS {run['peak_rss_mb'] / 1024:.1f} GB (`{run['results']}`).")
    return lines
