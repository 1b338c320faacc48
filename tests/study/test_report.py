"""The study report: statistics against closed forms, and REPORT.md rendered from job folders in the
format run.py writes (a real end-to-end pass is `make report-smoke`)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT

from optical_lightning_study.significance import mean_ci, paired_test


def test_bootstrap_interval_matches_the_normal_approximation():
    x = np.random.default_rng(0).normal(0.5, 0.2, 400)
    mean, low, high = mean_ci(x)
    half = 1.96 * x.std(ddof=1) / math.sqrt(len(x))
    assert mean == pytest.approx(x.mean())
    assert low == pytest.approx(mean - half, abs=0.004) and high == pytest.approx(mean + half, abs=0.004)
    assert mean_ci([0.3, 0.3, 0.3]) == (0.3, 0.3, 0.3)


def test_paired_test_separates_a_real_gain_from_noise():
    rng = np.random.default_rng(1)
    base = rng.uniform(0, 1, 300)
    better = paired_test(base + 0.05 + rng.normal(0, 0.02, 300), base)
    same = paired_test(base + rng.normal(0, 0.02, 300), base)
    assert better["p"] < 0.001 and better["low"] > 0.04 and better["diff"] == pytest.approx(0.05, abs=0.005)
    assert same["p"] > 0.05 and same["low"] < 0 < same["high"]
    assert paired_test([1.0, 0.0], [1.0, 0.0])["p"] == 1.0
    with pytest.raises(ValueError):
        paired_test([1.0], [1.0, 0.0])


SUBJECTS = ("anatomy", "law")


def _job(root: Path, part: str, name: str, *, lang: str = "sw", distill: str = "optical", seed: int = 1,
         quality: float = 0.5, stages: tuple[str, ...] = (), **cfg) -> None:
    """A job folder in the format run.py writes: results.json, per_query.json and (sw) mcqa.json."""
    folder = root / part / name
    folder.mkdir(parents=True)
    stage = "zero_shot" if distill == "none" else "trained"
    rng = np.random.default_rng(seed)
    per_query, mcqa_stages = {}, {}
    for st in (stage, *stages):
        for s, metric in (("afriqa", "nDCG@10"), ("tico19-test", "P@1"), ("afriqa-passages-dev", "nDCG@10")):
            values = {f"q{i}": float(rng.uniform() < cfg.get(s, quality)) for i in range(60)}
            per_query[f"{s}-{lang}-en/{st}"] = {q: {metric: v, "RR@10": v, "R@100": v} for q, v in values.items()}
        if cfg.get("domain"):
            per_query[f"domain-val/{st}"] = {f"d{i}": {"P@1": float(rng.uniform() < quality)} for i in range(30)}
        right = rng.uniform(size=40) < quality
        mcqa_stages[st] = {f"afrimmlu-{lang}": {"predicted": [0 if r else 1 for r in right]}}
    config = {"lang": {"code": lang}, "distill": {"name": distill}, "ot": {"loss": "transport"}, "seed": seed,
              "data": {"max_pairs": cfg.get("max_pairs")}, "trainer": {"max_steps": cfg.get("steps", 100)},
              "domain": {"name": cfg.get("domain", "general"), "ratio": cfg.get("ratio", 0.0),
                         "schedule": cfg.get("schedule", "mixed")}}
    (folder / "results.json").write_text(json.dumps({"config": config, "metrics": {}, "timing": {"total_s": 60, "process_s": 600},
                                                     "data": {"train_pairs": 3000}, "run": {"overrides": [name]}}))
    (folder / "per_query.json").write_text(json.dumps(per_query))
    if lang == "sw":  # 40 questions whose answer is always A; the teacher answers A on the first 30
        (folder / "mcqa.json").write_text(json.dumps({
            "name": "afrimmlu-sw", "ids": [f"m{i}" for i in range(40)], "subjects": [SUBJECTS[i % 2] for i in range(40)],
            "answers": [0] * 40, "teacher_en_predicted": [0] * 30 + [1] * 10, "stages": mcqa_stages}))


def test_report_renders_every_part_and_lists_missing_ones(tmp_path):
    root = tmp_path / "report"
    _job(root, "zero_shot", "distill=none,lang=sw", distill="none", quality=0.3, stages=("teacher_en", "translate_dense"))
    _job(root, "zero_shot", "distill=none,lang=so", lang="so", distill="none", quality=0.3)
    for seed in (1, 2, 3):
        _job(root, "main", f"distill=mse,seed={seed}", distill="mse", seed=seed, quality=0.4)
        _job(root, "main", f"distill=optical,seed={seed}", seed=seed + 10, quality=0.8)
    for ratio, quality in ((0.0, 0.5), (0.5, 0.9)):
        _job(root, "domain", f"domain=questions,domain.ratio={ratio}", domain="questions", ratio=ratio, quality=quality)
        _job(root, "domain", f"domain=software,domain.ratio={ratio}", domain="software", ratio=ratio, quality=0.5)
    (root / "domain" / "domain=medical,domain.ratio=1.0").mkdir(parents=True)  # started, never finished
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, str(ROOT / "experiments" / "report.py"), str(root), "--out", str(out),
                           "--require-all"], capture_output=True, text=True)
    assert proc.returncode == 1, proc.stderr  # data, data_epochs and ablation have no complete job
    assert "parts without results: data, data_epochs, ablation" in proc.stdout
    report = (out / "REPORT.md").read_text()
    assert "{{" not in report
    assert "| OPTICAL | 3 |" in report and "| zero-shot | 1 |" in report and "| translate-test → teacher | – |" in report
    assert "**so, retrieval**" in report and "**so, AfriMMLU" not in report  # no Somali MMLU-style set
    tests = json.loads((out / "paired_tests.json").read_text())
    vs_mse = next(t for t in tests if (t["lang"], t["a"], t["b"], t["metric"]) == ("sw", "OPTICAL", "MSE", "AfriQA nDCG@10"))
    assert vs_mse["diff"] > 0.2 and vs_mse["p"] < 0.01  # 0.8 vs 0.4 success rates over 60 queries, 3 seeds
    assert "anatomy (n=20)" in report and "law (n=20)" in report  # per subject
    assert (out / "domain_ratio.png").is_file() and "![domain ratio](domain_ratio.png)" in report
    assert "Change against the same domain at ratio 0" in report
    assert "domain=medical,domain.ratio=1.0" in report  # the incomplete job is listed, not dropped
    assert "_Not available yet: no complete job under `report/ablation`" in report
    assert "| zero_shot | 2 | – | 2.0 |" in report  # compute per part from each job's own timing


def test_mcqa_records_give_per_question_accuracy_and_agreement(tmp_path):
    from optical_lightning_study.report import load_part

    _job(tmp_path, "main", "x", quality=1.0)  # always answers A: every answer right, agrees on 30 of 40
    (job,), _ = load_part(tmp_path, "main")
    assert np.mean(list(job.values("afrimmlu", "accuracy").values())) == 1.0
    assert np.mean(list(job.values("afrimmlu", "agreement").values())) == 0.75
    assert len(job.values("afrimmlu", "agreement", subject="law")) == 20
    assert job.values("afrimmlu-same", "accuracy") == {}  # a mode the job did not run


def test_best_domain_is_chosen_on_dev_only(tmp_path):
    root = tmp_path / "report"
    _job(root, "domain", "a", domain="medical", ratio=0.5, **{"afriqa-passages-dev": 0.2, "afriqa": 0.99})
    _job(root, "domain", "b", domain="questions", ratio=0.25, **{"afriqa-passages-dev": 0.9, "afriqa": 0.01})
    _job(root, "domain", "c", domain="software", ratio=0.0, **{"afriqa-passages-dev": 1.0})  # ratio 0: no domain
    proc = subprocess.run([sys.executable, str(ROOT / "experiments" / "report.py"), str(root), "--best-domain"],
                          capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.strip() == "domain=questions domain.ratio=0.25"
    empty = subprocess.run([sys.executable, str(ROOT / "experiments" / "report.py"), str(tmp_path), "--best-domain"],
                           capture_output=True, text=True)
    assert empty.returncode == 2 and empty.stderr.startswith("error: ") and "run the domain part first" in empty.stderr


def test_report_preset_is_the_default_recipe_on_the_same_queries(tmp_path):
    from conftest import compose_config

    cfg = compose_config("experiment=report", "seed=3", output_dir=tmp_path)
    default = compose_config(output_dir=tmp_path)
    assert cfg.retrieval.seed == 0 and cfg.retrieval.max_queries == 500  # not the run seed: every job, same queries
    assert cfg.data.teacher_cache and not cfg.save_student and not cfg.keep_checkpoints
    # fp32 on every machine: trainer=cpu would pick bf16 where the CPU has it, and a study resumed on
    # another machine would then refuse (or mix) its earlier jobs
    assert cfg.trainer.precision == "32-true" and str(cfg.retrieval.precision) == "32"
    for key in ("trainer.max_steps", "optim", "distill", "ot", "student", "data.bucket_batches", "data.batch_size"):
        node_a, node_b = cfg, default
        for k in key.split("."):
            node_a, node_b = node_a[k], node_b[k]
        assert node_a == node_b, key  # the study runs `make run`'s recipe


def test_only_the_small_records_of_a_job_are_kept_in_git():
    job = "experiments/report/main/distill=mse,lang=sw,seed=1"
    kept = ("results.json", "per_query.json", "mcqa.json", "config.yaml")
    dropped = ("checkpoints/last.ckpt", "run.log", ".hydra/config.yaml", "csv/metrics.csv", "student/model.safetensors")
    proc = subprocess.run(["git", "check-ignore", "--no-index", *(f"{job}/{f}" for f in kept + dropped)],
                          cwd=ROOT, capture_output=True, text=True)
    assert sorted(proc.stdout.split()) == sorted(f"{job}/{f}" for f in dropped)


@pytest.mark.slow
def test_make_report_smoke(tmp_path):
    """The study's own commands on a small slice, end to end (needs `make data`)."""
    if not (ROOT / "data" / "manifest.json").is_file():
        pytest.skip("needs `make data`")
    proc = subprocess.run(["make", "report-smoke"], cwd=ROOT, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = (ROOT / "outputs" / "report-smoke" / "REPORT.md").read_text()
    assert "_Not available" not in report and "{{" not in report


def test_seeds_with_their_own_held_out_pairs_are_pooled_and_pair_up_by_seed(tmp_path):
    from optical_lightning_study.report import Row, compare, load_part

    for distill, quality in (("mse", 0.2), ("optical", 0.9)):
        for seed in (1, 2):
            _job(tmp_path, "main", f"distill={distill},seed={seed}", distill=distill, seed=seed, quality=quality)
            folder = tmp_path / "main" / f"distill={distill},seed={seed}"
            per_query = json.loads((folder / "per_query.json").read_text())
            # each seed holds out its own 30 pairs; the systems of one seed share them
            per_query["bitext-val/trained"] = {f"s{seed}p{i}": {"P@1": float(i < 30 * quality)} for i in range(30)}
            per_query["bitext-val/trained"]["shared"] = {"P@1": float(seed == 1)}  # both seeds drew it, by chance
            (folder / "per_query.json").write_text(json.dumps(per_query))
    jobs, _ = load_part(tmp_path, "main")
    rows = {d: Row(d, [j for j in jobs if j.cfg("distill.name") == d], "trained") for d in ("mse", "optical")}
    optical = rows["optical"].values("bitext-val", "P@1")
    assert len(optical) == 62 and set(optical) >= {"1/s1p0", "2/s2p29", "1/shared", "2/shared"}
    assert np.mean(list(optical.values())) == pytest.approx((2 * 27 + 1) / 62)  # never cut to the one shared pair
    vs_mse = compare(optical, rows["mse"].values("bitext-val", "P@1"))
    assert vs_mse["diff"] == pytest.approx((27 - 6) / 31)  # paired on all 62 (seed, pair) keys
    # queries the seeds share are still averaged per query
    assert len(rows["optical"].values("afriqa", "nDCG@10")) == 60


def test_maxsim_table_tests_whether_max_sim_gains_more_for_optical_than_for_mse(tmp_path):
    """Four cells (OPTICAL and MSE, pooled and max-sim) and the hypothesis row: the per-query gain of max-sim over
    pooled, OPTICAL's against MSE's. Here max-sim turns 20 of OPTICAL's 60 AfriQA misses into hits and none of MSE's."""
    from optical_lightning_study.report import load_part, maxsim_tables

    for distill in ("mse", "optical"):
        _job(tmp_path, "maxsim", f"distill={distill}", distill=distill)
        folder = tmp_path / "maxsim" / f"distill={distill}"
        per_query = json.loads((folder / "per_query.json").read_text())
        per_query["afriqa-sw-en/trained"] = {f"q{i}": {"nDCG@10": float(i < 30)} for i in range(60)}
        gained = 20 if distill == "optical" else 0
        per_query["afriqa-sw-en/maxsim/trained"] = {f"q{i}": {"nDCG@10": float(i < 30 + gained)} for i in range(60)}
        (folder / "per_query.json").write_text(json.dumps(per_query))
    jobs, _ = load_part(tmp_path, "maxsim")
    table = maxsim_tables(jobs, main=[])
    assert "| OPTICAL, maxsim | 1 | 0.833 [" in table and "| MSE, maxsim | 1 | 0.500 [" in table
    rows = {line.split(" | ")[0].lstrip("| "): line.split(" | ")[1:] for line in table.splitlines() if " − " in line}
    afriqa = 2  # passages dev, questions dev, then AfriQA
    assert rows["OPTICAL, maxsim − OPTICAL, pooled"][afriqa].startswith("+0.333 [")
    assert rows["MSE, maxsim − MSE, pooled"][afriqa].startswith("+0.000 [")
    hypothesis = rows["max-sim's gain: OPTICAL − MSE"][afriqa]
    assert hypothesis.startswith("+0.333 [") and hypothesis.endswith("p <0.001")
