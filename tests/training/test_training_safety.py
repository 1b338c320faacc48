"""Training that diverges, hangs, or fails where one line was promised (tiny models, real bitext).

A new user's probe found runs that saved and scored a 100% NaN student (``lr=1e6``), steps that never
ended (``ot.refine_iters=1e9``), a SIGTERM ignored for minutes, ``num_nodes=4`` waiting forever on one
machine, an index list of ``max_steps x batch`` built before the first batch, and tracebacks or silent
waits where one ``error: ...`` line belongs. Each case below is the user's own, run through the real
pipeline in this process (a CLI start costs ~9 s) or, for signals, as a real ``python run.py`` process.
"""

from __future__ import annotations

import errno
import math
import os
import resource
import signal
import socket
import subprocess
import sys
import time
import tracemalloc
from collections import Counter
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from conftest import ROOT, SW_BITEXT, TINY, cli_env, compose_config, distillation_module

from optical_lightning.data import BitextDataModule
from optical_lightning.data.collate import PairCollator
from optical_lightning.data.mixing import MixtureSampler
from optical_lightning.losses.ot import OTDistillationHead
from optical_lightning.models.tiny import tiny_encoder
from optical_lightning.training.callbacks import AtomicCheckpointIO
from optical_lightning.training.pipeline import run
from optical_lightning.utils.errors import (
    CheckpointWriteError,
    ConfigError,
    OpticalError,
    TrainingDiverged,
    user_error,
)

EVAL = (f"retrieval.data_dir={SW_BITEXT.parent / 'eval'}", "retrieval.sets=[afriqa]")
# the probe's command: 3 steps of batch 8 on 200 pairs, a retrieval set before and after training
B = ("teacher=tiny", "student=tiny", "trainer.max_steps=3", f"data.train={SW_BITEXT}", "data.val_size=8",
     "data.batch_size=8", *EVAL, "mcqa=none", "logger=csv", "trainer.enable_progress_bar=false",
     "callbacks.plan_figure=null")
QUICK = (*TINY, f"data.train={SW_BITEXT}", "data.val_size=8", "data.batch_size=8", "trainer.max_steps=2")


def run_dir(tmp_path: Path) -> Path:
    return tmp_path / "outputs" / "run"


def refused(overrides: tuple[str, ...], tmp_path: Path) -> str:
    """The one line ``run.py`` prints for a run of ``overrides`` (and that no model was loaded for it)."""
    cfg = compose_config(*overrides, f"paths.root_dir={tmp_path}", output_dir=run_dir(tmp_path))
    with pytest.raises(Exception) as info:
        run(cfg)
    error = user_error(info.value)
    assert error is not None, info.value  # run.py would print a traceback
    assert "\n" not in str(error)
    return str(error)


def assert_nothing_kept(out: Path) -> None:
    """No results, no student, and no checkpoint of non-finite weights in the run directory."""
    assert not (out / "results.json").exists() and not (out / "student").exists()
    for ckpt in (out / "checkpoints").glob("*.ckpt"):
        state = torch.load(ckpt, weights_only=True, map_location="cpu")["state_dict"]
        assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point()), ckpt


def assert_untouched(out: Path) -> None:
    """Refused before the run began: nothing but the run lock in its directory."""
    left = sorted(p.name for p in out.iterdir()) if out.exists() else []
    assert left in ([], [".run.lock"]), left


# ---------------------------------------------------------------------------------------------- 1. divergence
def test_lr_1e6_is_refused_before_any_model_loads_and_nothing_is_written(tmp_path):
    # it used to train, exit 0 with train/loss nan, save a 100% NaN student and score it
    message = refused((*B, "optim.optimizer.lr=1e6"), tmp_path)
    assert message.startswith("optim.optimizer.lr=1e+06: above 1") and "did you mean 1e-06?" in message, message
    assert_untouched(run_dir(tmp_path))


@pytest.mark.parametrize(("override", "named"), [
    ("optim.optimizer.lr=inf", "optim.optimizer.lr=inf: not a finite number"),
    ("optim.optimizer.lr=0", "optim.optimizer.lr=0: must be a finite number > 0 (lr=0 trains nothing"),
    ("distill.nce_weight=inf", "distill.nce_weight=inf: not a finite number"),
    ("distill.nce_temperature=1e-40", "distill.nce_temperature=1e-40: must be a finite number >= 0.001"),
    ("ot.blur=inf", "ot.blur=inf: not a finite number"),
    ("trainer.gradient_clip_val=nan", "trainer.gradient_clip_val=nan: not a finite number"),
    ("seed=abc", "seed='abc': must be an integer in [0, 4294967295]"),
    ("ot.refine_iters=1e9", "ot.refine_iters=1000000000.0: must be an integer in [0, 5000]"),
    ("ot.scaling=0.99999999", "ot.scaling=0.99999999: must lie in (0, 0.99]"),
    ("ot.blur=1e-9", "ot.blur=1e-09: must be a finite number >= 0.01"),
])
def test_settings_that_diverge_or_hang_are_one_line_up_front(override, named, tmp_path):
    message = refused((*QUICK, override), tmp_path)
    assert message.startswith(named), message
    assert_untouched(run_dir(tmp_path))


