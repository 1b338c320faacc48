"""`experiments/reasoning/dev_table.py`: one row per language-model run, the base model first."""

from __future__ import annotations

import json
import math
import subprocess
import sys

from conftest import ROOT

SCRIPT = ROOT / "experiments" / "reasoning" / "dev_table.py"


def write_run(folder, trained_predicted, trained_loglik) -> None:
    folder.mkdir()
    half = [math.log(x) for x in (0.5, 0.25, 0.125, 0.125)]  # A at 0.5
    (folder / "results.json").write_text(json.dumps({
        "run": {"overrides": ["experiment=reasoning", "mcqa.split=val", "optim.optimizer.lr=5e-4"]},
        "metrics": {"bitext-val": {"zero_shot": {"P@1": 0.1}, "trained": {"P@1": 0.4}}},
        "timing": {"fit_s": 300.4}}))
    (folder / "mcqa.json").write_text(json.dumps({
        "name": "afrimmlu-sw", "path": "data/eval/mcqa/afrimmlu/sw.val.jsonl", "answers": [0, 1],
        "teacher_en_predicted": [0, 1],
        "stages": {"teacher_en": {"afrimmlu-sw": {"predicted": [0, 1], "loglik": [half, half]}},
                   "zero_shot": {"afrimmlu-sw": {"predicted": [0, 0], "loglik": [half, half]}},
                   "trained": {"afrimmlu-sw": {"predicted": trained_predicted, "loglik": trained_loglik},
                               "afrimmlu-sw-en": {"predicted": [0, 1], "loglik": [half, half]}}}}))


def test_rows_from_hand_made_runs(tmp_path):
    half = [math.log(x) for x in (0.5, 0.25, 0.125, 0.125)]
    write_run(tmp_path / "lr5e-4", [0, 1], [half, [0.0, 0.0, 0.0, 0.0]])
    proc = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "lr5e-4")], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    base, trained = [line.split("|")[1:-1] for line in proc.stdout.splitlines()[2:4]]
    # base: 1 of 2 right; the right letters' probabilities 0.5 and 0.25; agrees with English on 1 of 2
    assert [c.strip() for c in base[:5]] == ["base model", "–", "0.500", "0.375", "0.500"]
    # trained: both right (0.5 and a flat 0.25 -> 0.375), English row 2 of 2, proxies, fit time
    assert [c.strip() for c in trained] == ["lr5e-4", "optim.optimizer.lr=5e-4", "1.000", "0.375", "1.000",
                                           "1.000", "1.000", "0.400", "–", "300"]


def test_a_folder_without_records_is_a_one_line_error(tmp_path):
    proc = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "holds no complete language-model run" in proc.stderr


def test_a_setting_with_a_newline_stays_one_table_row(tmp_path):
    half = [math.log(x) for x in (0.5, 0.25, 0.125, 0.125)]
    write_run(tmp_path / "prefix", [0, 1], [half, half])
    results = json.loads((tmp_path / "prefix" / "results.json").read_text())
    results["run"]["overrides"].append("teacher.query_prefix='About {subject}.\n\n'")
    (tmp_path / "prefix" / "results.json").write_text(json.dumps(results))
    proc = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "prefix")], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    rows = [line for line in proc.stdout.splitlines() if line.startswith("|")]
    assert len(rows) == 4 and all(row.endswith("|") for row in rows)
    assert r"teacher.query_prefix='About {subject}.\n\n'" in rows[3]
