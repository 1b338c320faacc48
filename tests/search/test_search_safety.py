"""`python -m optical_lightning.search` with untrusted or mistaken inputs: a run directory that names code to
call, an --out that is an input, metrics that would abort pytrec_eval, inconsistent TSVs, a broken cache.
All in-process, with the tiny models and the AfriQA fixture."""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import pytest
import torch
import yaml
from conftest import FIXTURES

from optical_lightning.evaluation import RetrievalEvaluator, load_retrieval_dir
from optical_lightning.evaluation.cache import EmbeddingCache, document_embeddings
from optical_lightning.evaluation.datasets import read_docs, read_queries
from optical_lightning.models.from_config import encoder_from_config
from optical_lightning.models.tiny import tiny_encoder
from optical_lightning.search import main as search_main
from optical_lightning.utils.errors import ConfigError, DataError, ModelLoadError

AFRIQA = FIXTURES / "eval" / "retrieval" / "afriqa-sw-en"
TINY_TEACHER = {"_target_": "optical_lightning.models.tiny.tiny_encoder", "hidden_size": 32, "num_layers": 2,
                "seed": 0, "max_length": 64, "dropout": 0.1}  # as run.py saves teacher=tiny


def one_line_error(capsys, *needles: str) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and len(err.splitlines()) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err
    return err


def fake_run_dir(root: Path, teacher: dict) -> Path:
    """A run directory as `python run.py` leaves it, as far as search reads it: student/ + config.yaml."""
    run = root / "run"
    tiny_encoder(seed=1, projection=True).save_pretrained(run / "student")
    (run / "config.yaml").write_text(yaml.safe_dump({"teacher": teacher, "seed": 0}))
    return run


def afriqa(out: Path, *extra: str) -> list[str]:
    return ["--queries", str(AFRIQA / "queries.tsv"), "--docs", str(AFRIQA / "docs.tsv"), "--out", str(out), *extra]


# ---------------------------------------------------------------- a run directory never calls what it names
WRITE = {"_target_": "optical_lightning.utils.atomic.atomic_write_text", "_args_": ["pwned.txt", "x"]}


@pytest.mark.parametrize("teacher", [
    {**TINY_TEACHER, "hidden_size": WRITE},  # the probe's case: a nested _target_ in an ordinary field
    WRITE,  # the section itself
    {**TINY_TEACHER, "_target_": "optical_lightning.utils.atomic.atomic_write_text", "_args_": ["pwned.txt", "x"]},
    {**TINY_TEACHER, "lora": {"r": WRITE}},  # deeper
    {**TINY_TEACHER, "hidden_size": [WRITE]},  # inside a list
    {**TINY_TEACHER, "path": "pwned.txt"},  # a keyword the builder does not take
], ids=["nested-field", "section", "section-with-args", "deep", "in-list", "unknown-key"])
def test_a_run_directory_cannot_make_search_call_what_its_config_names(tmp_path, capsys, monkeypatch, teacher):
    monkeypatch.chdir(tmp_path)
    run = fake_run_dir(tmp_path, teacher)
    capsys.readouterr()  # the saving's progress bars
    assert search_main(["--run-dir", str(run), *afriqa(tmp_path / "run.trec")]) == 2
    one_line_error(capsys, "config.yaml: teacher")
    assert not (tmp_path / "pwned.txt").exists() and not (tmp_path / "run.trec").exists()


def test_a_plain_saved_teacher_still_searches(tmp_path, capsys):
    run = fake_run_dir(tmp_path, TINY_TEACHER)
    out = tmp_path / "run.trec"
    assert search_main(["--run-dir", str(run), *afriqa(out, "--k", "5")]) == 0, capsys.readouterr().err
    assert len(out.read_text().splitlines()) == 20 * 5
    built = encoder_from_config(TINY_TEACHER, "teacher", frozen=True)
    assert built.frozen and built.dim == 32 and built.max_length == 64


