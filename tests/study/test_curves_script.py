"""experiments/curves.py: several runs' curves.json drawn on the same panels, with clear errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from optical_lightning.reporting.plots import learning_curves

ROOT = Path(__file__).resolve().parents[2]


def _run_dir(tmp_path: Path, name: str, distill: str, values: list[float]) -> Path:
    run = tmp_path / name
    run.mkdir()
    rows = [{"step": 100 * i, "bitext-val/P@1": v, "bitext-val/RR@10": v} for i, v in enumerate(values)]
    (run / "curves.json").write_text(json.dumps({"every_n_steps": 100, "rows": rows}))
    (run / "results.json").write_text(json.dumps({"config": {"distill": {"name": distill}}}))
    return run


def _script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "experiments/curves.py", *args], cwd=ROOT, capture_output=True, text=True)


def test_two_runs_draw_one_png_labelled_by_their_loss(tmp_path):
    a = _run_dir(tmp_path, "a", "optical", [0.90, 0.93, 0.95])
    b = _run_dir(tmp_path, "b", "mse", [0.90, 0.91])
    out = tmp_path / "both.png"
    done = _script(str(a), str(b), "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 5000


@pytest.mark.slow  # ~31 s: two script starts (make test-full); the drawing test keeps the script in the default suite
def test_a_run_without_a_curve_or_a_clash_of_labels_is_a_one_line_error(tmp_path):
    a = _run_dir(tmp_path, "a", "optical", [0.9])
    b = _run_dir(tmp_path, "b", "optical", [0.8])
    clash = _script(str(a), str(b), "--out", str(tmp_path / "x.png"))
    assert clash.returncode != 0 and "--labels" in clash.stderr and not (tmp_path / "x.png").exists()
    (tmp_path / "empty").mkdir()
    missing = _script(str(a), str(tmp_path / "empty"), "--labels", "A", "B", "--out", str(tmp_path / "y.png"))
    assert missing.returncode != 0 and "every_n_steps" in missing.stderr


def test_an_empty_curve_is_refused():
    with pytest.raises(ValueError, match="at least one evaluated step"):
        learning_curves({"optical": []}, "unused.png")
