"""Shared helpers: real bitext fixtures, Hydra composition of the real configs, real CLI runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, open_dict

from optical_lightning.utils.config import register_resolvers

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures"
SW_BITEXT = FIXTURES / "tico19.dev200.en-sw.tsv"  # 200 real TICO-19 dev pairs (CC0)
SO_BITEXT = FIXTURES / "tico19.dev200.en-so.tsv"

register_resolvers()


def cli_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", WANDB_MODE="offline",
               TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


def run_cli(*overrides: str, cwd: Path, multirun: bool = False, timeout: int = 300,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run ``python run.py`` exactly as a user would, with outputs under ``cwd``."""
    cmd = [sys.executable, str(ROOT / "run.py"), *(["-m"] if multirun else []), *overrides,
           f"paths.root_dir={cwd}"]
    return subprocess.run(cmd, cwd=cwd, env=env or cli_env(), capture_output=True, text=True, timeout=timeout)


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """Tests never reach the Hugging Face hub (a lookup without network retries for most of a minute)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("WANDB_MODE", "offline")


TINY_MODELS = ("teacher=tiny", "student=tiny", "callbacks=none", "logger=csv", "trainer.enable_progress_bar=false")
TINY = (*TINY_MODELS, "eval=none")


def compose_config(*overrides: str, output_dir: Path) -> DictConfig:
    """Compose the real ``conf/`` exactly as ``run.py`` would, with the run directory pinned."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=list(overrides))
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
    return cfg


def save_tiny_teacher_and_student(folder: Path) -> None:
    """A tiny causal LM saved as ``folder/tiny`` and a LoRA student of it as ``folder/student``, whose adapters change
    the model (a fresh adapter is the identity)."""
    import torch

    from optical_lightning.models.causal_lm import adapt_student
    from optical_lightning.models.tiny import tiny_causal_lm

    teacher = tiny_causal_lm(seed=0)
    teacher.save_pretrained(folder / "tiny")
    student = adapt_student(teacher, lora={"r": 2, "alpha": 4})
    for name, param in student.model.named_parameters():
        if "lora_B" in name:
            param.data.normal_(0.0, 0.5, generator=torch.Generator().manual_seed(0))
    student.save_pretrained(folder / "student")


@pytest.fixture
def tiny_pair():
    from optical_lightning.models.tiny import tiny_encoder

    teacher = tiny_encoder(seed=0, frozen=True)
    student = tiny_encoder(seed=1, projection=True, target_dim=teacher.dim)
    return teacher, student


def distillation_module(student, teacher, *, ot: float = 0.0, mse: float = 0.0, nce: float = 0.0,
                        temperature: float = 0.05, head=None, lr: float = 1e-3, scheduler=None):
    """A DistillationModule with the three loss terms of ``conf/distill/default.yaml`` at the given weights."""
    import torch

    from optical_lightning.losses.ot import OTDistillationHead
    from optical_lightning.losses.terms import InBatchInfoNCETerm, PooledMSETerm, TransportTerm
    from optical_lightning.training.module import DistillationModule

    terms = [TransportTerm(ot, head or OTDistillationHead()), PooledMSETerm(mse), InBatchInfoNCETerm(nce, temperature)]
    return DistillationModule(student, teacher, terms, optimizer=lambda params: torch.optim.AdamW(params, lr=lr),
                              scheduler=scheduler)
