"""Scaling out with the real engines on CPU: DDP (2 gloo processes) inside Hydra multiruns, the
submitit launchers, and exact resume after SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import FIXTURES, ROOT, SW_BITEXT, TINY_MODELS, cli_env, run_cli

EVAL = (f"retrieval.data_dir={FIXTURES / 'eval'}", "retrieval.sets=[tico19-test,afriqa]")
NO_DROPOUT = ("student.dropout=0", "teacher.dropout=0")  # so one big batch and two half batches agree


def results_under(root: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(root.glob("outputs/**/results.json"))]


@pytest.mark.slow  # 1-2 min on 2 cores: `make test-full` (the default suite stays under 15 min)
def test_ddp_multirun_runs_each_job_once_with_two_processes(tmp_path):
    proc = run_cli(*TINY_MODELS, *EVAL, f"data.train={SW_BITEXT}", "trainer=ddp_sim",
                   "experiment=smoke", "seed=1,2", cwd=tmp_path, multirun=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = results_under(tmp_path)
    assert len(results) == 2  # not 2 x 2: the second process re-ran its job, not the sweep
    assert sorted(r["config"]["seed"] for r in results) == [1, 2]
    (sweep,) = list(tmp_path.glob("outputs/smoke/multirun/*"))
    for job in ("0", "1"):
        assert json.loads((sweep / job / "results.json").read_text())["distributed"]["world_size"] == 2
        assert (sweep / job / "train_ddp_process_1.log").is_file()  # rank 1 existed
        assert len(list((sweep / job).glob("csv/metrics.csv"))) == 1  # and logged nothing of its own
        assert "tico19-test-sw-en" in json.loads((sweep / job / "results.json").read_text())["metrics"]
    assert not list(tmp_path.glob("outputs/smoke/runs/*"))  # no stray single runs


def test_ddp_matches_one_process_with_the_same_global_batch(tmp_path):
    common = (*TINY_MODELS, *EVAL, *NO_DROPOUT, f"data.train={SW_BITEXT}", "data.val_size=32", "trainer.max_steps=6",
              "callbacks=none")
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    one = run_cli(*common, "data.batch_size=8", "trainer=cpu", "trainer.precision=32-true", cwd=tmp_path / "one")
    two = run_cli(*common, "data.batch_size=4", "trainer=ddp_sim", cwd=tmp_path / "two")
    assert one.returncode == 0, one.stderr[-3000:]
    assert two.returncode == 0, two.stderr[-3000:]
    (r1,), (r2,) = results_under(tmp_path / "one"), results_under(tmp_path / "two")
    assert r2["distributed"]["world_size"] == 2 and r1["distributed"]["world_size"] == 1
    assert r1["training"]["val/loss"] == pytest.approx(r2["training"]["val/loss"], abs=1e-4)
    for key, value in r1["flat"].items():
        if "/trained/" in key:  # evaluation after training, gathered across the two ranks
            assert r2["flat"][key] == pytest.approx(value, abs=1e-3), key


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 240) -> None:
    start = time.time()
    while not path.exists():
        assert proc.poll() is None, proc.stderr.read()[-3000:] if proc.stderr else ""
        assert time.time() - start < timeout, f"{path} never appeared"
        time.sleep(0.2)


@pytest.mark.slow  # 1-2 min on 2 cores: `make test-full` (the default suite stays under 15 min)
def test_a_run_killed_by_sigterm_resumes_to_the_same_result(tmp_path):
    common = [*TINY_MODELS, *EVAL, f"data.train={SW_BITEXT}", "data.val_size=32", "callbacks=default",
              "callbacks.plan_figure=null",
              "data.batch_size=4", "trainer.max_steps=300", "callbacks.model_checkpoint.every_n_train_steps=10",
              "trainer.precision=32-true", "retrieval.precision=32"]
    (tmp_path / "ref").mkdir()
    reference = run_cli(*common, cwd=tmp_path / "ref")
    assert reference.returncode == 0, reference.stderr[-3000:]
    (expected,) = results_under(tmp_path / "ref")

    (tmp_path / "killed").mkdir()
    run_dir = tmp_path / "killed" / "run"
    cmd = [sys.executable, str(ROOT / "run.py"), *common, f"paths.root_dir={tmp_path / 'killed'}",
           f"hydra.run.dir={run_dir}"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    wait_for(run_dir / "checkpoints" / "last.ckpt", proc)  # step 10 is saved: we are mid-training
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) != 0
    assert not (run_dir / "results.json").exists()  # an interrupted run never looks complete

    resumed = subprocess.run(cmd, cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from" in (run_dir / "run.log").read_text()
    got = json.loads((run_dir / "results.json").read_text())
    assert got["training"]["val/loss"] == pytest.approx(expected["training"]["val/loss"], abs=1e-4)
    for key, value in expected["flat"].items():
        assert got["flat"][key] == pytest.approx(value, abs=1e-4), key


@pytest.mark.slow  # 65-80 s on 2 cores: submitit starts a process per job (make test-full)
def test_submitit_local_launcher_runs_the_sweep(tmp_path):
    proc = run_cli(*TINY_MODELS, "retrieval.sets=[]", f"data.train={SW_BITEXT}", "trainer.max_steps=2",
                   "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10", "seed=1,2",
                   cwd=tmp_path, multirun=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(r["config"]["seed"] for r in results_under(tmp_path)) == [1, 2]
    assert list(tmp_path.glob("outputs/distill/multirun/*/.submitit/*/*_log.out"))


def fake_slurm(bin_dir: Path, capture: Path) -> None:
    """`sbatch` that keeps the script submitit wrote and `sacct`/`scancel` that report a failure, so
    the launcher stops right after submitting (no cluster here)."""
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text(f'#!/bin/sh\ncp "$1" {capture}\necho "Submitted batch job 4242"\n')
    (bin_dir / "sacct").write_text('#!/bin/sh\necho "4242_0|FAILED|"\necho "4242_1|FAILED|"\n')
    for tool in ("scancel", "srun"):  # submitit checks that srun exists
        (bin_dir / tool).write_text("#!/bin/sh\nexit 0\n")
    for tool in ("sbatch", "sacct", "scancel", "srun"):
        (bin_dir / tool).chmod(0o755)


def test_slurm_preset_generates_an_sbatch_script_with_resources_and_requeue_signal(tmp_path):
    script = tmp_path / "captured.sbatch"
    fake_slurm(tmp_path / "bin", script)
    env = cli_env(PATH=f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    subprocess.run([sys.executable, str(ROOT / "run.py"), "-m", "hydra/launcher=slurm", "trainer=ddp",
                    "trainer.devices=4", "lang=sw,so", "domain=medical", "hydra.launcher.partition=gpu",
                    "hydra.launcher.account=proj42", "hydra.launcher.qos=high", "hydra.launcher.timeout_min=300",
                    f"paths.root_dir={tmp_path}"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    text = script.read_text()
    for line in ("#SBATCH --partition=gpu", "#SBATCH --account=proj42", "#SBATCH --qos=high",
                 "#SBATCH --gpus-per-node=4", "#SBATCH --ntasks-per-node=4", "#SBATCH --cpus-per-task=8",
                 "#SBATCH --mem=64GB", "#SBATCH --time=300", "#SBATCH --nodes=1", "#SBATCH --array=0-1%2",
                 "#SBATCH --signal=USR1@120"):
        assert line in text, f"{line} missing from:\n{text}"
    assert "export TOKENIZERS_PARALLELISM=false" in text
