"""The translate-test baseline: FreeDict's dictd files parsed into ``eval/dictionaries/sw-en.tsv``,
word-by-word translation, BM25, and the ``translate_dense`` / ``translate_bm25`` stages of a run.

The dictd pair here is written by hand in the real format (entries copied from FreeDict swh-eng
0.4.4, GPL-2.0-or-later); the real package is parsed when ``make data`` has cached it (or, in the
``slow`` test, downloaded with ``apt-get download``).
"""

from __future__ import annotations

import gzip
import json
import logging
import shutil
import string
import subprocess
from collections import Counter
from pathlib import Path

import pytest
from conftest import FIXTURES, ROOT, TINY_MODELS, compose_config
from rich.console import Console

from optical_lightning.evaluation import Encoders, RetrievalEvaluator
from optical_lightning.evaluation.mcqa import MCQAEvaluator
from optical_lightning.evaluation.translate_test import (
    WordTranslator,
    bm25_search,
    first_translation,
    load_translator,
)
from optical_lightning.models.tiny import tiny_encoder
from optical_lightning.prepare import build as build_module
from optical_lightning.prepare.build import BuildConfig, build
from optical_lightning.prepare.fetch import debian_package, unpack_deb
from optical_lightning.prepare.records import SourceContext, SourceSkipped
from optical_lightning.prepare.sources import freedict
from optical_lightning.prepare.tsv import read_tsv
from optical_lightning.reporting.summary import STAGES, print_summary, stage_columns
from optical_lightning.training.pipeline import run

EVAL = FIXTURES / "eval"
ENTRIES = [  # (index headwords, entry text); non-ASCII IPA checks that offsets count bytes
    (["00-database-info"], "00-database-info\nA tiny Swahili-English test dictionary\n"),
    (["abiria"], "abiria /ˌabirˈia/ <n> (pl: {maabiria})\n\npassenger\n"),
    (["acha"], "acha /ˈatʃa/ <v>\n1.\nleave\n2.\nquit, stop doing sth\n"),
    (["afisa", "ofisa"], "afisa, ofisa /afˈisa/ /ofˈisa/ <n> (pl: {maafisa}, {maofisa})\n\nofficer\n"),
    (["agano"], "agano /aɡˈano/ <n> (pl: {maagano})\n1.\npromise\n2.\nagreement, contract\n   See also: {ahadi}\n\n"),
    (["ake"], "ake /ˈake/ <pron, poss>\n\nhis\n; hers\n; its\n"),
    (["la"], "la /lˈa/ <v>\n\neat\n"),
    (["la"], "la /lˈa/ <interj>\n\nno\n   Synonym: {hapana}\n\n"),
    (["maagano"], "maagano /mˌaaɡˈano/ <n>\n\n Plural of {agano}: 1. promise 2. agreement,\n contract. See also: ,\n"
                  " {ahadi}\n\n"),
    (["mji mkuu"], "mji mkuu /mɟi mkˈuu/ <n>\n\ncapital city\n"),
    (["zaliwa"], "zaliwa /zalˈiwa/ <v>\n\nbe born\n"),
]
DIGITS = string.ascii_uppercase + string.ascii_lowercase + string.digits + "+/"


def b64(n: int) -> str:
    """A dictd index number (base 64, most significant digit first)."""
    out = DIGITS[n % 64]
    while n >= 64:
        n //= 64
        out = DIGITS[n % 64] + out
    return out


def write_dictd(folder: Path, stem: str = "freedict-swh-eng") -> tuple[Path, Path]:
    """``<stem>.index`` and a gzip ``<stem>.dict.dz`` holding :data:`ENTRIES`."""
    data, index = b"", []
    for heads, text in ENTRIES:
        raw = text.encode("utf-8")
        index += [f"{head}\t{b64(len(data))}\t{b64(len(raw))}" for head in heads]
        data += raw
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{stem}.index").write_text("\n".join(sorted(index)) + "\n", encoding="utf-8")
    (folder / f"{stem}.dict.dz").write_bytes(gzip.compress(data))
    return folder / f"{stem}.index", folder / f"{stem}.dict.dz"


def test_dictd_numbers_are_base64_most_significant_first():
    assert [freedict.dictd_number(s) for s in ("A", "B", "BA", "DX+", "ilH")] == [0, 1, 64, 13822, 141639]
    assert all(freedict.dictd_number(b64(n)) == n for n in (0, 63, 64, 4095, 4096, 137111))


