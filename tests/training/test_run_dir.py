"""Reruns into an existing run directory, as a user makes them (tiny models): a complete run is never
silently redone, a resume continues the metrics log from the newest checkpoint, a changed or broken
rerun is refused in one line and changes nothing. The first run, a rerun of it and Ctrl-C are real
`python run.py` processes; the other reruns call the same pipeline in this process (a CLI start costs ~9 s)."""

from __future__ import annotations

import csv
import json
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, SW_BITEXT, TINY, cli_env, compose_config, run_cli

from optical_lightning.training.pipeline import run
from optical_lightning.training.rundir import differences
from optical_lightning.utils.errors import user_error

CHECKPOINTED = [a for a in TINY if a != "callbacks=none"] + [
    "callbacks.plan_figure=null", f"data.train={SW_BITEXT}", "data.val_size=32", "data.batch_size=4",
    "trainer.log_every_n_steps=1", "callbacks.model_checkpoint.every_n_train_steps=2",
    "callbacks.model_checkpoint.save_top_k=-1",  # keep step000002.ckpt, step000004.ckpt, ... to rewind to
]


def run_into(run_dir: Path, *overrides: str, cwd: Path) -> subprocess.CompletedProcess:
    return run_cli(*CHECKPOINTED, *overrides, f"hydra.run.dir={run_dir}", cwd=cwd)


def rerun_into(run_dir: Path, *overrides: str) -> dict:
    """The pipeline of `python run.py ... hydra.run.dir=run_dir`, in this process."""
    return run(compose_config(*CHECKPOINTED, *overrides, f"paths.root_dir={run_dir.parent}", output_dir=run_dir))


def refused(run_dir: Path, *overrides: str) -> str:
    """The one-line message a refused rerun gives (what run.py prints after ``error: ``)."""
    with pytest.raises(Exception) as info:
        rerun_into(run_dir, *overrides)
    error = user_error(info.value)
    assert error is not None and "\n" not in str(error), info.value
    return f"error: {error}"


def snapshot(run_dir: Path) -> dict[str, bytes]:
    """The bytes of everything a run writes (Hydra's own .hydra/ and run.log record every invocation, the
    lock file its holder)."""
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in sorted(run_dir.rglob("*"))
            if p.is_file() and ".hydra" not in p.parts and p.name not in ("run.log", ".run.lock")}


def metric_steps(run_dir: Path, key: str = "train/loss") -> list[int]:
    with (run_dir / "csv" / "metrics.csv").open(newline="") as f:
        return [int(float(r["step"])) for r in csv.DictReader(f) if r.get(key)]


