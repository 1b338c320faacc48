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

from optical_lightning.evaluation.significance import mean_ci, paired_test


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


def _job(root: Path, part: str, name: str, *, lang: str = "sw", distill: str = "optical", loss: str = "transport",
         teacher: str = "intfloat/multilingual-e5-small", seed: int = 1, quality: float = 0.5, **cfg) -> None:
    folder = root / part / name
    folder.mkdir(parents=True)
    stage = "zero_shot" if distill == "none" else "trained"
    rng = np.random.default_rng(seed)
    per_query = {}
    for s, metric in (("afriqa", "nDCG@10"), ("tico19-test", "P@1")):
        values = {f"q{i}": float(rng.uniform() < quality) for i in range(60)}
        per_query[f"{s}-{lang}-en/{stage}"] = {q: {metric: v, "RR@10": v, "R@100": v} for q, v in values.items()}
    config = {"lang": {"code": lang}, "distill": {"name": distill}, "ot": {"loss": loss, "blur": 0.1},
              "teacher": {"model_name_or_path": teacher}, "seed": seed, "data": {"max_pairs": cfg.get("max_pairs")},
              "domain": {"ratio": cfg.get("ratio", 0.0), "schedule": cfg.get("schedule", "mixed")}}
    (folder / "results.json").write_text(json.dumps({"config": config, "metrics": {}, "timing": {"total_s": 60},
                                                     "data": {"train_pairs": 3000}}))
    (folder / "per_query.json").write_text(json.dumps(per_query))


def test_report_renders_every_part_and_lists_missing_ones(tmp_path):
    root = tmp_path / "report"
    _job(root, "zero_shot", "distill=none", distill="none", quality=0.3)
    for seed in (1, 2, 3):
        _job(root, "main", f"distill=mse,seed={seed}", distill="mse", seed=seed, quality=0.4)
        _job(root, "main", f"distill=optical,seed={seed}", seed=seed + 10, quality=0.8)
    for pairs in (500, 1000, None):
        _job(root, "data", f"data.max_pairs={pairs}", max_pairs=pairs)
    (root / "domain" / "ratio=1.0").mkdir(parents=True)  # started, never finished
    data = tmp_path / "data" / "bitext" / "so"
    data.mkdir(parents=True)  # one real pair, then a target line that belongs to the next English line
    (data / "medical.tsv").write_text("id\ten\tso\n1\tIn 2020, 15 cases.\tSannadka 2020, 15 kiis.\n"
                                      "2\tOn 12 March.\tIn 1918 too.\n3\tIn 1918 too.\tSidoo kale 1918.\n")
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, str(ROOT / "experiments" / "report.py"), str(root), "--out", str(out),
                           "--require-all", "--data", str(tmp_path / "data")], capture_output=True, text=True)
    assert proc.returncode == 1, proc.stderr  # domain, ablation and mmlu have no complete job
    assert "domain, ablation, mmlu" in proc.stdout
    report = (out / "REPORT.md").read_text()
    assert "{{" not in report
    assert "| sw | (b) mE5 | optical (transport) | 3 |" in report and "| sw | (b) mE5 | zero-shot | 1 |" in report
    assert "AfriQA sw→en nDCG@10 ≥ 0.75 with OPTICAL" in report and "**reached**" in report
    assert "significantly ahead of MSE on AfriQA nDCG@10 (p < 0.05)" in report and "**yes**" in report
    tests = json.loads((out / "paired_tests.json").read_text())
    vs_mse = next(t for t in tests if t["a"] == "optical (transport)" and t["b"] == "mse" and t["set"] == "afriqa")
    assert vs_mse["diff"] > 0.2 and vs_mse["p"] < 0.01  # 0.8 vs 0.4 success rates over 60 queries, 3 seeds
    assert (out / "data_efficiency.png").is_file() and "![data](data_efficiency.png)" in report
    assert "ratio=1.0" in report  # the incomplete domain job is listed, not dropped
    assert "_Not available: no complete job under" in report
    assert "| `bitext/so/medical.tsv` | 3 | 3 | 0.67 | 0.33 | 0.00 |" in report


def test_report_preset_compares_jobs_on_the_same_queries(tmp_path):
    from conftest import compose_config

    cfg = compose_config("experiment=report", "seed=3", output_dir=tmp_path)
    assert cfg.eval.seed == 0 and cfg.eval.max_queries == 500  # not the run seed: every job, same queries
    assert cfg.data.teacher_cache and not cfg.save_student and cfg.trainer.max_steps == 30


@pytest.mark.slow
def test_make_report_smoke(tmp_path):
    """The study's own commands on a small slice, end to end (needs `make data`)."""
    if not (ROOT / "data" / "manifest.json").is_file():
        pytest.skip("needs `make data`")
    proc = subprocess.run(["make", "report-smoke"], cwd=ROOT, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = (ROOT / "outputs" / "report-smoke" / "REPORT.md").read_text()
    assert "_Not available" not in report and "{{" not in report