def test_parse_dictd_keeps_sense_order_variants_and_plurals(tmp_path):
    entries = freedict.read_dictd(*write_dictd(tmp_path))
    assert "00-database-info" not in entries
    assert entries["acha"] == ["leave", "quit, stop doing sth"]  # numbered senses, in order
    assert entries["la"] == ["eat", "no"]  # two entries of one headword, notes and synonyms left out
    assert entries["ake"] == ["his; hers; its"]  # `; ` continuation lines belong to the sense
    assert entries["afisa"] == entries["ofisa"] == entries["maafisa"] == entries["maofisa"] == ["officer"]
    assert entries["maabiria"] == ["passenger"]  # only listed as (pl: ...) on the singular's line
    assert entries["maagano"] == ["promise", "agreement, contract"]  # its own wrapped `Plural of` summary
    assert entries["mji mkuu"] == ["capital city"] and list(entries) == sorted(entries)


@pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="needs dpkg-deb")
def test_make_data_writes_the_dictionary_and_records_it(tmp_path, monkeypatch):
    pkg = tmp_path / "pkg"
    (pkg / "DEBIAN").mkdir(parents=True)
    (pkg / "DEBIAN/control").write_text("Package: dict-freedict-swh-eng\nVersion: 2022.04.21-1\nArchitecture: all\n"
                                        "Maintainer: t <t@example.org>\nDescription: toy\n")
    write_dictd(pkg / "usr/share/dictd")
    (pkg / "usr/share/doc/x").mkdir(parents=True)
    (pkg / "usr/share/doc/x/changelog").write_text("not unpacked\n")
    cache = tmp_path / "cache"
    (cache / "debian").mkdir(parents=True)
    subprocess.run(["dpkg-deb", "--build", "--root-owner-group", str(pkg),
                    str(cache / "debian" / "dict-freedict-swh-eng_2022.04.21-1_all.deb")], check=True, capture_output=True)
    monkeypatch.setattr(build_module, "SOURCES", {"freedict": freedict})
    lines: list[str] = []
    manifest = build(BuildConfig(out=tmp_path / "data", cache=cache, langs=("sw", "so"), sources=("freedict",),
                                 offline=True), log=lines.append)
    rows = dict(read_tsv(tmp_path / "data/eval/dictionaries/sw-en.tsv", ("sw", "en")))
    assert rows["acha"] == "leave | quit, stop doing sth" and rows["maabiria"] == "passenger"
    assert lines == ["freedict: ok (Debian dict-freedict-swh-eng 2022.04.21-1 (dict-freedict-swh-eng_2022.04.21-1_all.deb)): "
                     "sw-en dictionary 13 headwords"]
    entry = json.loads((tmp_path / "data/manifest.json").read_text())["eval"]["dictionaries"]["sw-en"]
    assert entry == manifest["eval"]["dictionaries"]["sw-en"]
    assert entry["headwords"] == 13 and entry["senses"] == 17 and entry["licence"].startswith("GPL-2.0-or-later")
    assert entry["file"] == "eval/dictionaries/sw-en.tsv" and manifest["sources"]["freedict"]["dictionaries"] == ["sw-en"]
    with pytest.raises(SourceSkipped, match="no dictionary from so"):  # FreeDict has no Somali
        freedict.load(SourceContext(cache, ("so",), offline=True))


def _check_real(deb: Path) -> None:
    folder = unpack_deb(deb, ["usr/share/dictd/freedict-swh-eng.*"]) / "usr/share/dictd"
    entries = freedict.read_dictd(folder / "freedict-swh-eng.index", folder / "freedict-swh-eng.dict.dz")
    assert len(entries) >= 2500 and entries["abiria"] == ["passenger"] and entries["maabiria"] == ["passenger"]
    assert entries["acha"][:2] == ["leave", "quit, stop doing sth"] and entries["mji mkuu"] == ["capital city"]
    assert entries["wazungu"] == ["European"]  # the plural of mzungu "European", not of mzungu "rarity"


def test_the_real_freedict_package_parses():
    cached = sorted((ROOT / "data" / ".cache" / "debian").glob("dict-freedict-swh-eng_*.deb"))
    if not cached or shutil.which("dpkg-deb") is None:
        pytest.skip("dict-freedict-swh-eng is not in data/.cache/debian (`make data` caches it) or no dpkg-deb")
    _check_real(cached[-1])


