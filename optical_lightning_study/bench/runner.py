"""``make bench``: run every benchmark in one process and write ``bench.json`` and ``bench.md``.

The top-level ratios are what the targets judge (see ``TARGETS``); each is a quotient of two
measurements from this same process. ``bench.json`` is written last and atomically, so a stopped
benchmark never leaves a file that looks complete.
"""

from __future__ import annotations

import logging
import time
from functools import partial
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from optical_lightning.evaluation.datasets import load_retrieval_dir
from optical_lightning.utils.atomic import atomic_write_json, atomic_write_text
from optical_lightning.utils.errors import ConfigError, DataError
from optical_lightning.utils.precision import training_precision
from optical_lightning.utils.resources import machine, peak_rss_mb, prompt_memory_return
from optical_lightning_study.bench.default_run import latest_default_runs
from optical_lightning_study.bench.encoding import bench_encoding
from optical_lightning_study.bench.language_model import bench_language_model, markdown_rows
from optical_lightning_study.bench.ot_scaling import bench_ot_scaling
from optical_lightning_study.bench.search import bench_search
from optical_lightning_study.bench.steps import StepBench, bench_steps, pick_pairs
from optical_lightning_study.bench.student_variants import bench_student_variants

log = logging.getLogger(__name__)

# key -> (comparison, target): every target is a ratio or a limit of the default run
TARGETS: dict[str, tuple[str, float]] = {
    "optical_vs_mse_step": ("<=", 1.10),
    "teacher_cache_speedup": (">=", 1.3),
    "fast_step_speedup": (">=", 2.0),  # top-k layers on the student cache against today's full step
    "eval_vs_raw_forward": (">=", 0.9),
    "default_run_wall_s": ("<=", 15 * 60),
    "default_run_peak_rss_mb": ("<=", 6 * 1024),
    # the language-model rows (bench.language_model; optical_lightning_study/bench/language_model.py)
    "lm_load_s": ("<=", 15.0),
    "lm_scoring_vs_bare_forward": (">=", 0.9),
    "lm_step_bf16_s": ("<=", 4.0),
    "lm_teacher_cache_of_bound": (">=", 0.9),
    "reasoning_run_wall_s": ("<=", 30 * 60),
    "reasoning_run_peak_rss_mb": ("<=", 12 * 1024),
}


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _eval_texts(folder: Path, n: int) -> tuple[list[str], list[str]]:
    if not folder.is_dir():
        raise DataError(f"benchmark evaluation set {folder} not found: run `make data`, or set bench.eval_set=PATH "
                        f"to a retrieval folder (docs.tsv, queries.tsv, qrels.tsv)")
    rs = load_retrieval_dir(folder)
    return list(rs.docs.values())[:n], list(rs.queries.values())[:n]


def check_targets(figures: dict[str, float | None]) -> dict[str, dict[str, Any]]:
    checks = {}
    for key, (op, target) in TARGETS.items():
        value = figures.get(key)
        met = None if value is None else (value <= target if op == "<=" else value >= target)
        checks[key] = {"value": value, "target": f"{op} {target:g}", "met": met}
    return checks


def run_bench(cfg: DictConfig) -> dict[str, Any]:
    """Every part in ``bench.parts`` (``retrieval``: the encoder student's steps, encoding, OT head and default run;
    ``language_model``: the reasoning job's rows), then the targets of the figures measured."""
    b = cfg.bench
    parts = list(b.parts)
    unknown = sorted(set(parts) - set(PARTS))
    if unknown or not parts:
        raise ConfigError(f"bench.parts={parts}: choose some of {list(PARTS)}")
    started = time.time()
    torch.manual_seed(cfg.seed)
    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    figures: dict[str, Any] = {}
    results: dict[str, Any] = {"parts": parts, "machine": machine()}
    for part in parts:
        results.update(PARTS[part](cfg, datamodule, figures))
    results.update(bench_wall_s=time.time() - started, bench_peak_rss_mb=peak_rss_mb())
    results["targets"] = check_targets(figures)
    out_dir = Path(b.out_dir)
    atomic_write_text(out_dir / "bench.md", markdown(results))
    atomic_write_json(out_dir / "bench.json", results)  # last: its presence marks a complete benchmark
    return results


