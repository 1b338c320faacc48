"""Every config group composes and instantiates with the real ``conf/`` tree."""

from __future__ import annotations

import pytest
from conftest import ROOT, compose_config
from hydra.utils import instantiate

GROUPS = {group.name: sorted(p.stem for p in group.glob("*.yaml")) for group in (ROOT / "conf").iterdir()
          if group.is_dir() and group.name not in {"hydra", "local", "experiment"}}


@pytest.mark.parametrize("group, option", [(g, o) for g, opts in GROUPS.items() for o in opts])
def test_every_option_composes(group, option, tmp_path):
    cfg = compose_config(f"{group}={option}", output_dir=tmp_path)
    assert cfg.lang.code in {"sw", "so"} and cfg.task_name


@pytest.mark.parametrize("option", GROUPS["ot"])
def test_ot_configs_instantiate_valid_heads(option, tmp_path):
    head = instantiate(compose_config(f"ot={option}", output_dir=tmp_path).ot)
    assert head.blur > 0 and 0 < head.scaling < 1


def test_default_is_the_real_setup(tmp_path):
    cfg = compose_config(output_dir=tmp_path)
    assert cfg.teacher.model_name_or_path == "intfloat/multilingual-e5-small"
    assert cfg.student.model_name_or_path == "intfloat/multilingual-e5-small"
    assert cfg.distill.name == "optical" and cfg.lang.code == "sw"


def test_optimizer_and_scheduler_are_partials(tmp_path):
    import torch

    cfg = compose_config(output_dir=tmp_path)
    opt = instantiate(cfg.optim.optimizer)(params=[torch.nn.Parameter(torch.zeros(1))])
    sched = instantiate(cfg.optim.scheduler)(optimizer=opt, total_steps=100)
    lrs = []
    for _ in range(100):
        lrs.append(sched.get_last_lr()[0])
        opt.step()
        sched.step()
    assert lrs[0] < lrs[10] and lrs[10] == pytest.approx(cfg.optim.optimizer.lr) and lrs[-1] < lrs[50]
