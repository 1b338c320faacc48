"""`experiments/reasoning/precision_agreement.py`: the base model's answers of two records compared by question id."""

from __future__ import annotations

import json
import math
import subprocess
import sys

from conftest import ROOT

SCRIPT = ROOT / "experiments" / "reasoning" / "precision_agreement.py"


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, cwd=ROOT)


def test_a_run_record_against_a_scoring_record_matched_by_id(tmp_path):
    bf16 = tmp_path / "mcqa.json"  # a run's record: four questions, answers 0 1 2 3
    bf16.write_text(json.dumps({
        "name": "afrimmlu-sw", "ids": ["q1", "q2", "q3", "q4"], "answers": [0, 1, 2, 3],
        "stages": {"teacher_en": {"afrimmlu-sw": {"predicted": [0, 1, 2, 0]}},
                   "zero_shot": {"afrimmlu-sw": {"predicted": [0, 0, 0, 0]}}}}))
    int8 = tmp_path / "int8.json"  # mcqa_score --out, the same questions in another order, one left out
    int8.write_text(json.dumps({"ids": ["q3", "q2", "q1"], "answers": [2, 1, 0],
                                "predicted": [0, 1, 0], "reference_predicted": [2, 1, 1]}))
    out = tmp_path / "table.md"
    proc = run(f"bf16={bf16}", f"int8={int8}", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| target") or line.startswith("| English")]
    assert rows == ["| target | bf16 | 4 | 0.250 | 1.000 | – |",  # no log-likelihoods: no probability change
                    "| target | int8 | 3 | 0.667 | 0.667 | – |",  # q3: 0 and 0, q2: 1 against 0, q1: 0 and 0
                    "| English | bf16 | 4 | 0.750 | 1.000 | – |",
                    "| English | int8 | 3 | 0.667 | 0.667 | – |"]  # q1: 1 against 0
    assert out.read_text() == proc.stdout


def test_the_right_letters_probability_is_compared_by_question_id(tmp_path):
    """Two machines' records of the same questions: the paired change in the right letter's probability, by hand."""
    log = lambda *p: [math.log(x) for x in p]  # noqa: E731
    amd = tmp_path / "amd.json"  # q1's right letter (A) 0.4 -> 0.6; q2's (B) 0.3 -> 0.3: mean change +0.1
    intel = tmp_path / "intel.json"
    intel.write_text(json.dumps({"ids": ["q1", "q2"], "answers": [0, 1], "predicted": [0, 0],
                                 "loglik": [log(.4, .3, .2, .1), log(.4, .3, .2, .1)]}))
    amd.write_text(json.dumps({"ids": ["q2", "q1"], "answers": [1, 0], "predicted": [0, 0],
                               "loglik": [log(.4, .3, .2, .1), log(.6, .2, .1, .1)]}))
    proc = run(f"intel={intel}", f"amd={amd}")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[2:] == ["| target | intel | 2 | 0.500 | 1.000 | +0.0000 [+0.0000, +0.0000], p 1.00 |",
                                            "| target | amd | 2 | 0.500 | 1.000 | +0.1000 [+0.0000, +0.2000], p 1.00 |"]


def test_a_missing_file_or_disjoint_questions_is_one_line(tmp_path):
    proc = run("bf16=" + str(tmp_path / "nope.json"))
    assert proc.returncode == 2 and proc.stderr.strip().startswith("error: ") and "LABEL=PATH" in proc.stderr
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps({"ids": ["x"], "answers": [0], "predicted": [0]}))
    b.write_text(json.dumps({"ids": ["y"], "answers": [0], "predicted": [0]}))
    proc = run(f"a={a}", f"b={b}")
    assert proc.returncode == 1 and "shares no question ids" in proc.stderr and len(proc.stderr.splitlines()) == 1