@pytest.mark.slow  # downloads 87 KB with apt-get
def test_the_real_freedict_package_downloads_and_parses(tmp_path):
    try:
        artifact = debian_package("dict-freedict-swh-eng", tmp_path)
    except SourceSkipped as e:
        pytest.skip(f"apt-get download is not possible here: {e}")
    _check_real(artifact.path)


# --- word-by-word translation and BM25 ---------------------------------------------------------


def test_first_translation_is_the_first_alternative_of_the_first_sense():
    assert first_translation("leave | quit, stop doing sth") == "leave"
    assert first_translation("(paternal) uncle") == "uncle" and first_translation("his; hers; its") == "his"


def test_word_translator_handles_phrases_prefixes_names_and_punctuation(tmp_path):
    translator = WordTranslator({w: first_translation(" | ".join(s))
                                 for w, s in freedict.read_dictd(*write_dictd(tmp_path)).items()})
    counts: Counter = Counter()
    out = translator.translate("Abiria alizaliwa katika Nairobi, mji mkuu wa Kenya, 1990?", counts)
    assert out == "passenger be born katika Nairobi, capital city wa Kenya, 1990?"
    assert counts == {"translated": 4, "by_suffix": 1, "kept": 5}  # a-li-zaliwa; mji mkuu is two words
    assert translator.translate("Mji, mkuu") == "Mji, mkuu"  # a phrase never spans punctuation
    assert translator.translate("wala") == "wala"  # `la` is shorter than a stem may be


def test_bm25_ranks_the_matching_document_first_and_returns_a_run():
    docs = ["The cat sat on the mat.", "Nairobi is the capital city of Kenya.", "Dogs are loyal animals."]
    run_ = bm25_search(["capital city Kenya", "the of", "loyal dogs"], docs, ["q1", "q2", "q3"], ["d1", "d2", "d3"], k=100)
    assert list(run_) == ["q1", "q2", "q3"]
    assert next(iter(run_["q1"])) == "d2" and list(run_["q3"]) == ["d3"]  # only documents sharing a term
    assert run_["q2"] == {}  # stopwords only
    assert all(isinstance(s, float) and s > 0 for hits in run_.values() for s in hits.values())


# --- the evaluation stages ---------------------------------------------------------------------


def write_dictionary(path: Path) -> Path:
    path.write_text("sw\ten\nnani\twho\nnchi\tcountry, state\ngani\twhat kind\nkwanza\tfirst\n"
                    "dalili\tsymptom\nmaumivu\tpain | ache\nanzishwa\tbe founded\n", encoding="utf-8")
    return path


def test_retrieval_evaluates_translate_test_stages_on_retrieval_and_translation_sets(tmp_path, caplog):
    suite = RetrievalEvaluator.from_settings(str(EVAL), "sw", ["afriqa", "tico19-test"], cache_dir=str(tmp_path / "cache"))
    translator, why = load_translator(write_dictionary(tmp_path / "sw-en.tsv"), "sw")
    assert why is None
    with caplog.at_level(logging.INFO, logger="optical_lightning.evaluation.retrieval"):
        suite.load()
        teacher = tiny_encoder(seed=0, frozen=True)
        encoders = Encoders(tiny_encoder(seed=1), teacher, translator)
        dense = suite(encoders, "translate_dense")
        bm25 = suite(encoders, "translate_bm25")
    assert set(dense) == set(bm25) == {"afriqa-sw-en", "tico19-test-sw-en"}
    assert set(bm25["afriqa-sw-en"]) == {"nDCG@10", "RR@10", "R@100", "P@1"}
    assert all(0.0 <= v <= 1.0 for m in (*dense.values(), *bm25.values()) for v in m.values())
    assert len(suite.per_query["afriqa-sw-en/translate_bm25"]) == 20
    assert suite.translations["afriqa-sw-en"]["swa-test-1"] == "Chama cha FORD-Kenya be founded na who?"
    assert len([r for r in caplog.records if r.getMessage().startswith("translate-test afriqa-sw-en:")]) == 1
    assert suite(Encoders(teacher, teacher), "translate_dense") == {}  # no dictionary, no translate-test row
    suite.sets.pseudo.add("tico19-test-sw-en")  # a teacher-graded set (afriqa-passages-dev) is left out
    assert set(suite(encoders, "translate_bm25")) == {"afriqa-sw-en"}


