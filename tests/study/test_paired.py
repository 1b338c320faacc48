"""`experiments/paired.py`: trained against zero-shot on the same queries of one run directory."""

from __future__ import annotations

import json
import math
import subprocess
import sys

from conftest import ROOT


def test_paired_table_from_a_run_directory(tmp_path):
    per_query = {
        "tico19-test-sw-en/zero_shot": {f"q{i}": {"P@1": float(i < 6)} for i in range(10)},
        "tico19-test-sw-en/trained": {f"q{i}": {"P@1": float(i < 8)} for i in range(10)},
        "udhr-sw-en/teacher_en": {"q0": {"nDCG@10": 1.0}},  # no zero-shot/trained pair: left out
    }
    mcqa = {"answers": [0, 1, 2, 3], "teacher_en_predicted": [0, 1, 2, 2],
            "stages": {"zero_shot": {"afrimmlu-sw": {"predicted": [0, 0, 0, 0]}},
                       "trained": {"afrimmlu-sw": {"predicted": [0, 1, 2, 0]}}}}
    (tmp_path / "results.json").write_text("{}")
    (tmp_path / "per_query.json").write_text(json.dumps(per_query))
    (tmp_path / "mcqa.json").write_text(json.dumps(mcqa))
    out = tmp_path / "paired.md"
    proc = subprocess.run([sys.executable, str(ROOT / "experiments" / "paired.py"), str(tmp_path), "--out", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = {tuple(c.strip() for c in line.split("|")[1:3]): line for line in out.read_text().splitlines()[2:]}
    assert set(lines) == {("tico19-test-sw-en", "P@1"), ("afrimmlu-sw", "accuracy"), ("afrimmlu-sw", "agreement")}
    assert "| 10 | 0.600 | 0.800 | +0.200 [" in lines[("tico19-test-sw-en", "P@1")]
    assert "| 4 | 0.250 | 0.750 | +0.500 [" in lines[("afrimmlu-sw", "accuracy")]  # hits 1 -> 3 of 4
    assert "| 4 | 0.250 | 0.750 | +0.500 [" in lines[("afrimmlu-sw", "agreement")]  # with the teacher: 1 -> 3


def test_a_directory_without_results_is_a_one_line_error(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "experiments" / "paired.py"), str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "holds no complete run" in proc.stderr


def test_against_compares_the_trained_stages_of_two_runs(tmp_path):
    for name, hits in (("a", 8), ("b", 5)):
        run = tmp_path / name
        run.mkdir()
        (run / "results.json").write_text("{}")
        (run / "per_query.json").write_text(json.dumps({
            "flores200-devtest-sw-en/zero_shot": {f"q{i}": {"P@1": 0.0} for i in range(10)},
            "flores200-devtest-sw-en/trained": {f"q{i}": {"P@1": float(i < hits)} for i in range(10)}}))
    proc = subprocess.run([sys.executable, str(ROOT / "experiments" / "paired.py"), str(tmp_path / "a"),
                           "--against", str(tmp_path / "b")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "| flores200-devtest-sw-en | P@1 | 10 | 0.500 | 0.800 | +0.300 [" in proc.stdout


def test_labels_name_the_two_columns(tmp_path):
    for name, hits in (("a", 8), ("b", 5)):
        run = tmp_path / name
        run.mkdir()
        (run / "results.json").write_text(json.dumps({"config": {"distill": {"name": "optical"}}}))
        (run / "per_query.json").write_text(json.dumps({
            "flores200-devtest-sw-en/trained": {f"q{i}": {"P@1": float(i < hits)} for i in range(10)}}))
    proc = subprocess.run([sys.executable, str(ROOT / "experiments" / "paired.py"), str(tmp_path / "a"),
                           "--against", str(tmp_path / "b"), "--labels", "full", "top 2"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "| set | metric | n | full | top 2 | top 2 − full [95% CI] | p |" in proc.stdout


def test_sets_without_shared_queries_are_skipped_with_a_note(tmp_path):
    for name, qids in (("a", range(0, 5)), ("b", range(5, 10))):
        run = tmp_path / name
        run.mkdir()
        (run / "results.json").write_text("{}")
        (run / "per_query.json").write_text(json.dumps({
            "bitext-val/trained": {f"q{i}": {"P@1": 1.0} for i in qids},
            "flores200-devtest-sw-en/trained": {f"q{i}": {"P@1": 1.0} for i in range(10)}}))
    proc = subprocess.run([sys.executable, str(ROOT / "experiments" / "paired.py"), str(tmp_path / "a"),
                           "--against", str(tmp_path / "b")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "bitext-val: the two runs share no query" in proc.stderr
    assert "| flores200-devtest-sw-en | P@1 | 10 |" in proc.stdout and "| bitext-val |" not in proc.stdout


def test_a_language_models_rows_pair_with_the_base_model_and_its_letter_probabilities(tmp_path):
    """The LM's NAME-en row pairs with the base model on the English questions (teacher_en), and the letter
    log-likelihoods give the right letter's probability: log(0.5, 0.25, 0.125, 0.125) -> 0.5 when A is right."""
    half = [math.log(x) for x in (0.5, 0.25, 0.125, 0.125)]
    flat = [0.0, 0.0, 0.0, 0.0]
    mcqa = {"answers": [0, 0], "teacher_en_predicted": [0, 0],
            "stages": {"teacher_en": {"afrimmlu-sw": {"predicted": [0, 0], "loglik": [half, half]}},
                       "zero_shot": {"afrimmlu-sw": {"predicted": [0, 0], "loglik": [flat, flat]}},
                       "trained": {"afrimmlu-sw": {"predicted": [0, 0], "loglik": [half, flat]},
                                   "afrimmlu-sw-en": {"predicted": [0, 1], "loglik": [half, half]}}}}
    (tmp_path / "results.json").write_text("{}")
    (tmp_path / "mcqa.json").write_text(json.dumps(mcqa))
    proc = subprocess.run([sys.executable, str(ROOT / "experiments" / "paired.py"), str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    rows = {tuple(c.strip() for c in line.split("|")[1:3]): line for line in proc.stdout.splitlines()[2:] if line}
    assert "| 2 | 0.250 | 0.375 | +0.125 [" in rows[("afrimmlu-sw", "gold_prob")]  # (0.25 + 0.25) -> (0.5 + 0.25)
    assert "| 2 | 1.000 | 0.500 | -0.500 [" in rows[("afrimmlu-sw-en", "accuracy")]  # against teacher_en: 2 -> 1 right
    assert "| 2 | 0.500 | 0.500 | +0.000 [" in rows[("afrimmlu-sw-en", "gold_prob")]
