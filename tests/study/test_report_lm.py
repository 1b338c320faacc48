"""The language model's parts of the study report: tables rendered from job folders in the format run.py writes
(a real tiny-model job below, the whole study end to end in `make report-smoke`)."""

from __future__ import annotations

import json
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT

SUBJECTS = ("geography", "law")
N = 60  # questions; the answer is always A


def _logliks(rng: np.random.Generator, quality: float, n: int) -> list[list[float]]:
    """Four letter log-likelihoods per question; A is the most likely with probability ``quality``."""
    rows = []
    for _ in range(n):
        row = list(rng.normal(-3.0, 0.3, 4))
        best = 0 if rng.uniform() < quality else 1 + int(rng.integers(3))
        row[best] = max(row) + 0.5
        rows.append([round(x, 6) for x in row])
    return rows


def _mcqa(rng: np.random.Generator, stages: dict[str, dict[str, float]], name: str, n: int = N) -> dict:
    """mcqa.json as LoglikMCQA writes it: stage -> result name -> predicted, loglik."""
    out = {}
    for stage, results in stages.items():
        out[stage] = {}
        for result, quality in results.items():
            loglik = _logliks(rng, quality, n)
            out[stage][result] = {"predicted": [int(np.argmax(r)) for r in loglik], "loglik": loglik}
    return {"name": name, "scoring": "loglik", "ids": [f"q{i}" for i in range(n)],
            "subjects": [SUBJECTS[i % 2] for i in range(n)], "answers": [0] * n,
            "teacher_en_predicted": [0] * (n - 10) + [1] * 10, "stages": out}


def _lm_job(root: Path, part: str, name: str, *, distill: str = "optical", seed: int = 1, sw: float = 0.4,
            en: float = 0.5, val: float | None = None, domain: str = "general", ratio: float = 0.0,
            schedule: str = "mixed", layer: int = 14, rank: int = 8) -> None:
    folder = root / part / name
    folder.mkdir(parents=True)
    rng = np.random.default_rng(zlib.crc32(f"{part}/{name}".encode()))
    trained = distill != "none"
    stage = "trained" if trained else "zero_shot"
    stages = ({"trained": {"afrimmlu-sw": sw, "afrimmlu-sw-en": en}} if trained else
              {"teacher_en": {"afrimmlu-sw": en}, "zero_shot": {"afrimmlu-sw": sw}, "translate_dense": {"afrimmlu-sw": 0.3}})
    (folder / "mcqa.json").write_text(json.dumps(_mcqa(rng, stages, "afrimmlu-sw")))
    val_stages = {k: {f"{n}-val" if n == "afrimmlu-sw" else "afrimmlu-sw-val-en": (val if val is not None else q)
                      for n, q in v.items()} for k, v in stages.items()}
    (folder / "mcqa-val.json").write_text(json.dumps(_mcqa(rng, val_stages, "afrimmlu-sw-val", 30)))
    per_query = {f"bitext-val/{stage}": {f"p{i}": {"P@1": float(rng.uniform() < sw)} for i in range(40)}}
    if domain != "general":
        per_query[f"domain-val/{stage}"] = {f"d{i}": {"P@1": float(rng.uniform() < 0.5)} for i in range(20)}
    per_query[f"tico19-test-sw-en/{stage}"] = {f"t{i}": {"P@1": float(rng.uniform() < 0.5)} for i in range(40)}
    config = {"lang": {"code": "sw"}, "distill": {"name": distill}, "ot": {"loss": "transport"}, "seed": seed,
              "domain": {"name": domain, "ratio": ratio, "schedule": schedule},
              "teacher": {"align_layer": layer}, "student": {"lora": {"r": rank}}}
    (folder / "results.json").write_text(json.dumps({"config": config, "metrics": {}, "run": {"overrides": name.split(",")},
                                                     "timing": {"total_s": 600, "eval_trained_s": 120}}))
    (folder / "per_query.json").write_text(json.dumps(per_query))


