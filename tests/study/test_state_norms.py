"""`experiments/reasoning/state_norms.py`: how much of a squared distance between raw states is token length, and
whether a squared-distance plan picks the cosine plan's targets."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import torch
from conftest import FIXTURES, ROOT, cli_env

from optical_lightning.losses.ot import OTDistillationHead
from optical_lightning.models.tiny import tiny_causal_lm

SCRIPT = ROOT / "experiments" / "reasoning" / "state_norms.py"
sys.path.insert(0, str(SCRIPT.parent))  # the script imports its sibling, oracle_transport.py
_spec = importlib.util.spec_from_file_location("state_norms", SCRIPT)
state_norms = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(state_norms)
HEAD = OTDistillationHead(blur=0.05)


def test_unit_states_have_no_length_part_and_the_same_plan():
    """On unit vectors 1/2 |x - y|^2 is the cosine distance, so the two plans are the same plan."""
    g = torch.Generator().manual_seed(0)
    x, y = (torch.nn.functional.normalize(torch.randn(n, 16, generator=g), dim=-1) for n in (7, 9))
    out = state_norms.measure(x, y, HEAD)
    assert abs(out["length_share"]) < 1e-6 and out["same_hard_target"] == 1.0


def test_parallel_states_of_other_lengths_are_all_length():
    """Swahili states that point where English ones do, at another length: no angle, all length, hand-solved."""
    x = torch.eye(4) * torch.tensor([1.0, 2.0, 3.0, 4.0])[:, None]
    y = 2 * x
    out = state_norms.measure(x, y, HEAD)
    assert abs(out["length_share"] - 1.0) < 1e-6 and out["cosine_cost"] < 1e-6
    assert out["same_hard_target"] == 1.0  # orthogonal axes: each token's only match is its own


def test_the_command_writes_its_record(tmp_path):
    tiny_causal_lm(seed=0).save_pretrained(tmp_path / "tiny")
    out = tmp_path / "norms"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--model", str(tmp_path / "tiny"), "--data",
                           str(FIXTURES / "mcqa" / "afrimmlu"), "--split", "test", "--layer", "2", "--dtype", "32",
                           "--max-questions", "3", "--out", str(out)],
                          capture_output=True, text=True, timeout=300, env=cli_env())
    assert proc.returncode == 0, proc.stderr[-2000:]
    record = json.loads(out.with_suffix(".json").read_text())
    n = record["n"]
    assert n > 0 and len(record["per_question"]) == n and record["summary"]["lengths"]["sink"]["n"] == 2 * n
    assert 0 <= record["summary"]["length_share"] <= 1
    assert "| Swahili content |" in out.with_suffix(".md").read_text()