@pytest.mark.parametrize("lang,why", [("so", "FreeDict has none for so"), ("sw", "run `make data`")])
def test_translate_test_without_a_dictionary_is_skipped_with_one_line(lang, why, tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="optical_lightning.evaluation.translate_test"):
        translator, reason = load_translator(tmp_path / f"{lang}-en.tsv", lang)
    assert translator is None and why in reason
    assert len([r for r in caplog.records if "translate_test skipped" in r.getMessage()]) == 1


def test_summary_columns_grow_only_for_runs_with_translate_test():
    ordinary = {"afriqa-sw-en": {"zero_shot": {"P@1": 0.5}, "teacher_en": {"P@1": 0.9}}}
    assert stage_columns(ordinary) == STAGES
    with_baselines = {**ordinary, "tico19-test-sw-en": {"translate_bm25": {"P@1": 0.4}}}
    assert stage_columns(with_baselines) == (*STAGES, "translate_bm25")


MCQA = FIXTURES / "mcqa" / "afrimmlu"


def test_mcqa_translate_test_with_a_perfect_translation_answers_as_the_teacher():
    """Oracle: "translating" each Swahili question into its English original must reproduce the teacher's
    own answers exactly (agreement 1, the teacher row's accuracy); the identity translation must not."""
    mcqa = MCQAEvaluator.from_settings("afrimmlu-sw", str(MCQA / "sw.test.jsonl"), str(MCQA / "en.test.jsonl"),
                                       teacher_row=True)
    mcqa.load()
    questions = mcqa.questions
    english = {q.question: e.question for q, e in zip(questions, mcqa.english)}
    teacher = tiny_encoder(seed=0)
    perfect = mcqa.evaluate_translated(english.__getitem__, teacher)["afrimmlu-sw"]
    row = mcqa.evaluate(teacher, teacher, "teacher_en")["afrimmlu-sw"]
    assert perfect["agreement"] == 1.0 and perfect["accuracy"] == row["accuracy"] and perfect["n"] == len(questions)
    untranslated = mcqa.evaluate_translated(lambda text: text, teacher)["afrimmlu-sw"]
    assert untranslated["agreement"] < 1.0
    assert set(mcqa.details()["stages"]["translate_dense"]["afrimmlu-sw"]) == {"per_group", "per_subject", "predicted"}


def test_run_reports_the_translate_test_stages(tmp_path):
    cfg = compose_config(*TINY_MODELS, "distill=none", f"retrieval.data_dir={EVAL}", "retrieval.sets=[afriqa,tico19-test]",
                         "eval.translate_test=true", f"eval.dictionary={write_dictionary(tmp_path / 'sw-en.tsv')}",
                         f"mcqa.path={MCQA / 'sw.test.jsonl'}", f"mcqa.reference={MCQA / 'en.test.jsonl'}",
                         f"paths.root_dir={tmp_path}", output_dir=tmp_path / "run")
    results = run(cfg)
    assert set(results["metrics"]["afrimmlu-sw"]) == {"teacher_en", "translate_dense", "zero_shot"}  # no BM25 row
    assert 0 <= results["metrics"]["afrimmlu-sw"]["translate_dense"]["agreement"] <= 1
    assert set(results["metrics"]["afriqa-sw-en"]) == {"teacher_en", "translate_dense", "translate_bm25", "zero_shot"}
    assert set(results["metrics"]["tico19-test-sw-en"]) == {"translate_dense", "translate_bm25", "zero_shot"}
    assert "afriqa-sw-en/translate_bm25/nDCG@10" in results["flat"]
    assert "tico19-test-sw-en/translate_dense" in json.loads((tmp_path / "run" / "per_query.json").read_text())
    console = Console(record=True, width=200)
    print_summary(results, console)
    table = console.export_text()
    assert "translate-dense" in table and "translate-bm25" in table


def test_the_default_dictionary_path_follows_the_language(tmp_path):
    for lang in ("sw", "so"):
        cfg = compose_config(f"lang={lang}", f"paths.data_dir={tmp_path}", output_dir=tmp_path / "run")
        assert cfg.eval.dictionary == f"{tmp_path}/eval/dictionaries/{lang}-en.tsv" and cfg.eval.translate_test is False