def retrieval_part(cfg: DictConfig, datamodule: Any, figures: dict[str, Any]) -> dict[str, Any]:
    """The encoder student: training steps per loss, student variants, encoding throughput, the OT head's scaling
    and the default run's records."""
    b = cfg.bench
    device = _device(b.device)
    docs, queries = _eval_texts(Path(b.eval_set), b.eval_texts)

    log.info("loading teacher and student")
    teacher = instantiate(cfg.teacher, frozen=True).to(device)
    student = instantiate(cfg.student, target_dim=teacher.dim).to(device)
    pairs = pick_pairs(datamodule.train_pairs, teacher, student, b.batch_size, b.tokens)
    head_factory = partial(instantiate, cfg.ot)
    # as a run would train: the trainer config's precision on the CPU, the GPU's fastest mixed precision there
    precision = str(cfg.trainer.precision) if device.type == "cpu" else training_precision("gpu")

    log.info("training steps (batch %d, ~%d tokens a side, %s)", b.batch_size, b.tokens, precision)
    step_bench = StepBench(teacher, student, lambda loss: head_factory(loss=loss), instantiate(cfg.optim.optimizer),
                           pairs, precision, device)
    with prompt_memory_return():  # the allocator settings training runs under (optical_lightning/training/pipeline.py)
        steps = bench_steps(step_bench, list(b.variants), b.warmup, b.repeats)
        variants = None
        if b.get("student_variants"):
            log.info("student variants: top-k layers, student cache, LoRA, torch.compile, length buckets")
            variants = bench_student_variants(
                cfg, lambda **kw: instantiate(cfg.student, target_dim=teacher.dim, **kw).to(device),
                lambda s: StepBench(teacher, s, lambda loss: head_factory(loss=loss), instantiate(cfg.optim.optimizer),
                                    pairs, precision, device),
                lambda window: instantiate(cfg.data, bucket_batches=window), b.warmup, b.repeats)
    median = {k: v["median_s"] for k, v in steps["steps"].items()}

    log.info("evaluation throughput (%d documents, %d queries)", len(docs), len(queries))
    encoding = {
        "documents": bench_encoding(teacher, docs, "passage", cfg.retrieval.batch_size, cfg.retrieval.precision, b.eval_repeats),
        "queries": bench_encoding(student, queries, "query", cfg.retrieval.batch_size, cfg.retrieval.precision, b.eval_repeats),
    }

    log.info("search time: pooled against max-sim (%d documents, %d queries)", len(docs), len(queries))
    search = bench_search(teacher, student, docs, queries, cfg.retrieval.batch_size, cfg.retrieval.precision,
                          b.eval_repeats)

    log.info("OT head scaling")
    ot = bench_ot_scaling(head_factory(), list(b.ot_tokens), b.ot_tokens_batch, list(b.ot_batches),
                          b.ot_batches_tokens, teacher.dim, b.ot_repeats, device)

    default = latest_default_runs(b.runs_dir)
    reported = default["cold"] or default["warm"]
    figures.update({
        "optical_vs_mse_step": median["optical"] / median["mse"],
        "teacher_cache_speedup": steps["teacher_cache"]["live_step_s"] / steps["teacher_cache"]["cached_step_s"],
        "eval_vs_raw_forward": min(e["ratio"] for e in encoding.values()),
        "fast_step_speedup": variants["speedup_vs_full"][f"top{variants['top_layers']}_cached"] if variants else None,
    })
    results: dict[str, Any] = {
        **figures,
        "optical_vs_mse_target_only_step": median["optical"] / median["mse_target_only"],
        "optical_divergence_vs_mse_step": median["optical_divergence"] / median["mse"],
        "optical_vs_student_only_step": median["optical"] / median["student_only"],
        "teacher_cache_loss_abs_diff": steps["teacher_cache"]["abs_diff"],
        "teacher_cache_speedup_bound": steps["teacher_cache"]["speedup_bound"],
        "ot_scaling": ot,
        "default_run": default,
        "steps": steps,
        "student_variants": variants,
        "encoding": encoding,
        "search": search,
        "device": str(device),
        "precision": {"training": precision, "eval": str(cfg.retrieval.precision)},
    }
    figures["default_run_wall_s"] = reported["wall_s"] if reported else None
    figures["default_run_peak_rss_mb"] = max((r["peak_rss_mb"] for r in default.values() if r), default=None)
    return results


