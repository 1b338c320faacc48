"""Sweeps as a user runs them: Hydra multiruns over languages and domain ratios with the real CLI,
the sweep summary (CSV, markdown, plots), experiment presets, and W&B offline logging."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import FIXTURES, ROOT, SO_BITEXT, SW_BITEXT, TINY, TINY_MODELS, cli_env, compose_config, run_cli

EVAL = (f"retrieval.data_dir={FIXTURES / 'eval'}", "retrieval.sets=[tico19-test,afriqa]")


def split_fixtures(tmp_path: Path) -> tuple[str, str]:
    """Per-language general (first 140 rows) and medical (last 60 rows) files from the real fixtures."""
    for lang, path in (("sw", SW_BITEXT), ("so", SO_BITEXT)):
        lines = path.read_text().splitlines()
        (tmp_path / f"general-{lang}.tsv").write_text("\n".join(lines[:141]) + "\n")
        (tmp_path / f"medical-{lang}.tsv").write_text("\n".join([lines[0], *lines[141:]]) + "\n")
    return (f"domain.general=[{tmp_path}/general-${{lang.code}}.tsv]",
            f"domain.files=[{tmp_path}/medical-${{lang.code}}.tsv]")


def summarize(sweep: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "experiments" / "summarize.py"), str(sweep)],
                          capture_output=True, text=True, env=cli_env(), timeout=120)


def test_language_by_ratio_sweep_and_its_summary(tmp_path):
    proc = run_cli(*TINY_MODELS, *EVAL, *split_fixtures(tmp_path), "experiment=smoke", "lang=sw,so", "domain=medical",
                   "domain.ratio=0,0.5,1.0", "domain.val_size=8", "data.val_size=16", cwd=tmp_path, multirun=True,
                   timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    sweeps = list(tmp_path.glob("outputs/smoke/multirun/*"))
    assert len(sweeps) == 1
    results = [json.loads(p.read_text()) for p in sweeps[0].glob("*/results.json")]
    assert len(results) == 6
    seen = sorted((r["config"]["lang"]["code"], r["data"]["domain"]["ratio"]) for r in results)
    assert seen == [("so", 0.0), ("so", 0.5), ("so", 1.0), ("sw", 0.0), ("sw", 0.5), ("sw", 1.0)]
    for r in results:
        assert r["data"]["domain"]["train_pairs"] == 52 and "val_domain/loss" in r["training"]
        assert "bitext-val" in r["metrics"] and f"tico19-test-{r['config']['lang']['code']}-en" in r["metrics"]

    (sweeps[0] / "99" / ".hydra").mkdir(parents=True)  # a job that died before writing results
    out = summarize(sweeps[0])
    assert out.returncode == 0, out.stderr
    rows = list(csv.DictReader((sweeps[0] / "summary.csv").open()))
    assert len(rows) == 7 and [r["status"] for r in rows].count("incomplete") == 1
    assert {(r["lang.code"], float(r["domain.ratio"])) for r in rows if r["status"] == "complete"} == \
        {(lang, ratio) for lang in ("sw", "so") for ratio in (0.0, 0.5, 1.0)}
    md = (sweeps[0] / "summary.md").read_text()
    assert "tico19-test P@1 (in-domain)" in md and "afriqa nDCG@10 (general)" in md and "incomplete" in md
    for png in ("ratio.png", "tradeoff.png"):
        assert (sweeps[0] / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_summarize_names_a_missing_folder(tmp_path):
    out = summarize(tmp_path / "nothing-here")
    assert out.returncode == 2 and out.stderr.startswith("error: sweep folder not found")


@pytest.mark.slow  # ~27 s: the schedule itself is tested in test_mixing.py; this is the CLI path (make test-full)
def test_sequential_schedule_runs_from_the_cli(tmp_path):
    proc = run_cli(*TINY_MODELS, "retrieval.sets=[]", *split_fixtures(tmp_path), "experiment=smoke", "domain=medical",
                   "domain.schedule=sequential", "domain.ratio=0.25", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (result,) = [json.loads(p.read_text()) for p in tmp_path.glob("outputs/smoke/runs/*/results.json")]
    assert result["data"]["domain"]["schedule"] == "sequential"


@pytest.mark.parametrize("preset,params", [
    ("domain_ratio", {"lang": "sw,so", "domain.ratio": "0,0.1,0.25,0.5,1.0", "domain.schedule": "mixed,sequential"}),
    ("ot_ablation", {"ot.blur": "0.05,0.1,0.2", "ot.reach": "null,0.5", "ot.marginals": "uniform,idf",
                     "ot.special_tokens": "false,true"}),
])
def test_sweep_presets_compose(preset, params, tmp_path):
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=[f"experiment={preset}"], return_hydra_config=True)
    assert dict(cfg.hydra.sweeper.params) == params
    assert cfg.task_name == preset


def test_domain_configs_point_at_make_data_files(tmp_path):
    cfg = compose_config("domain=medical", "lang=so", output_dir=tmp_path)
    assert [Path(f) for f in cfg.data.domain_files] == [Path(cfg.paths.data_dir) / "bitext/so/medical.tsv"]
    assert cfg.data.domain_ratio == 0.25 and cfg.domain.in_domain_eval == ["tico19-test"]
    cfg = compose_config("domain=software", output_dir=tmp_path)
    assert cfg.data.domain_sources == ["kolibri", "django", "mediawiki", "wordpress"]


def test_missing_domain_file_names_the_fix(tmp_path):
    proc = run_cli(*TINY_MODELS, "eval=none", f"data.train={SW_BITEXT}", "domain=medical",
                   f"domain.files=[{tmp_path}/absent.tsv]", "trainer.max_steps=2", cwd=tmp_path)
    assert proc.returncode == 2
    assert "error: bitext file not found:" in proc.stderr and "make data" in proc.stderr


@pytest.mark.slow  # ~38 s: two Optuna trials of real runs (make test-full)
def test_optuna_preset_tunes_on_the_validation_bitext(tmp_path):
    proc = run_cli(*TINY_MODELS, *EVAL, f"data.train={SW_BITEXT}", "hparams_search=optuna_ot", "experiment=smoke",
                   "hydra.sweeper.n_trials=2", "hydra.sweeper.sampler.n_startup_trials=2", cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (best,) = list(tmp_path.glob("outputs/smoke/multirun/*/optimization_results.yaml"))
    text = best.read_text()
    assert "best_params" in text and "ot.blur" in text and "best_value" in text
    assert len(list(best.parent.glob("*/results.json"))) == 2


def wandb_runs(run_dir: Path) -> list[tuple[Path, bytes]]:
    """Offline W&B runs under a run folder and their record logs (``run-<id>.wandb``: protobuf
    records in a LevelDB-style log, whose strings - keys, names, groups - are stored verbatim)."""
    return [(d, next(d.glob("run-*.wandb")).read_bytes()) for d in sorted((run_dir / "wandb").glob("offline-run-*"))]


def test_wandb_offline_run_holds_the_logged_keys(tmp_path):
    proc = run_cli(*TINY_MODELS, *EVAL, f"data.train={SW_BITEXT}", "logger=wandb", "callbacks=default",
                   "trainer.max_steps=3", "callbacks.model_checkpoint.every_n_train_steps=3", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = next(tmp_path.glob("outputs/distill/runs/*"))
    ((offline, log),) = wandb_runs(run)
    for key in (b"afriqa-sw-en/trained/nDCG@10", b"train/loss", b"val/loss", b"timing/total_s", b"ot_plan",
                b"results", b"per_query", b"distill", b"blur"):
        assert key in log, key
    media = offline / "files" / "media"
    assert len(list(media.glob("images/ot_plan_*.png"))) == 1
    tables = {p.name.split("_")[0] for p in media.glob("table/*.table.json")}
    assert tables == {"results", "per"}  # results_*.table.json and per_query_*.table.json
    results_table = json.loads(next(media.glob("table/results_*.table.json")).read_text())
    assert results_table["columns"] == ["eval set", "metric", "zero_shot", "trained", "teacher_en"]
    assert (run / "plots" / "ot_plan.png").read_bytes()[:4] == b"\x89PNG"  # the same picture without W&B


@pytest.mark.slow  # ~35 s: a two-job W&B multirun (make test-full); one W&B run stays in the default suite
def test_wandb_jobs_of_a_multirun_share_a_group_and_are_named_by_their_overrides(tmp_path):
    proc = run_cli(*TINY, f"data.train={SW_BITEXT}", "logger=wandb", "trainer.max_steps=2", "seed=1,2",
                   cwd=tmp_path, multirun=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (sweep,) = list(tmp_path.glob("outputs/distill/multirun/*"))
    logs = {job.name: log for job in sorted(sweep.iterdir()) if job.is_dir() for _, log in wandb_runs(job)}
    assert sorted(logs) == ["0", "1"]  # one W&B run per job: wandb.finish() between them
    group = f"distill/{sweep.name}".encode()
    assert all(group in log for log in logs.values())
    assert b"seed=1" in logs["0"] and b"seed=2" in logs["1"]


def test_a_bad_job_fails_alone_and_the_summary_names_it_and_the_jobs_never_started(tmp_path):
    proc = run_cli(*TINY, f"data.train={SW_BITEXT}", "data.val_size=8", "data.batch_size=8", "trainer.max_steps=2",
                   "distill.nce_weight=1,-1,0.5", cwd=tmp_path, multirun=True)
    (sweep,) = tmp_path.glob("outputs/distill/multirun/*")
    assert proc.returncode == 2, proc.stderr[-3000:]
    message = json.loads((sweep / "1" / "error.json").read_text())["error"]
    assert message.startswith("distill.nce_weight=-1: a loss weight must be")
    assert f"error: job 1: {message}" in proc.stderr.splitlines()  # said when it failed, and again at the end
    assert f"  job 1 (distill.nce_weight=-1): {message}" in proc.stderr.splitlines()
    assert [(sweep / job / "results.json").is_file() for job in "012"] == [True, False, True]  # job 2 still ran

    shutil.rmtree(sweep / "2")  # as if the sweep had stopped before its last job
    out = summarize(sweep)
    assert out.returncode == 0, out.stderr
    rows = {r["job"]: r for r in csv.DictReader((sweep / "summary.csv").open())}
    assert rows["0"]["status"] == "complete" and (rows["1"]["status"], rows["1"]["error"]) == ("failed", message)
    assert rows["2"]["status"] == "not started" and rows["2"]["overrides"] == "distill.nce_weight=0.5"
    assert f"failed: {message}" in out.stdout and "not started (distill.nce_weight=0.5)" in out.stdout
