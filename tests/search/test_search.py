"""`python -m optical_lightning.search` as a user runs it: TREC output, metrics, and errors."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from conftest import FIXTURES, ROOT, SW_BITEXT, TINY, cli_env, run_cli

from optical_lightning.models.tiny import tiny_encoder
from optical_lightning.search import main as search_main

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
                  "--metrics", "nDCG@10", "RR@10", "--scoring", "maxsim", cwd=tmp_path)
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


def test_search_errors_are_one_line_and_write_nothing(tmp_path, capsys):
    out = tmp_path / "run.trec"
    assert search_main(["--run-dir", str(tmp_path), *afriqa_args(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "not a complete run directory" in err
    assert search_main(["--query-model", "x", "--doc-model", "y", "--queries", str(tmp_path / "none.tsv"),
                        "--docs", str(AFRIQA / "docs.tsv"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "evaluation file not found" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def models(tmp_path):
    tiny_encoder(seed=1).save_pretrained(tmp_path / "q")
    tiny_encoder(seed=0).save_pretrained(tmp_path / "d")
    return ["--query-model", str(tmp_path / "q"), "--doc-model", str(tmp_path / "d")]


def afriqa_args(out):
    return ["--queries", str(AFRIQA / "queries.tsv"), "--docs", str(AFRIQA / "docs.tsv"), "--out", str(out)]


@pytest.mark.parametrize("extra,message", [
    (["--k", "0"], r"error: --k=0: must be >= 1"),
    (["--k", "-3"], r"error: --k=-3: must be >= 1"),
    (["--k", "10", "--qrels", str(AFRIQA / "qrels.tsv")], r"error: --k=10 retrieves fewer documents than the metrics need"),
    (["--metrics", "foo", "--qrels", str(AFRIQA / "qrels.tsv")], r"error: unknown metric in \['foo'\]"),
])
def test_bad_arguments_fail_before_any_model_loads_or_file_is_written(tmp_path, capsys, extra, message):
    out = tmp_path / "run.trec"
    absent = ["--query-model", str(tmp_path / "absent-q"), "--doc-model", str(tmp_path / "absent-d")]
    assert search_main([*absent, *afriqa_args(out), *extra]) == 2  # the models do not exist: never reached
    err = capsys.readouterr().err.strip()
    assert re.match(message, err) and len(err.splitlines()) == 1, err
    assert not out.exists()


def test_judgements_of_queries_that_are_not_searched_are_left_out_with_a_warning(tmp_path, capsys):
    args = [*models(tmp_path), *afriqa_args(tmp_path / "run.trec"), "--metrics", "R@100", "RR@10"]
    assert search_main([*args, "--qrels", str(AFRIQA / "qrels.tsv")]) == 0
    clean = capsys.readouterr()
    diluted = tmp_path / "qrels.tsv"  # as many judgements again, for queries the queries file does not have
    lines = (AFRIQA / "qrels.tsv").read_text().splitlines()
    diluted.write_text("\n".join([*lines, *(f"ghost-{i}\tswa-test-0\t1" for i in range(len(lines) - 1))]) + "\n")
    assert search_main([*args, "--qrels", str(diluted)]) == 0
    both = capsys.readouterr()
    assert "warning: 20 of 40 queries judged in" in both.err and "the metrics leave them out" in both.err
    assert both.out.splitlines()[-6:] == clean.out.splitlines()[-6:]  # the same metrics table, R@100 not halved
    assert "R@100" in clean.out and "1.0000" in clean.out