def test_a_run_config_is_read_without_yaml_tags_or_interpolation(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = fake_run_dir(tmp_path, TINY_TEACHER)
    (run / "config.yaml").write_text("teacher: !!python/object/apply:os.system ['touch pwned.txt']\n")
    capsys.readouterr()
    assert search_main(["--run-dir", str(run), *afriqa(tmp_path / "run.trec")]) == 2
    one_line_error(capsys, "not a readable config")
    assert not (tmp_path / "pwned.txt").exists()
    with pytest.raises(ModelLoadError, match="not one of this project's encoder builders"):
        encoder_from_config({"_target_": "builtins.exec", "source": "open('pwned.txt', 'w')"}, "teacher")
    assert not (tmp_path / "pwned.txt").exists()


# ---------------------------------------------------------------- --out
@pytest.mark.parametrize("how", ["same", "relative", "symlink", "hardlink"])
def test_out_that_is_an_input_is_refused_before_anything(tmp_path, capsys, monkeypatch, how):
    docs = tmp_path / "docs.tsv"
    docs.write_bytes((AFRIQA / "docs.tsv").read_bytes())
    before = docs.read_bytes()
    monkeypatch.chdir(tmp_path)
    out = {"same": str(docs), "relative": "./sub/../docs.tsv", "symlink": "link.tsv", "hardlink": "hard.tsv"}[how]
    (tmp_path / "sub").mkdir()
    if how == "symlink":
        os.symlink(docs, tmp_path / "link.tsv")
    if how == "hardlink":
        os.link(docs, tmp_path / "hard.tsv")
    absent = ["--query-model", str(tmp_path / "absent-q"), "--doc-model", str(tmp_path / "absent-d")]
    args = [*absent, "--queries", str(AFRIQA / "queries.tsv"), "--docs", str(docs), "--out", out]
    assert search_main(args) == 2
    one_line_error(capsys, f"--out {out} is the same file as --docs")
    assert docs.read_bytes() == before


@pytest.mark.parametrize("make_out,message", [
    (lambda p: p.mkdir() or p, "is a directory"),
    (lambda p: p / "missing" / "run.trec", "does not exist"),
], ids=["directory", "missing-parent"])
def test_out_that_cannot_be_written_is_refused_before_loading(tmp_path, capsys, make_out, message):
    out = make_out(tmp_path / "out")
    absent = ["--query-model", str(tmp_path / "absent-q"), "--doc-model", str(tmp_path / "absent-d")]
    assert search_main([*absent, *afriqa(out)]) == 2  # the models do not exist: never reached
    one_line_error(capsys, message)


# ---------------------------------------------------------------- metric cutoffs
def test_zero_cutoffs_are_refused_where_metrics_are_parsed(tmp_path, capsys):
    out = tmp_path / "run.trec"
    absent = ["--query-model", str(tmp_path / "absent-q"), "--doc-model", str(tmp_path / "absent-d")]
    assert search_main([*absent, *afriqa(out, "--qrels", str(AFRIQA / "qrels.tsv"), "--metrics", "nDCG@0")]) == 2
    one_line_error(capsys, "nDCG@0", ">= 1")
    assert not out.exists()
    with pytest.raises(ConfigError, match=r"metric P@0: the cutoff @0 must be an integer >= 1"):
        RetrievalEvaluator.from_settings(str(FIXTURES / "eval"), "sw", "afriqa", metrics=["nDCG@10", "P@0"])


# ---------------------------------------------------------------- retrieval TSVs
def test_an_id_given_twice_with_different_texts_is_an_error(tmp_path, caplog):
    docs = tmp_path / "docs.tsv"
    docs.write_text("docid\ttext\nd1\tnews\nd2\tmore news\nd1\tother news\n")
    with pytest.raises(DataError, match=r"docs\.tsv lines 2 and 4: docid 'd1' is given twice with different texts"):
        read_docs(docs)
    queries = tmp_path / "queries.tsv"
    queries.write_text("qid\ttext\nq1\thabari\nq1\thabari\nq1\thabari\nq2\tnini\n")
    with caplog.at_level(logging.WARNING):
        assert read_queries(queries) == {"q1": "habari", "q2": "nini"}
    assert "2 rows repeat an earlier row" in caplog.text


def test_a_tab_inside_a_text_is_an_error_not_a_shorter_text(tmp_path):
    docs = tmp_path / "docs.tsv"
    docs.write_text("docid\ttext\nd1\tnews\nd2\tfirst half\tsecond half\n")
    with pytest.raises(DataError, match=r"docs\.tsv line 3: 3 tab-separated fields but the header names 2"):
        read_docs(docs)
    docs.write_text("docid\ttext\tsource\nd1\tnews\tweb\n")  # extra columns the header names are fine
    assert read_docs(docs) == {"d1": "news"}


def test_judgements_of_absent_documents_are_reported(tmp_path, capsys, caplog):
    qrels = tmp_path / "qrels.tsv"
    lines = (AFRIQA / "qrels.tsv").read_text().splitlines()
    qrels.write_text("\n".join([*lines, "swa-test-0\tghost-doc\t1", "swa-test-1\tghost-doc-2\t0"]) + "\n")
    models = ["--query-model", str(tmp_path / "q"), "--doc-model", str(tmp_path / "d")]
    tiny_encoder(seed=1).save_pretrained(tmp_path / "q")
    tiny_encoder(seed=0).save_pretrained(tmp_path / "d")
    capsys.readouterr()
    assert search_main([*models, *afriqa(tmp_path / "run.trec", "--qrels", str(qrels), "--metrics", "RR@10")]) == 0
    assert "warning: 2 of 22 judged documents in" in capsys.readouterr().err
    qrels.write_text("qid\tdocid\trelevance\nswa-test-0\tghost-doc\t1\n")
    out = tmp_path / "none.trec"
    assert search_main([*models, *afriqa(out, "--qrels", str(qrels), "--metrics", "RR@10")]) == 2
    one_line_error(capsys, "none of its 1 relevant documents is in")
    assert not out.exists()
    folder = tmp_path / "set"  # the evaluation suite's folders warn the same way
    folder.mkdir()
    for name in ("queries.tsv", "docs.tsv"):
        (folder / name).write_bytes((AFRIQA / name).read_bytes())
    (folder / "qrels.tsv").write_text("\n".join([*lines, "swa-test-0\tghost-doc\t1"]) + "\n")
    with caplog.at_level(logging.WARNING):
        load_retrieval_dir(folder)
    assert "1 of 21 judged documents" in caplog.text


# ---------------------------------------------------------------- embedding cache
def test_a_cache_entry_of_the_wrong_shape_is_recomputed_and_overwritten(tmp_path, caplog):
    encoder, texts = tiny_encoder(seed=0, frozen=True), ["one text", "another text", "a third one"]
    cache = EmbeddingCache(tmp_path)
    first = document_embeddings(encoder, texts, "docs", cache, with_tokens=True)
    (entry,) = tmp_path.glob("*.safetensors")
    from safetensors.torch import load_file, save_file

    stored = load_file(entry)
    save_file({**stored, "pooled": stored["pooled"][:2]}, entry)  # rows of another collection
    with caplog.at_level(logging.WARNING):
        again = document_embeddings(encoder, texts, "docs", EmbeddingCache(tmp_path), with_tokens=True)
    assert str(entry) in caplog.text and "does not fit" in caplog.text
    torch.testing.assert_close(again["pooled"], first["pooled"])
    assert load_file(entry)["pooled"].shape == (3, encoder.dim)  # overwritten
    save_file({**stored, "tokens": stored["tokens"][:, :4].contiguous()}, entry)  # tokens of another dimension
    again = document_embeddings(encoder, texts, "docs", EmbeddingCache(tmp_path), with_tokens=True)
    assert [t.shape for t in again["maxsim"]] == [t.shape for t in first["maxsim"]]


def test_an_unwritable_cache_folder_warns_and_goes_on(tmp_path, caplog):
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")  # root ignores permissions; a file in the way blocks any user
    encoder = tiny_encoder(seed=0, frozen=True)
    cache = EmbeddingCache(blocked / "cache")
    with caplog.at_level(logging.WARNING):
        out = document_embeddings(encoder, ["one", "two"], "docs", cache, with_tokens=False)
        document_embeddings(encoder, ["three"], "docs3", cache, with_tokens=False)
    assert out["pooled"].shape == (2, encoder.dim)
    assert len(re.findall("cannot write the embedding cache", caplog.text)) == 1  # warned once
    assert "paths.cache_dir" in caplog.text