def language_model_part(cfg: DictConfig, datamodule: Any, figures: dict[str, Any]) -> dict[str, Any]:
    """The reasoning job's language model (optical_lightning_study/bench/language_model.py), on the CPU."""
    lm_cfg = cfg.bench.language_model
    log.info("language model: load, scoring, training steps (bf16 and float32)")
    head_factory = partial(instantiate, cfg.ot)
    lm = bench_language_model(cfg, datamodule.train_pairs, lambda loss: head_factory(loss=loss),
                              instantiate(cfg.optim.optimizer), lm_cfg.warmup, lm_cfg.repeats)
    fast = lm.get("bf16") or lm["32"]
    run = lm["reasoning_run"]
    figures.update({
        "lm_load_s": fast["load_s"],
        "lm_scoring_vs_bare_forward": min(lm[d]["scoring"]["ratio"] for d in ("bf16", "32") if d in lm),
        # the live step as the cache's Amdahl bound takes it: the faster of its two passes (the first pays warm-up)
        "lm_step_bf16_s": lm["bf16"]["training"]["teacher_cache"]["live_step_s"] if "bf16" in lm else None,
        "lm_teacher_cache_of_bound": fast["training"]["cache_of_bound"],
        "reasoning_run_wall_s": run["wall_s"] if run else None,
        "reasoning_run_peak_rss_mb": run["peak_rss_mb"] if run else None,
    })
    return {"language_model": lm}


PARTS = {"retrieval": retrieval_part, "language_model": language_model_part}


def markdown(r: dict[str, Any]) -> str:
    """The README table: targets first, then the step, encoding, OT-scaling and language-model details."""
    m = r["machine"]
    where = (f", device {r['device']}, training precision {r['precision']['training']}" if "device" in r else "")
    lines = [f"Measured by `make bench` (parts: {', '.join(r['parts'])}) on {m['cpu']} ({m['cores']} cores, torch "
             f"{m['torch']}{where}), {m['time']}; the whole benchmark took {r['bench_wall_s'] / 60:.1f} min.", "",
             "| figure | measured | target | met |", "|---|---|---|---|"]
    for key, check in r["targets"].items():
        value = check["value"]
        shown = "not measured" if value is None else f"{value:.0f}" if abs(value) >= 100 else f"{value:.2f}"
        met = "–" if check["met"] is None else "yes" if check["met"] else "**no**"
        lines.append(f"| `{key}` | {shown} | {check['target']} | {met} |")
    if "steps" in r:
        lines += _retrieval_markdown(r)
    if r.get("language_model"):
        lines += markdown_rows(r["language_model"])
    return "\n".join(lines) + "\n"