def _somali_job(root: Path) -> None:
    """A Somali job: hidden-state retrieval only, the student right on every held-out pair, the base model on half."""
    folder = root / "lm_somali" / "lang=so"
    folder.mkdir(parents=True)
    per_query = {f"{s}/{stage}": {f"{s}{i}": {"P@1": float(stage == "trained" or i % 2 == 0)} for i in range(40)}
                 for s in ("bitext-val", "tico19-test-so-en") for stage in ("zero_shot", "trained")}
    (folder / "per_query.json").write_text(json.dumps(per_query))
    config = {"lang": {"code": "so"}, "distill": {"name": "optical"}, "ot": {"loss": "transport"}, "seed": 1}
    (folder / "results.json").write_text(json.dumps({"config": config, "metrics": {}, "timing": {"total_s": 540}}))


def _study(root: Path) -> None:
    _lm_job(root, "lm_zero_shot", "distill=none", distill="none", sw=0.35, en=0.55)
    for seed in (1, 2, 3):
        _lm_job(root, "lm_main", f"distill=optical,seed={seed}", seed=seed, sw=0.75)
        _lm_job(root, "lm_main", f"distill=mse,seed={seed}", distill="mse", seed=seed, sw=0.35)
        _lm_job(root, "lm_main", f"distill=contrastive,seed={seed}", distill="contrastive", seed=seed, sw=0.35)
    for domain, val, sw in (("medical", 0.9, 0.2), ("questions", 0.2, 0.95)):  # dev and test disagree on purpose
        _lm_job(root, "lm_domain", f"domain.ratio=0.5,domain={domain}", domain=domain, ratio=0.5, val=val, sw=sw)
        _lm_job(root, "lm_domain", f"domain.ratio=1.0,domain={domain}", domain=domain, ratio=1.0, val=0.5, sw=sw)
    _lm_job(root, "lm_where", "teacher.align_layer=7", layer=7, sw=0.3)
    _somali_job(root)