@pytest.fixture(scope="module")
def complete_run(tmp_path_factory) -> Path:
    """One complete 6-step run with checkpoints at steps 2, 4 and 6; tests copy it."""
    root = tmp_path_factory.mktemp("complete")
    proc = run_into(root / "run", "trainer.max_steps=6", cwd=root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root / "run"


def copy_of(run_dir: Path, tmp_path: Path) -> Path:
    target = tmp_path / "run"
    shutil.copytree(run_dir, target)
    return target


def test_a_complete_run_is_not_redone(complete_run, tmp_path):
    run_dir = copy_of(complete_run, tmp_path)  # a copied run directory still matches its config
    before = snapshot(run_dir)
    proc = run_into(run_dir, "trainer.max_steps=6", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "already holds this complete run" in proc.stdout and "rerun=true" in proc.stdout
    assert snapshot(run_dir) == before  # results.json, metrics.csv, student/, config.yaml untouched


def test_a_complete_run_with_other_settings_is_refused_and_kept(complete_run, tmp_path):
    run_dir = copy_of(complete_run, tmp_path)
    before = snapshot(run_dir)
    line = refused(run_dir, "trainer.max_steps=8", "optim.optimizer.lr=1e-4", "retrieval.max_documents=500")
    assert "holds a complete run with other settings" in line
    assert "trainer.max_steps (6 -> 8)" in line and "optim.optimizer.lr" in line and "rerun=true" in line
    assert "retrieval.max_documents (None -> 500)" in line  # a capped collection is another task
    assert snapshot(run_dir) == before


def test_rerun_true_replaces_every_output(complete_run, tmp_path):
    run_dir = copy_of(complete_run, tmp_path)
    rerun_into(run_dir, "trainer.max_steps=4", "rerun=true")
    results = json.loads((run_dir / "results.json").read_text())
    assert results["config"]["trainer"]["max_steps"] == 4 and "resumed" not in results
    assert metric_steps(run_dir) == list(range(4))  # a new log, not the old one's rows
    assert not (run_dir / "checkpoints" / "step000006.ckpt").exists()  # the old resume state is gone


def rewind(run_dir: Path, step: int) -> None:
    """Make a complete run look like one killed right after the checkpoint of ``step``, in a copied folder:
    the stale last.ckpt of an earlier step and Lightning's versioned last-v1.ckpt of the newest one."""
    (run_dir / "results.json").unlink()
    shutil.rmtree(run_dir / "student")
    ckpts = run_dir / "checkpoints"
    for later in ckpts.glob("step*.ckpt"):
        if int(later.stem.removeprefix("step")) > step:
            later.unlink()
    shutil.copy(ckpts / "step000002.ckpt", ckpts / "last.ckpt")
    shutil.copy(ckpts / f"step{step:06d}.ckpt", ckpts / "last-v1.ckpt")


def test_resume_continues_the_log_from_the_newest_checkpoint(complete_run, tmp_path):
    run_dir = copy_of(complete_run, tmp_path)
    reference = json.loads((complete_run / "results.json").read_text())
    rewind(run_dir, 4)
    assert metric_steps(run_dir) == list(range(6))  # the killed attempt had logged past its checkpoint
    rerun_into(run_dir, "trainer.max_steps=6")
    results = json.loads((run_dir / "results.json").read_text())
    assert results["resumed"]["step"] == 4 and results["resumed"]["checkpoint"].endswith("last-v1.ckpt")
    assert metric_steps(run_dir) == list(range(6))  # steps 0-3 kept, 4-5 logged again: each step once
    assert results["training"]["val/loss"] == pytest.approx(reference["training"]["val/loss"], abs=1e-4)


def test_resume_with_changed_training_settings_is_refused_unless_allowed(complete_run, tmp_path):
    run_dir = copy_of(complete_run, tmp_path)
    rewind(run_dir, 4)
    before = snapshot(run_dir)
    line = refused(run_dir, "trainer.max_steps=6", "data.batch_size=8")
    assert "unfinished run (checkpoint at step 4)" in line and "data.batch_size (4 -> 8)" in line
    assert "allow_config_change=true" in line
    assert snapshot(run_dir) == before  # config.yaml, metrics.csv and the checkpoints as they were

    rerun_into(run_dir, "trainer.max_steps=8", "allow_config_change=true")
    results = json.loads((run_dir / "results.json").read_text())
    assert results["resumed"]["changed"] == {"trainer.max_steps": [6, 8]}
    assert results["config"]["trainer"]["max_steps"] == 8  # results.json and config.yaml agree
    assert "max_steps: 8" in (run_dir / "config.yaml").read_text()


def test_a_corrupt_checkpoint_is_named_and_nothing_changes(complete_run, tmp_path):
    run_dir = copy_of(complete_run, tmp_path)
    rewind(run_dir, 4)
    (run_dir / "checkpoints" / "last-v1.ckpt").write_bytes(b"not a checkpoint")
    before = snapshot(run_dir)
    line = refused(run_dir, "trainer.max_steps=6")
    assert f"checkpoint {run_dir / 'checkpoints' / 'last-v1.ckpt'} is corrupt" in line and "ckpt_path=null" in line
    assert "weights_only" not in line
    assert snapshot(run_dir) == before


def test_a_rerun_with_a_bad_setting_leaves_the_unfinished_run_alone(complete_run, tmp_path):
    run_dir = copy_of(complete_run, tmp_path)
    rewind(run_dir, 4)
    before = snapshot(run_dir)
    line = refused(run_dir, "trainer.max_steps=6", "optim.optimizer.lr=-1e-3", "allow_config_change=true")
    assert line == "error: optim.optimizer: Invalid learning rate: -0.001"
    assert snapshot(run_dir) == before


def test_ctrl_c_saves_says_how_to_resume_and_exits_130(tmp_path):
    run_dir = tmp_path / "run"
    cmd = [sys.executable, str(ROOT / "run.py"), *CHECKPOINTED, "trainer.max_steps=2000", f"paths.root_dir={tmp_path}",
           f"hydra.run.dir={run_dir}"]
    # a shell's background job (CI under nohup, `make test &`) ignores SIGINT, and Python keeps an inherited
    # SIG_IGN: give the run the disposition a terminal's Ctrl-C meets
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    start = time.time()
    while not (run_dir / "checkpoints" / "last.ckpt").exists():
        assert proc.poll() is None and time.time() - start < 240, proc.stderr.read()[-3000:] if proc.stderr else ""
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=120) == 130
    stderr = proc.stderr.read()
    assert "stopped by Ctrl-C (SIGINT)" in stderr and f"hydra.run.dir={run_dir} to resume" in stderr, stderr[-3000:]
    assert "Traceback" not in stderr
    assert not (run_dir / "results.json").exists()


def test_resume_with_a_replaced_training_file_is_refused_unless_allowed(tmp_path):
    train = tmp_path / "train.tsv"
    shutil.copy(SW_BITEXT, train)
    run_dir = tmp_path / "run"
    rerun_into(run_dir, "trainer.max_steps=4", f"data.train={train}")
    saved = json.loads((run_dir / "results.json").read_text())["config"]["data_files"]
    assert list(saved) == ["data.train[0]"] and saved["data.train[0]"].startswith(f"{train.stat().st_size} bytes")
    rewind(run_dir, 2)
    train.write_text("".join(train.read_text().splitlines(keepends=True)[:-20]))  # same path, other pairs
    before = snapshot(run_dir)
    line = refused(run_dir, "trainer.max_steps=4", f"data.train={train}")
    assert "unfinished run (checkpoint at step 2)" in line and "data_files.data.train[0]" in line, line
    assert snapshot(run_dir) == before

    rerun_into(run_dir, "trainer.max_steps=4", f"data.train={train}", "allow_config_change=true")
    results = json.loads((run_dir / "results.json").read_text())
    assert list(results["resumed"]["changed"]) == ["data_files.data.train[0]"]


HOLD_LOCK = """
import sys, time
from pathlib import Path
from optical_lightning.training.rundir import locked
with locked(Path(sys.argv[1])):
    print("locked", flush=True)
    time.sleep(120)
"""


def test_a_second_run_into_a_busy_folder_refuses_and_names_the_holder(tmp_path):
    run_dir = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(run_dir)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        proc = run_into(run_dir, "trainer.max_steps=2", cwd=tmp_path)
    finally:
        holder.kill()
        holder.wait()
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert proc.returncode == 2 and errors == [
        f"error: {run_dir} is in use by another run (process {holder.pid} on {socket.gethostname()}); wait for it "
        f"to end, or choose another hydra.run.dir"], proc.stderr[-3000:]
    assert not (run_dir / "config.yaml").exists() and not (run_dir / "results.json").exists()
    rerun_into(run_dir, "trainer.max_steps=2")  # the holder is gone, so is its lock
    assert (run_dir / "results.json").is_file()


def test_a_moved_target_is_no_difference_but_another_object_and_other_keys_are():
    old = {"optim": {"scheduler": {"_target_": "optical_lightning.optim.linear_warmup_decay", "warmup_ratio": 0.1}},
           "logger": {"_target_": "optical_lightning.tracking.ResumableCSVLogger"}}
    moved = {"optim": {"scheduler": {"_target_": "optical_lightning.training.optim.linear_warmup_decay",
                                     "warmup_ratio": 0.1}},
             "logger": {"_target_": "optical_lightning.reporting.tracking.ResumableCSVLogger"}}
    assert differences(old, moved, ignore=()) == {}
    other = {"optim": {"scheduler": {"_target_": "optical_lightning.training.optim.cosine", "warmup_ratio": 0.2}},
             "logger": {"_target_": "pytorch_lightning.loggers.ResumableCSVLogger"}}
    assert set(differences(old, other, ignore=())) == {"optim.scheduler._target_", "optim.scheduler.warmup_ratio",
                                                       "logger._target_"}


def test_a_record_from_before_the_spread_term_and_int8_scoring_still_matches_its_settings(tmp_path):
    """The committed language-model test run recorded no `distill.spread_weight`, `mcqa.quantize` or `ot.center`: with
    them at their defaults (off, none, off) today's settings are its settings; turned on, they are differences."""
    from omegaconf import OmegaConf

    from optical_lightning.training.rundir import BOOKKEEPING

    old = OmegaConf.to_container(OmegaConf.load(ROOT / "experiments/reasoning/default-test/config.yaml"))
    assert "spread_weight" not in old["distill"] and "quantize" not in old["mcqa"]

    def now(*overrides: str) -> dict:
        cfg = compose_config("experiment=reasoning", *overrides, output_dir=tmp_path)
        return OmegaConf.to_container(cfg, resolve=True)

    def learning(changed: dict) -> set[str]:  # what a run computes: the loss terms and the scoring
        return {k for k in changed if k.startswith(("distill.", "mcqa.", "eval.evaluators.mcqa."))}

    assert learning(differences(old, now(), ignore=BOOKKEEPING)) == set()
    changed = learning(differences(old, now("distill.spread_weight=1", "mcqa.quantize=int8", "ot.center=true"),
                                   ignore=BOOKKEEPING))
    assert {"distill.spread_weight", "mcqa.quantize", "distill.module.loss_terms.ot.head.center"} <= changed
    assert "ot.center" in differences(old, now("ot.center=true"), ignore=BOOKKEEPING)
