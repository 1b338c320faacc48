"""`python -m optical_lightning.search` as a user runs it: TREC output, metrics, and errors."""

from __future__ import annotations

import subprocess
import sys

from conftest import FIXTURES, ROOT, SW_BITEXT, TINY, cli_env, run_cli

from optical_lightning.models.tiny import tiny_encoder

AFRIQA = FIXTURES / "eval" / "retrieval" / "afriqa-sw-en"


def search(*args, cwd):
    return subprocess.run([sys.executable, "-m", "optical_lightning.search", *map(str, args)], cwd=cwd,
                          env=cli_env(PYTHONPATH=str(ROOT)), capture_output=True, text=True, timeout=300)


def test_search_with_explicit_models_writes_trec_and_metrics(tmp_path):
    tiny_encoder(seed=1).save_pretrained(tmp_path / "q")
    tiny_encoder(seed=0).save_pretrained(tmp_path / "d")
    out = tmp_path / "run.trec"
    proc = search("--query-model", tmp_path / "q", "--doc-model", tmp_path / "d", "--queries", AFRIQA / "queries.tsv",
                  "--docs", AFRIQA / "docs.tsv", "--qrels", AFRIQA / "qrels.tsv", "--out", out, "--k", 10,
                  "--scoring", "maxsim", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = out.read_text().splitlines()
    assert len(lines) == 20 * 10
    qid, q0, docid, rank, score, tag = lines[0].split()
    assert q0 == "Q0" and rank == "1" and tag == "optical-lightning" and float(score)
    assert "nDCG@10" in proc.stdout and "RR@10" in proc.stdout


def test_search_from_a_run_directory(tmp_path):
    proc = run_cli(*TINY, f"data.train={SW_BITEXT}", "trainer.max_steps=2", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (run_dir,) = [p.parent for p in tmp_path.glob("outputs/distill/runs/*/results.json")]
    out = tmp_path / "run.trec"
    proc = search("--run-dir", run_dir, "--queries", AFRIQA / "queries.tsv", "--docs", AFRIQA / "docs.tsv",
                  "--out", out, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert len({line.split()[0] for line in out.read_text().splitlines()}) == 20


def test_search_errors_are_one_line_and_write_nothing(tmp_path):
    out = tmp_path / "run.trec"
    proc = search("--run-dir", tmp_path, "--queries", AFRIQA / "queries.tsv", "--docs", AFRIQA / "docs.tsv",
                  "--out", out, cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.startswith("error: ") and "not a complete run directory" in proc.stderr
    proc = search("--query-model", "x", "--doc-model", "y", "--queries", tmp_path / "none.tsv", "--docs",
                  AFRIQA / "docs.tsv", "--out", out, cwd=tmp_path)
    assert proc.returncode == 2 and "evaluation file not found" in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists()