def test_language_model_parts_render_with_paired_tests_against_the_base_model(tmp_path):
    root, out = tmp_path / "report", tmp_path / "out"
    _study(root)
    proc = subprocess.run([sys.executable, str(ROOT / "experiments" / "report.py"), str(root), "--out", str(out)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    report = (out / "REPORT.md").read_text()
    assert "{{" not in report
    assert "| OPTICAL | 3 |" in report and "| contrastive alone | 3 |" in report
    assert "| base model (zero-shot; English: the teacher) | – |" in report
    assert "translate-test (FreeDict word by word) → base model" in report
    assert "geography (n=30)" in report  # per subject
    tests = [t for t in json.loads((out / "paired_tests.json").read_text()) if t.get("part") == "lm_main"]
    vs_base = next(t for t in tests if t["a"] == "OPTICAL" and t["b"].startswith("base model")
                   and t["metric"] == "Swahili accuracy")
    assert vs_base["diff"] > 0.25 and vs_base["p"] < 0.001 and vs_base["n"] == N
    vs_mse = next(t for t in tests if (t["a"], t["b"], t["metric"]) == ("OPTICAL", "MSE", "right letter's probability"))
    assert vs_mse["diff"] > 0 and vs_mse["p"] < 0.01
    assert (out / "lm_domain_ratio.png").is_file()
    assert "Change against general bitext alone" in report
    change = report.split("Change against general bitext alone")[1].split("![")[0]
    assert change.count("| in-domain set P@1 |") == 1  # paired on the set the general job scores too
    medical = next(line for line in change.splitlines() if line.startswith("| medical | mixed | 0.5 |"))
    questions = next(line for line in change.splitlines() if line.startswith("| questions | mixed | 0.5 |"))
    assert medical.rstrip(" |").split("| ")[-1].startswith(("+", "-")) and questions.endswith("| – |")
    assert "- Swahili accuracy: the largest change is medical (mixed, " in report  # 0.2 against general's 0.75
    subjects = next(line for line in report.splitlines() if line.startswith("- per subject"))
    assert "16 paired tests of 2 subjects, 30 questions each" in subjects  # 4 settings x 2 metrics x 2 subjects
    assert "medical (mixed, 0.5) geography Swahili accuracy -0." in subjects  # it moves in both subjects
    assert "medical (mixed, 0.5) law Swahili accuracy -0." in subjects
    assert "teacher.align_layer=7" in report and "pooled alignment at layer 14 (contrastive alone)" in report
    assert "| Δ right letter's probability against default, dev (val) |" in report  # a setting is judged on dev
    somali = report.split("**Somali.**")[1]
    assert "| base model (zero-shot), seed 1 | 9.0 | 0.500 [" in somali and "| OPTICAL, seed 1 | – | 1.000 [" in somali
    assert "| OPTICAL − base model | – | +0.500 [" in somali  # paired over the same 40 queries
    assert "_Not available yet: no complete max-sim job" in report or "under `report/maxsim`" in report


def test_gold_probability_is_the_right_letters_share_of_the_four(tmp_path):
    from optical_lightning_study.report import load_part

    folder = tmp_path / "lm_main" / "x"
    folder.mkdir(parents=True)
    loglik = [[-1.0, -2.0, -3.0, -4.0], [-2.0, -1.0, -2.0, -2.0]]
    mcqa = {"name": "afrimmlu-sw", "ids": ["a", "b"], "subjects": ["law", "law"], "answers": [0, 0],
            "teacher_en_predicted": [0, 1], "stages": {"trained": {"afrimmlu-sw": {"predicted": [0, 1], "loglik": loglik}}}}
    (folder / "mcqa.json").write_text(json.dumps(mcqa))
    (folder / "results.json").write_text(json.dumps({"config": {"distill": {"name": "optical"}, "lang": {"code": "sw"}}}))
    (job,), _ = load_part(tmp_path, "lm_main")
    expected = [np.exp(-1) / np.exp([-1.0, -2, -3, -4]).sum(), np.exp(-2) / np.exp([-2.0, -1, -2, -2]).sum()]
    assert list(job.values("afrimmlu", "gold_prob").values()) == pytest.approx(expected)
    assert job.values("afrimmlu", "agreement") == {"a": 1.0, "b": 1.0}
    assert job.values("afrimmlu-val", "accuracy") == {}  # no dev record in this job


def test_the_domain_settings_that_get_more_seeds_are_chosen_on_dev_only(tmp_path):
    root = tmp_path / "report"
    _study(root)
    script = [sys.executable, str(ROOT / "experiments" / "report.py"), str(root), "--lm-dev-extremes"]
    proc = subprocess.run(script, capture_output=True, text=True)
    # medical 0.5 is best on val and worst on test; questions 0.5 the reverse
    assert proc.returncode == 0 and proc.stdout.strip() == "domain=medical domain.ratio=0.5;domain=questions domain.ratio=0.5"
    empty = subprocess.run(script[:2] + [str(tmp_path), "--lm-dev-extremes"], capture_output=True, text=True)
    assert empty.returncode == 2 and "run the lm_domain part first" in empty.stderr


def test_the_language_model_preset_is_the_reasoning_job_with_a_dev_evaluator(tmp_path):
    from conftest import compose_config

    cfg = compose_config("experiment=report_lm", output_dir=tmp_path)
    job = compose_config("experiment=reasoning", output_dir=tmp_path)
    for key in ("trainer.max_steps", "optim", "distill", "ot", "student", "data.batch_size", "teacher.align_layer"):
        node_a, node_b = cfg, job
        for k in key.split("."):
            node_a, node_b = node_a[k], node_b[k]
        assert node_a == node_b, key
    assert cfg.teacher.dtype == "bf16" and not cfg.save_student and not cfg.keep_checkpoints
    dev = cfg.eval.evaluators.mcqa_dev
    assert dev.split == "val" and dev.records_file == "mcqa-val.json" and cfg.mcqa.split == "test"


def test_a_language_model_study_job_writes_the_records_the_report_reads(tmp_path):
    """A real `make report` job of the language-model part, on the tiny LM and fixture data laid out as `make data`
    does: test and dev answers in their own files, skipped when complete, rendered into the main table."""
    import shutil

    from conftest import FIXTURES, SO_BITEXT, SW_BITEXT, run_cli

    data = tmp_path / "data"
    shutil.copytree(FIXTURES / "eval", data / "eval")
    (data / "bitext" / "sw").mkdir(parents=True)
    shutil.copy(SW_BITEXT, data / "bitext" / "sw" / "train.tsv")
    mcqa = data / "eval" / "mcqa" / "afrimmlu"
    mcqa.mkdir(parents=True)
    for lang in ("sw", "en"):  # the fixture's 10 test questions stand in for val too
        for split in ("test", "val"):
            shutil.copy(FIXTURES / "mcqa" / "afrimmlu" / f"{lang}.test.jsonl", mcqa / f"{lang}.{split}.jsonl")
    overrides = ("experiment=report_lm", "report.part=lm_main", "distill=optical", "teacher=tiny_lm", "student=tiny_lm",
                 "teacher.dtype=32", "data.batch_size=8", "data.val_size=16", "trainer.max_steps=2",
                 "retrieval.sets=[tico19-test]", "retrieval.max_queries=16", "eval.evaluators.mcqa_dev.max_questions=5")
    proc = run_cli(*overrides, cwd=tmp_path, multirun=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (job,) = [p.parent for p in (tmp_path / "experiments" / "report" / "lm_main").glob("*/results.json")]
    assert "distill=optical" in job.name.split(",")  # the job's overrides name its folder
    test, dev = (json.loads((job / f).read_text()) for f in ("mcqa.json", "mcqa-val.json"))
    assert test["name"] == "afrimmlu-sw" and set(test["stages"]["trained"]) == {"afrimmlu-sw", "afrimmlu-sw-en"}
    assert dev["name"] == "afrimmlu-sw-val" and dev["split"] == "val" and len(dev["ids"]) == 5
    assert set(dev["stages"]["trained"]) == {"afrimmlu-sw-val", "afrimmlu-sw-val-en"}
    assert "afrimmlu-sw-val" in json.loads((job / "results.json").read_text())["metrics"]
    again = run_cli(*overrides, cwd=tmp_path, multirun=True)  # complete: skipped, not rerun
    assert again.returncode == 0 and "complete" in again.stderr + again.stdout
    out = tmp_path / "out"
    render = subprocess.run([sys.executable, str(ROOT / "experiments" / "report.py"), str(tmp_path / "experiments" / "report"),
                             "--out", str(out)], capture_output=True, text=True)
    assert render.returncode == 0, render.stderr
    assert "| OPTICAL | 1 |" in (out / "REPORT.md").read_text()

    # Somali, as `make report` runs it: no MMLU-style set, so no multiple-choice evaluator; retrieval only
    (data / "bitext" / "so").mkdir(parents=True)
    shutil.copy(SO_BITEXT, data / "bitext" / "so" / "train.tsv")
    somali = [o for o in overrides if not o.startswith(("report.part", "eval.evaluators", "retrieval.sets"))]
    proc = run_cli(*somali, "report.part=lm_somali", "lang=so", "mcqa=none", "eval.evaluators.mcqa_dev=null",
                   "retrieval.sets=[tico19-test]", cwd=tmp_path, multirun=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (job,) = [p.parent for p in (tmp_path / "experiments" / "report" / "lm_somali").glob("*/results.json")]
    assert not (job / "mcqa.json").exists()
    render = subprocess.run([sys.executable, str(ROOT / "experiments" / "report.py"), str(tmp_path / "experiments" / "report"),
                             "--out", str(out)], capture_output=True, text=True)
    assert render.returncode == 0, render.stderr
    assert "| OPTICAL, seed 1 | – |" in (out / "REPORT.md").read_text().split("**Somali.**")[1]


def test_letter_counts_show_a_shift_of_the_letter_prior(tmp_path):
    folder = tmp_path / "job"
    folder.mkdir()
    mcqa = {"name": "afrimmlu-sw", "teacher_en_predicted": [1, 1, 2, 0],
            "stages": {"trained": {"afrimmlu-sw": {"predicted": [2, 2, 2, 0]}}}}
    (folder / "mcqa.json").write_text(json.dumps(mcqa))
    proc = subprocess.run([sys.executable, str(ROOT / "experiments" / "letter_counts.py"), str(folder)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "| job | trained | 1 | 0 | 3 | 0 | 0.500 |" in proc.stdout  # C three times; agrees on the 3rd and 4th
    assert "| base model, English questions | teacher_en | 1 | 2 | 1 | 0 | 1.000 |" in proc.stdout
