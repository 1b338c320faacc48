"""`experiments/reasoning/prompt_language.py`: Swahili templates against the default, pooled over splits, by hand."""

from __future__ import annotations

import json
import math
import subprocess
import sys

from conftest import ROOT

SCRIPT = ROOT / "experiments" / "reasoning" / "prompt_language.py"


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, cwd=ROOT)


def write(folder, name: str, answers: list[int], probs: list[tuple[float, ...]]) -> None:
    """An mcqa_score --out record: the prediction is each question's most likely letter."""
    loglik = [[math.log(p) for p in row] for row in probs]
    predicted = [max(range(4), key=row.__getitem__) for row in probs]
    (folder / f"{name}.json").write_text(json.dumps({"answers": answers, "predicted": predicted, "loglik": loglik}))


def test_templates_are_compared_with_the_default_and_the_english_answers(tmp_path):
    # two splits of one question each; the right answers are A (val) and B (dev)
    write(tmp_path, "en-val-default", [0], [(.7, .1, .1, .1)])  # English says A
    write(tmp_path, "en-dev-default", [1], [(.1, .1, .7, .1)])  # English says C
    write(tmp_path, "sw-val-default", [0], [(.4, .3, .2, .1)])  # A, right letter 0.4
    write(tmp_path, "sw-dev-default", [1], [(.1, .2, .6, .1)])  # C, right letter 0.2
    write(tmp_path, "sw-val-swahili", [0], [(.2, .5, .2, .1)])  # B: wrong, disagrees; 0.2 (-0.2)
    write(tmp_path, "sw-dev-swahili", [1], [(.1, .4, .4, .1)])  # B (first of the tie): right, disagrees; 0.4 (+0.2)
    out = tmp_path / "table.md"
    proc = run("--dir", str(tmp_path), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    rows = [line for line in proc.stdout.splitlines() if line.startswith(("| en", "| sw"))]
    assert rows == ["| en | default | 2 | 0.500 | 1.000 | 0.400 | – |",
                    "| sw | default | 2 | 0.500 | 1.000 | 0.300 | – |",
                    "| sw | swahili | 2 | 0.500 | 0.000 | 0.300 | +0.000 [-0.200, +0.200], p 1.00 |"]
    assert out.read_text() == proc.stdout


def test_without_the_default_records_it_says_which_to_score_first(tmp_path):
    write(tmp_path, "sw-val-swahili", [0], [(.4, .3, .2, .1)])
    proc = run("--dir", str(tmp_path), "--splits", "val")
    assert proc.returncode != 0 and proc.stderr.strip().count("\n") == 0
    assert "default.json" in proc.stderr and "score the default template first" in proc.stderr
