"""`experiments/reasoning/content_context.py` and `offset.py`: how far a student's Swahili states are from the English
ones on bitext and on the questions, and how much of its move is one shift of every token."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import FIXTURES, ROOT, cli_env, save_tiny_teacher_and_student

from optical_lightning.losses.ot import OTDistillationHead

SCRIPTS = ROOT / "experiments" / "reasoning"
sys.path.insert(0, str(SCRIPTS))  # the scripts import their sibling, oracle_transport.py
_spec = importlib.util.spec_from_file_location("offset", SCRIPTS / "offset.py")
offset = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(offset)
AFRIMMLU = FIXTURES / "mcqa" / "afrimmlu"


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    """A tiny base model, a student whose adapters change it, and data whose 'Swahili' is the English text."""
    root = tmp_path_factory.mktemp("context")
    save_tiny_teacher_and_student(root)
    (root / "data").mkdir()
    for lang in ("sw", "en"):
        shutil.copy(AFRIMMLU / "en.test.jsonl", root / "data" / f"{lang}.val.jsonl")
    english = [line.split("\t")[1] for line in (FIXTURES / "tico19.dev200.en-sw.tsv").read_text().splitlines()[1:41]]
    (root / "bitext.tsv").write_text("id\ten\tsw\n" + "".join(f"p{i}\t{t}\t{t}\n" for i, t in enumerate(english)))
    return root


def _run(script: str, root: Path, *args: str) -> dict:
    out = root / script
    proc = subprocess.run([sys.executable, str(SCRIPTS / f"{script}.py"), "--model", str(root / "tiny"), "--student",
                           str(root / "student"), "--data", str(root / "data"), "--bitext", str(root / "bitext.tsv"),
                           "--val-size", "8", "--layer", "3", "--blur", "0.02", "--dtype", "32", "--max-items", "3",
                           "--out", str(out), *args], capture_output=True, text=True, timeout=300, env=cli_env())
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"| student{'' if script == 'content_context' else ' ' + root.name} |" in out.with_suffix(".md").read_text()
    return json.loads(out.with_suffix(".json").read_text())


def test_text_read_against_itself_costs_the_plans_floor_and_a_student_moves_away(models):
    """The base model reading the English text as 'Swahili' is at the entropic plan's floor on every reading (the
    same text, the same states); a student whose adapters change the model is farther on each."""
    record = _run("content_context", models)
    base, student = record["means"]["base model"], record["means"]["student"]
    assert set(base) == {"bitext", "questions alone", "questions in the prompt"}
    assert record["n_pairs"] == 3 and len(record["per_item"]["student"]["bitext"]) == 3
    for reading in base:
        assert base[reading] < 0.01 < student[reading], reading


def test_identical_text_has_no_offset_and_the_shift_rows_answer_as_zero_shot(models):
    record = _run("offset", models)
    assert record["offset_norm"] < 1e-5
    summary = record["summary"]
    for name in ("global offset", "prompt offset"):
        assert summary[name] == summary["zero-shot"], name
    assert summary["zero-shot"]["agreement"] == 1.0 and summary["zero-shot"]["cost"] < 0.01
    assert summary["zero-shot"]["centred cost"] < 0.01
    (moves,) = record["student_displacement"].values()
    assert 0 <= moves["shared_share"] <= 1
    assert {"along", "cos", "token along", "token cos", "cost-geometry token cos"} <= set(moves)


def test_a_constant_displacement_is_all_shift():
    """Hand-solved: every token moved by the same vector v is all shift, pointing along v; moves that cancel out
    have no shift at all."""
    v = torch.tensor([3.0, 4.0, 0.0])
    share, cosine = offset.displacement(v.expand(5, 3), v)
    assert abs(share - 1) < 1e-6 and abs(cosine - 1) < 1e-6
    share, _ = offset.displacement(torch.stack([v, -v]), v)
    assert share == 0.0


def test_a_quarter_of_the_way_is_a_quarter_and_a_shift_is_no_token_specific_move():
    """Hand-solved: a move a quarter of the way to every token's own target has fraction 0.25 and cosine 1, whole and
    token by token; one vector added to every token, against targets that differ by token, has no token-specific part."""
    wanted = torch.tensor([[2.0, 0.0, 0.0], [0.0, 4.0, 0.0], [0.0, 0.0, -2.0]])
    moves = offset.toward_targets(0.25 * wanted, wanted)
    for key in ("along", "token along"):
        assert abs(moves[key] - 0.25) < 1e-6, key
    for key in ("cos", "token cos"):
        assert abs(moves[key] - 1) < 1e-6, key
    shift = wanted.mean(0).expand(3, 3)
    moves = offset.toward_targets(shift, wanted)
    assert moves["token along"] == 0.0 and moves["token cos"] == 0.0
    assert 0 < moves["along"] < 1


def _pairing():
    spec = importlib.util.spec_from_file_location("pairing", SCRIPTS / "pairing.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_student_that_swaps_its_tokens_counterparts_is_cheap_only_under_its_own_plan():
    """Hand-solved: two English tokens on the axes; the base model's Swahili tokens sit near them in order. A student
    equal to the base model keeps every counterpart and its costs; one that swaps the two tokens keeps none, is as
    cheap under its own plan, and dear under the base model's."""
    pairing = _pairing()
    head = OTDistillationHead(blur=0.05)
    en = torch.eye(2)
    base = torch.nn.functional.normalize(torch.tensor([[1.0, 0.1], [0.1, 1.0]]), dim=-1)
    same = pairing.pairing(head, en, base, base)
    assert same["same counterpart"] == 1.0
    assert abs(same["cost"] - same["base cost"]) < 1e-5 and abs(same["cost, base plan"] - same["base cost"]) < 1e-5
    swapped = pairing.pairing(head, en, base, base.flip(0))
    assert swapped["same counterpart"] == 0.0
    assert abs(swapped["cost"] - same["cost"]) < 1e-4
    assert swapped["cost, base plan"] > 0.8 > 0.01 > swapped["cost"]


def test_pairing_cli_reads_a_student(models):
    out = models / "pairing"
    proc = subprocess.run([sys.executable, str(SCRIPTS / "pairing.py"), "--model", str(models / "tiny"), "--student",
                           str(models / "student"), "--data", str(models / "data"), "--bitext", str(models / "bitext.tsv"),
                           "--val-size", "8", "--layer", "3", "--blur", "0.02", "--dtype", "32", "--max-items", "3",
                           "--out", str(out)], capture_output=True, text=True, timeout=300, env=cli_env())
    assert proc.returncode == 0, proc.stderr[-2000:]
    (means,) = json.loads(out.with_suffix(".json").read_text())["means"].values()
    assert 0 <= means["same counterpart"] <= 1
    assert means["base cost"] < 0.01 < means["cost"]  # the 'Swahili' is the English text; the student moves it