def test_a_setting_that_refers_to_a_removed_group_is_one_line_naming_both_fixes(tmp_path):
    # the study's language-model preset scores AfriMMLU val from the mcqa group's settings; mcqa=none removes them
    message = refused(("experiment=report_lm", "teacher=tiny_lm", "student=tiny_lm", "lang=so", "mcqa=none"), tmp_path)
    assert message == ("eval.evaluators.mcqa_dev.languages refers to mcqa.languages, which this config does not have: "
                       "set mcqa.languages, or drop the entry with eval.evaluators.mcqa_dev=null"), message
    assert_untouched(run_dir(tmp_path))


def test_the_ot_head_names_its_bounds_when_built_directly():
    with pytest.raises(ConfigError, match=r"ot\.blur=inf: must be a finite number >= 0\.01"):
        OTDistillationHead(blur=math.inf)
    with pytest.raises(ConfigError, match=r"ot\.scaling=0\.999: must lie in \(0, 0\.99\]"):
        OTDistillationHead(scaling=0.999)
    with pytest.raises(ConfigError, match=r"ot\.refine_iters=5001: must be an integer in \[0, 5000\]"):
        OTDistillationHead(refine_iters=5001)


def tiny_training(lr: float, batch_size: int = 8, **module_args):
    teacher = tiny_encoder(seed=0, frozen=True)
    student = tiny_encoder(seed=1, projection=True, target_dim=teacher.dim)
    module = distillation_module(student, teacher, ot=1.0, nce=1.0, lr=lr, **module_args)
    dm = BitextDataModule(str(SW_BITEXT), "sw", val_size=8, batch_size=batch_size, seed=0,
                          collate_fn=PairCollator(teacher, student))
    return module, dm


def trainer(tmp_path: Path, steps: int, **kwargs) -> pl.Trainer:
    return pl.Trainer(max_steps=steps, accelerator="cpu", logger=False, enable_progress_bar=False,
                      enable_model_summary=False, num_sanity_val_steps=0, default_root_dir=tmp_path,
                      gradient_clip_val=1.0, **kwargs)


def test_training_with_lr_1e6_stops_at_the_first_non_finite_loss(tmp_path):
    # the same lr given to the module directly (past the config check): loss 2.8, then nan at step 2
    module, dm = tiny_training(lr=1e6, batch_size=4)
    ckpts = pl.callbacks.ModelCheckpoint(dirpath=tmp_path / "checkpoints", every_n_train_steps=1, save_last=True,
                                         save_on_exception=True)
    with pytest.raises(TrainingDiverged) as info:
        trainer(tmp_path, 3, callbacks=[ckpts]).fit(module, datamodule=dm)
    message = str(info.value)
    assert message.startswith("training diverged at step 2: the loss is nan"), message
    assert "lower optim.optimizer.lr (now 1e+06)" in message and "\n" not in message
    assert all(torch.isfinite(p).all() for p in module.student.parameters())  # stopped before the NaN update
    assert_nothing_kept(tmp_path)


def test_a_run_whose_loss_overflows_writes_no_results_student_or_checkpoint(tmp_path):
    # a finite weight whose product with the loss overflows float32: inf at the very first step
    message = refused((*B, "distill.nce_weight=3e38", "callbacks.model_checkpoint.every_n_train_steps=1"), tmp_path)
    assert message.startswith("training diverged at step 1: the loss is inf"), message
    assert "check the loss settings (ot weight 1, ot.blur 0.1, nce weight 3e+38, nce temperature 0.05)" in message  # step 1: not the lr
    assert (run_dir(tmp_path) / "config.yaml").exists()  # it did start
    assert_nothing_kept(run_dir(tmp_path))