def _retrieval_markdown(r: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    s = r["steps"]
    lines += ["", f"Training step, batch {s['batch']['pairs']}, {s['batch']['teacher_tokens']:.0f} teacher / "
              f"{s['batch']['student_tokens']:.0f} student tokens a side (median of the timed steps):", "",
              "| variant | step (s) | vs mse |", "|---|---|---|"]
    mse = s["steps"]["mse"]["median_s"]
    for name, t in s["steps"].items():
        if name != "optical_again":
            lines.append(f"| {name} | {t['median_s']:.3f} | {t['median_s'] / mse:.2f} |")
    sv = r.get("student_variants")
    if sv:
        lines += ["", "Faster steps: the `optical` step with less of the student training (same batch; "
                  "`optim.lr` etc. as configured):", "",
                  "| student | step (s) | speed-up vs full | trainable parameters |", "|---|---|---|---|"]
        for name, t in sv["steps"].items():
            lines.append(f"| {name} | {t['median_s']:.3f} | {sv['speedup_vs_full'][name]:.2f} | "
                         f"{t['trainable_params'] / 1e6:.2f} M |")
        cl, pad = sv["cached_loss"], sv["padding"]
        lines += ["", f"Student cache: loss {cl['live']:.6f} with the lower layers running vs {cl['cached']:.6f} read "
                  f"from the cache (|diff| {cl['abs_diff']:.1e})."
                  + (f" `torch.compile` took {sv['compile_s']:.0f} s before its first step." if sv["compile_s"] else ""),
                  "", f"Length buckets (`data.bucket_batches={pad['bucket_batches']}`), the first {pad['batches']} batches "
                  f"of the run's sampler: {pad['random']['mean_padded_tokens']:.0f} padded student tokens a batch at random "
                  f"vs {pad['bucketed']['mean_padded_tokens']:.0f} bucketed; mean step {pad['random']['mean_step_s']:.3f} s "
                  f"vs {pad['bucketed']['mean_step_s']:.3f} s ({pad['speedup']:.2f}x)."]
    tc = s["teacher_cache"]
    lines += ["", f"Teacher cache: live {tc['live_step_s']:.3f} s vs cached {tc['cached_step_s']:.3f} s per step; "
              f"loss {tc['loss_live']:.6f} live vs {tc['loss_cached']:.6f} cached (|diff| {tc['abs_diff']:.1e}). The teacher's "
              f"forward pass takes {tc['teacher_forward_s']:.3f} s ({100 * tc['teacher_share']:.0f}% of the live step), so "
              f"no cache can make this step more than {tc['speedup_bound']:.2f}x faster. Building the batch takes "
              f"{1000 * tc['collate_live_s']:.1f} ms live (tokenising) and {1000 * tc['collate_cached_s']:.1f} ms cached.", "",
              "| encoding | texts | ours (texts/s) | bare forward (texts/s) | ratio |", "|---|---|---|---|---|"]
    for name, e in r["encoding"].items():
        lines.append(f"| {name} ({e['role']}, batch {e['batch_size']}, {e['precision']}) | {e['texts']} | "
                     f"{e['ours_per_s']:.1f} | {e['raw_per_s']:.1f} | {e['ratio']:.2f} |")
    se = r["search"]
    lines += ["", f"Search, {se['queries']} queries over {se['docs']} documents ({se['query_tokens_mean']:.0f} and "
              f"{se['doc_tokens_mean']:.0f} tokens on average), encoded beforehand: max-sim costs "
              f"{se['maxsim_vs_pooled']:.0f}x pooled search, and runs {se['maxsim_speedup_vs_padded']:.1f}x faster than "
              "the same scores through a padded (queries, documents, Lq, Ld) tensor.", "",
              "| search | ms per query |", "|---|---|"]
    lines += [f"| {name} | {ms:.2f} |" for name, ms in se["ms_per_query"].items()]
    ot = r["ot_scaling"]
    ex = ot["exponents"]
    lines += ["", f"OT head, forward + backward, D = {ot['dim']}; fitted growth: time ~ N^{ex['time_vs_tokens']:.2f}, "
              f"memory ~ N^{ex['memory_vs_tokens']:.2f}, time ~ B^{ex['time_vs_batch']:.2f}, "
              f"memory ~ B^{ex['memory_vs_batch']:.2f}; the peak never exceeds "
              f"{ot['max_peak_over_bnmd']:.3f} of one (B, N, M, D) tensor.", "",
              "| B | N = M | time (ms) | peak memory (MiB) | peak / one (B,N,M) plan |", "|---|---|---|---|---|"]
    for row in ot["by_tokens"] + ot["by_batch"]:
        lines.append(f"| {row['batch']} | {row['tokens']} | {row['time_ms']:.1f} | {row['peak_mb']:.1f} | "
                     f"{row['peak_over_plan']:.1f} |")
    lines += ["", "Default run (`make run`), latest records:", "", "| cache | wall (min) | peak RSS (GB) | results |",
              "|---|---|---|---|"]
    for state, rec in r["default_run"].items():
        if rec:
            lines.append(f"| {state} | {rec['wall_s'] / 60:.1f} | {rec['peak_rss_mb'] / 1024:.2f} | `{rec['results']}` |")
        else:
            lines.append(f"| {state} | no run recorded | | |")
    return lines
