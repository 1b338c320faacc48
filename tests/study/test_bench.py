"""`make bench` on a tiny configuration: a real `python experiments/bench.py` run in a subprocess, and
the benchmark's primitives against hand-computed values."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import torch
from conftest import FIXTURES, ROOT, SW_BITEXT, cli_env

from optical_lightning_study.bench.default_run import latest_default_runs
from optical_lightning_study.bench.measure import growth_exponent, peak_memory_mb

TINY_BENCH = ("teacher=tiny", "student=tiny", f"data.train={SW_BITEXT}",
              f"bench.eval_set={FIXTURES / 'eval' / 'retrieval' / 'afriqa-sw-en'}", "bench.eval_texts=16",
              "bench.ot_tokens=[8,16,32]", "bench.ot_tokens_batch=4", "bench.ot_batches=[2,4,8]",
              "bench.ot_batches_tokens=8", "bench.batch_size=4", "bench.warmup=1", "bench.repeats=2",
              "bench.eval_repeats=1", "bench.ot_repeats=1", "bench.student_variants.top_layers=1",
              "bench.student_variants.compile=false", "bench.student_variants.sampler_batches=2",
              "bench.student_variants.bucket_batches=4", "bench.parts=[retrieval]")
# the language-model rows on the tiny causal LM: the reasoning job's configs swapped for tiny ones
TINY_LM_BENCH = ("teacher@bench.language_model.teacher=tiny_lm", "student@bench.language_model.student=tiny_lm",
                 f"data.train={SW_BITEXT}", "bench.parts=[language_model]", "bench.language_model.questions=6",
                 f"bench.language_model.mcqa.path={FIXTURES / 'mcqa' / 'afrimmlu' / 'sw.test.jsonl'}",
                 "bench.language_model.batch_size=4", "bench.language_model.tokens=12",
                 "bench.language_model.repeats=2")


def run_bench(*overrides: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "experiments" / "bench.py"), *overrides, f"paths.root_dir={cwd}"],
                          cwd=cwd, env=cli_env(), capture_output=True, text=True, timeout=300)


def test_growth_exponent_recovers_a_power_law():
    sizes = [16, 32, 64, 128]
    assert growth_exponent(sizes, [3 * n**2 for n in sizes]) == pytest.approx(2.0)
    assert math.isnan(growth_exponent([16], [1.0]))


def test_peak_memory_counts_tensors_alive_at_once():
    def two_buffers() -> None:
        a = torch.ones(1024, 1024)  # 4 MiB
        b = torch.ones(1024, 1024)  # 4 MiB more while a lives
        del a, b
        torch.ones(512, 1024)  # 2 MiB after both are freed: the peak stays 8
    assert peak_memory_mb(two_buffers) == pytest.approx(8.0, abs=0.1)


def test_tiny_bench_writes_every_figure(tmp_path):
    proc = run_bench(*TINY_BENCH, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    bench = json.loads((tmp_path / "outputs" / "bench" / "bench.json").read_text())
    for key in ("optical_vs_mse_step", "teacher_cache_speedup", "eval_vs_raw_forward"):
        assert bench[key] > 0, key
    # the cached teacher gives the same loss as the live one, and so does the student cache: the same up to
    # fp32 rounding, which differs with batch shapes (the cache encodes each sentence in another batch) and
    # which Sinkhorn's exp(-C/ε) amplifies: measured 2.1e-5 on a loss of 0.76. A wrong cache is off by more.
    teacher_cache = bench["steps"]["teacher_cache"]
    assert teacher_cache["loss_cached"] == pytest.approx(teacher_cache["loss_live"], rel=1e-3, abs=1e-5)
    variants = bench["student_variants"]
    assert set(variants["steps"]) == {"full", "top1", "top1_cached", "lora"} and bench["fast_step_speedup"] > 0
    cached_loss = variants["cached_loss"]
    assert cached_loss["cached"] == pytest.approx(cached_loss["live"], rel=1e-3, abs=1e-5)
    assert variants["steps"]["lora"]["trainable_params"] < variants["steps"]["full"]["trainable_params"]
    assert variants["padding"]["random"]["mean_padded_tokens"] >= variants["padding"]["bucketed"]["mean_padded_tokens"]
    search = bench["search"]
    assert set(search["ms_per_query"]) == {"pooled", "maxsim", "maxsim_padded"} and search["maxsim_vs_pooled"] > 0
    ot = bench["ot_scaling"]
    assert [r["tokens"] for r in ot["by_tokens"]] == [8, 16, 32] and [r["batch"] for r in ot["by_batch"]] == [2, 4, 8]
    assert ot["max_peak_over_bnmd"] < 1  # never a (B, N, M, D) tensor
    assert set(bench["default_run"]) == {"cold", "warm"}  # none recorded under this fresh root
    assert set(bench["targets"]) >= {"optical_vs_mse_step", "teacher_cache_speedup", "eval_vs_raw_forward",
                                     "default_run_wall_s", "default_run_peak_rss_mb"}
    table = (tmp_path / "outputs" / "bench" / "bench.md").read_text()
    assert "| `optical_vs_mse_step` |" in table and "OT head" in table and "| maxsim_padded |" in table and "| top1_cached |" in table


def test_tiny_language_model_bench_writes_its_rows(tmp_path):
    runs = tmp_path / "outputs" / "reasoning" / "runs" / "r1"  # a finished job's record, as run.py writes it
    runs.mkdir(parents=True)
    (runs / "results.json").write_text(json.dumps({
        "run": {"overrides": ["experiment=reasoning", "trainer.enable_progress_bar=false"], "cache": "cold"},
        "timing": {"process_s": 1500.0, "peak_rss_mb": 9000.0}}))
    proc = run_bench(*TINY_LM_BENCH, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    bench = json.loads((tmp_path / "outputs" / "bench" / "bench.json").read_text())
    assert bench["parts"] == ["language_model"] and "steps" not in bench
    lm = bench["language_model"]
    assert set(lm) >= {"bf16", "32", "reasoning_run"}
    for dtype in ("bf16", "32"):
        training = lm[dtype]["training"]
        assert set(training["steps"]) >= {"optical", "optical_cached"}
        # the cached teacher states give the live step's loss: the cache is exact up to the dtype's rounding
        cache = training["teacher_cache"]
        assert cache["loss_cached"] == pytest.approx(cache["loss_live"], rel=1e-2 if dtype == "bf16" else 1e-4)
        assert lm[dtype]["scoring"]["questions"] == 6 and lm[dtype]["scoring"]["ratio"] > 0
    assert lm["reasoning_run"]["wall_s"] == 1500.0
    targets = bench["targets"]
    assert targets["reasoning_run_wall_s"]["met"] is True and targets["reasoning_run_peak_rss_mb"]["met"] is True
    assert targets["lm_step_bf16_s"]["value"] > 0 and targets["optical_vs_mse_step"]["value"] is None
    table = (tmp_path / "outputs" / "bench" / "bench.md").read_text()
    assert "float32 weights (a CPU without bf16)" in table and "25.0 min" in table and "| `lm_load_s` |" in table


def test_bench_without_eval_data_fails_clearly(tmp_path):
    proc = run_bench(*TINY_BENCH, f"bench.eval_set={tmp_path / 'absent'}", cwd=tmp_path)
    assert proc.returncode == 2
    assert "make data" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "outputs" / "bench" / "bench.json").exists()


def test_default_run_records_are_read_by_cache_state(tmp_path):
    def write(name: str, default: bool, cache: str, wall: float) -> None:
        folder = tmp_path / "distill" / "runs" / name
        folder.mkdir(parents=True)
        (folder / "results.json").write_text(json.dumps({
            "run": {"default": default, "cache": cache, "overrides": [] if default else ["lang=so"]},
            "timing": {"process_s": wall, "total_s": wall - 5, "peak_rss_mb": 5000.0}}))

    write("a", True, "cold", 600)
    write("b", True, "warm", 400)
    write("c", False, "warm", 100)  # not the default run: ignored
    (tmp_path / "distill" / "runs" / "d").mkdir()
    (tmp_path / "distill" / "runs" / "d" / "results.json").write_text("{")  # partial: ignored
    runs = latest_default_runs(tmp_path)
    assert runs["cold"]["wall_s"] == 600 and runs["warm"]["wall_s"] == 400


def test_the_padded_maxsim_reference_gives_the_search_scores():
    import torch
    import torch.nn.functional as F

    from optical_lightning.evaluation.scoring import maxsim_search
    from optical_lightning_study.bench.search import padded_maxsim

    g = torch.Generator().manual_seed(0)
    qs = [F.normalize(torch.randn(n, 16, generator=g), dim=-1) for n in (2, 9, 4, 1)]
    ds = [F.normalize(torch.randn(n, 16, generator=g), dim=-1) for n in (30, 3, 12, 7, 1, 20)]
    run = maxsim_search(qs, ds, list("abcd"), [str(j) for j in range(6)], k=6, block_tokens=32)
    reference = padded_maxsim(qs, ds, query_batch=3, doc_batch=4)
    for i, qid in enumerate("abcd"):
        assert [run[qid][str(j)] for j in range(6)] == pytest.approx(reference[i].tolist(), abs=1e-5)