# ---------------------------------------------------------------------------------------------- 3. hangs
def test_sigterm_stops_a_step_that_overruns_with_one_line_and_143(tmp_path):
    """A legal but slow step (the OT head's bounds at their limits): SIGTERM mid-step ends the run in
    seconds, not when the step ends (Lightning alone waited for the step, minutes here)."""
    out = run_dir(tmp_path)
    cmd = [sys.executable, str(ROOT / "run.py"), *TINY, f"data.train={SW_BITEXT}", "data.val_size=8",
           "data.batch_size=32", "teacher.max_length=128", "student.max_length=128", "trainer.max_steps=2",
           "ot.refine_iters=5000", "ot.scaling=0.99", "ot.blur=0.01", f"paths.root_dir={tmp_path}",
           f"hydra.run.dir={out}"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for line in proc.stdout:  # Lightning prints the model summary as training starts
            if "Trainable params" in line:
                break
        else:
            pytest.fail(proc.stderr.read()[-3000:])
        time.sleep(3)  # well inside the first step
        assert proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        code = proc.wait(timeout=60)
        waited = time.monotonic() - sent
    finally:
        proc.kill()
    stderr = proc.stderr.read()
    assert code == 143 and waited < 15, (code, waited, stderr[-3000:])
    assert "stopped by SIGTERM at step 0" in stderr and "Traceback" not in stderr, stderr[-3000:]
    assert not (out / "results.json").exists()


# ---------------------------------------------------------------------------------------------- 4. nodes
def test_several_nodes_without_a_cluster_are_refused_before_any_model_loads(tmp_path, monkeypatch):
    # it used to wait forever at "MEMBER: 1/4"
    for name in ("SLURM_JOB_ID", "SLURM_NTASKS", "TORCHELASTIC_RUN_ID", "GROUP_RANK", "LSB_JOBID",
                 "OMPI_COMM_WORLD_SIZE", "MASTER_ADDR", "NODE_RANK"):
        monkeypatch.delenv(name, raising=False)
    message = refused((*QUICK, "trainer.num_nodes=4"), tmp_path)
    assert message.startswith("trainer.num_nodes=4 but nothing started this process as one of 4 nodes"), message
    assert "MASTER_ADDR, MASTER_PORT and NODE_RANK=0..3" in message and "trainer.num_nodes=1" in message


def test_nodes_that_never_join_fail_in_one_line_after_the_timeout(tmp_path, monkeypatch, caplog):
    """Inside a (hand-made) cluster, rank 0 of 2 nodes says what it waits for, then gives up in one line."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(port))
    monkeypatch.setenv("NODE_RANK", "0")
    timeout = "{_target_:pytorch_lightning.strategies.DDPStrategy,timeout:{_target_:datetime.timedelta,seconds:3}}"
    with caplog.at_level("INFO", logger="optical_lightning"):
        message = refused((*QUICK, "trainer.num_nodes=2", f"++trainer.strategy={timeout}"), tmp_path)
    assert message.startswith(f"the 2 processes of trainer.num_nodes=2 did not all meet at 127.0.0.1:{port} within "
                              f"0:00:03 (Timed out after"), message
    assert f"waiting for the processes of 1 more node(s) to join at 127.0.0.1:{port}" in caplog.text
    assert_nothing_kept(run_dir(tmp_path))


# ---------------------------------------------------------------------------------------------- 5. memory
def test_a_batch_larger_than_the_training_set_is_refused_before_any_model_loads(tmp_path):
    # it used to be OOM-killed at 20 GB after 240 s, without a message
    message = refused((*QUICK, "data.batch_size=1000000"), tmp_path)
    assert message == ("data.batch_size=1000000 is larger than the training set (192 pairs after holding out 8 for "
                       "validation): use data.batch_size <= 192"), message


def test_a_huge_step_budget_serves_its_first_batch_without_building_the_index_list(tmp_path):
    # max_steps=10**9 x batch 8 is an epoch of 8e9 indices: 64 GB as int64, far more as a Python list
    dm = BitextDataModule(str(SW_BITEXT), "sw", val_size=8, batch_size=8, seed=0, bucket_batches=32)
    dm.trainer = pl.Trainer(max_steps=10**9, accelerator="cpu", logger=False, enable_progress_bar=False,
                            default_root_dir=tmp_path)
    tracemalloc.start()
    started = time.monotonic()
    try:
        batch = next(iter(dm.train_dataloader()))
        planned = dm.planned_pairs()  # what a teacher cache would encode: every pair, once
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(batch) == 8 and len(planned) == 200
    assert time.monotonic() - started < 20 and peak < 64 * 2**20, (time.monotonic() - started, peak)


@pytest.mark.parametrize("schedule", ["mixed", "sequential"])
@pytest.mark.parametrize("world", [1, 3])
def test_an_epoch_drawn_in_blocks_keeps_the_mixture_the_shards_and_resume(schedule, world):
    """The block-wise order of a long epoch, at a block of 96 instead of 2**20 samples."""
    args = dict(n_general=70, n_domain=13, ratio=0.3, epoch_size=5003, schedule=schedule, seed=5,
                lengths=list(range(83)), batch_size=4, bucket_batches=2, num_replicas=world)

    def sampler(**extra) -> MixtureSampler:
        s = MixtureSampler(**{**args, **extra})
        s.block = 96
        return s

    order = sampler().global_order().tolist()
    counts = Counter(order)
    assert len(order) == 5003 and sum(v for k, v in counts.items() if k >= 70) == round(0.3 * 5003)
    general, domain = [counts[i] for i in range(70)], [counts[i] for i in range(70, 83)]
    assert max(general) - min(general) <= 1 and max(domain) - min(domain) <= 1  # evenly repeated
    padded = order + order[len(order) - (sampler().total_size - 5003):]
    for rank in range(world):
        assert list(sampler(rank=rank)) == padded[rank::world]
        assert list(sampler(rank=rank, skip=37)) == padded[rank::world][37:]  # resumed mid-epoch
    assert sorted(sampler().visited().tolist()) == sorted(counts)


# ---------------------------------------------------------------------------------------------- 6. one line
def test_a_tpu_accelerator_names_torch_xla_not_make_install(tmp_path):
    message = refused((*QUICK, "trainer.accelerator=tpu"), tmp_path)
    assert message.startswith("trainer.accelerator=tpu needs the package torch_xla, which installs only on a TPU host"), message


def test_online_wandb_without_a_key_is_refused_before_any_model_loads(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "online")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_IDENTITY_TOKEN_FILE", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    message = refused((*QUICK, "logger=wandb", "logger.wandb.name=x", "logger.wandb.group=y"), tmp_path)
    assert message.startswith("logger=wandb runs online (WANDB_MODE=online) but finds no W&B API key: set WANDB_API_KEY")
    assert "WANDB_MODE=offline" in message
    assert_untouched(run_dir(tmp_path))


@pytest.mark.slow  # ~16 s: wandb starts its service process and retries until its init timeout
def test_a_wandb_run_that_cannot_reach_its_server_fails_in_one_line(tmp_path, monkeypatch):
    import wandb

    from optical_lightning.reporting.tracking import WandbTracker

    monkeypatch.setenv("WANDB_MODE", "online")
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # nothing listens there: as with no network
    monkeypatch.setenv("WANDB_INIT_TIMEOUT", "5")
    monkeypatch.setenv("WANDB_SILENT", "true")
    logger = WandbTracker(project="p", save_dir=str(tmp_path), offline=False)
    try:
        with pytest.raises(OpticalError) as info:
            logger.experiment  # noqa: B018 - starting the run is what fails
    finally:
        wandb.teardown()
    message = str(info.value)
    assert message.startswith("logger=wandb could not start its W&B run (CommError: ") and "\n" not in message
    assert message.endswith("or run offline with WANDB_MODE=offline (and `wandb sync <run dir>/wandb` later)")


def test_a_checkpoint_that_cannot_be_written_leaves_the_previous_one_intact(tmp_path):
    """A full disk, as the OS reports it: the file may grow only so far (RLIMIT_FSIZE), then writes fail."""
    module, dm = tiny_training(lr=1e-3)
    t = trainer(tmp_path, 2, enable_checkpointing=False)
    t.fit(module, datamodule=dm)
    last = tmp_path / "checkpoints" / "last.ckpt"
    t.save_checkpoint(last)
    before = last.read_bytes()
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails with EFBIG instead of killing us
    resource.setrlimit(resource.RLIMIT_FSIZE, (len(before) // 2, hard))
    try:
        with pytest.raises(CheckpointWriteError) as info:
            t.save_checkpoint(last)
        with pytest.raises(CheckpointWriteError):
            t.save_checkpoint(tmp_path / "checkpoints" / "step000002.ckpt")
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)
    assert isinstance(info.value.__cause__, OSError) and info.value.__cause__.errno == errno.EFBIG
    assert str(info.value).startswith(f"could not write checkpoint {last}: File too large; the previous checkpoint")
    assert last.read_bytes() == before  # whole, and still the previous one
    assert sorted(p.name for p in last.parent.iterdir()) == ["last.ckpt"]  # no partial or 0-byte file left


def test_a_checkpoint_of_non_finite_weights_is_never_written(tmp_path):
    io = AtomicCheckpointIO()
    io.save_checkpoint({"state_dict": {"student.w": torch.tensor([1.0, float("nan")])}}, tmp_path / "last.ckpt")
    assert not (tmp_path / "last.ckpt").exists()
    io.save_checkpoint({"state_dict": {"student.w": torch.ones(2)}}, tmp_path / "last.ckpt")
    assert torch.load(tmp_path / "last.ckpt", weights_only=True)["state_dict"]["student.w"].sum() == 2
    assert os.listdir(tmp_path) == ["last.ckpt"]
