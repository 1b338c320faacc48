"""Retrieval evaluation against hand-computed metrics, brute-force scoring and real fixture sets."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import FIXTURES, SW_BITEXT

from optical_lightning.evaluation import (
    Encoders,
    RetrievalEvaluator,
    RetrievalSets,
    evaluate_run,
    load_retrieval_dir,
    load_translation_set,
)
from optical_lightning.evaluation.cache import EmbeddingCache, pack, unpack
from optical_lightning.evaluation.datasets import RetrievalSet
from optical_lightning.evaluation.scoring import maxsim_search, pooled_search
from optical_lightning.models.tiny import tiny_encoder
from optical_lightning.utils.errors import ConfigError, DataError

EVAL = FIXTURES / "eval"


def retrieval(data_dir, lang: str, sets, **settings) -> RetrievalEvaluator:
    """The retrieval evaluator as conf/retrieval builds it."""
    return RetrievalEvaluator.from_settings(str(data_dir), lang, sets, **settings)


def test_metrics_match_hand_computation():
    qrels = {"q1": {"d3": 1}, "q2": {"d1": 1}, "q3": {"d9": 1}}
    run = {"q1": {"d1": 3.0, "d2": 2.0, "d3": 1.0}, "q2": {"d1": 5.0, "d2": 1.0}}  # q3 retrieved nothing
    mean, per_query = evaluate_run(run, qrels, ["nDCG@10", "RR@10", "R@100", "P@1"])
    assert per_query["q1"]["nDCG@10"] == pytest.approx(1 / math.log2(4))  # relevant at rank 3
    assert per_query["q1"]["RR@10"] == pytest.approx(1 / 3) and per_query["q2"]["P@1"] == 1.0
    assert per_query["q3"] == {"nDCG@10": 0.0, "RR@10": 0.0, "R@100": 0.0, "P@1": 0.0}
    assert mean["RR@10"] == pytest.approx((1 / 3 + 1 + 0) / 3)
    assert mean["R@100"] == pytest.approx(2 / 3)
    with pytest.raises(ConfigError, match="unknown metric"):
        evaluate_run(run, qrels, ["nDCG@ten"])


def test_pooled_search_equals_brute_force_ranking():
    g = torch.Generator().manual_seed(0)
    q, d = F.normalize(torch.randn(7, 16, generator=g), dim=-1), F.normalize(torch.randn(50, 16, generator=g), dim=-1)
    run = pooled_search(q, d, [f"q{i}" for i in range(7)], [f"d{j}" for j in range(50)], k=5, chunk=3)
    for i in range(7):
        best = torch.argsort(q[i] @ d.T, descending=True)[:5].tolist()
        assert list(run[f"q{i}"]) == [f"d{j}" for j in best]


def test_faiss_search_gives_the_exact_ranking():
    pytest.importorskip("faiss", reason="faiss-cpu is installed by `make install` (extra `search`)")
    g = torch.Generator().manual_seed(1)
    q, d = F.normalize(torch.randn(40, 32, generator=g), dim=-1), F.normalize(torch.randn(3000, 32, generator=g), dim=-1)
    qids, docids = [f"q{i}" for i in range(40)], [f"d{j}" for j in range(3000)]
    exact, faiss_run = pooled_search(q, d, qids, docids, k=100), pooled_search(q, d, qids, docids, k=100, use_faiss=True)
    for qid in qids:
        assert list(faiss_run[qid]) == list(exact[qid])
        assert max(abs(faiss_run[qid][x] - exact[qid][x]) for x in exact[qid]) < 1e-5


@pytest.mark.parametrize("block_tokens", [5, 8, 10_000])  # a document longer than a block; several; one block
def test_maxsim_equals_a_loop_over_pairs(block_tokens: int):
    g = torch.Generator().manual_seed(1)
    qs = [F.normalize(torch.randn(n, 8, generator=g), dim=-1) for n in (3, 5, 1)]
    ds = [F.normalize(torch.randn(n, 8, generator=g), dim=-1) for n in (4, 2, 7, 3, 6)]
    run = maxsim_search(qs, ds, ["a", "b", "c"], [f"d{j}" for j in range(5)], k=5, query_batch=2,
                       block_tokens=block_tokens)
    for qid, qt in zip(["a", "b", "c"], qs):
        for j, dt in enumerate(ds):
            expected = sum(max(float(qv @ dv) for dv in dt) for qv in qt)
            assert run[qid][f"d{j}"] == pytest.approx(expected, abs=1e-5)


def test_identical_texts_are_found_first():
    # an oracle that needs no trained model: a text retrieves itself with the same encoder
    rs = load_translation_set(EVAL / "translation" / "sw" / "tico19-test.tsv", "sw")
    same = RetrievalSet("self", rs.docs, rs.docs, {q: {q: 1} for q in rs.docs}, docs_key="self")
    enc = tiny_encoder(seed=3, frozen=True)
    suite = retrieval(EVAL, "sw", [], scoring=["pooled", "maxsim"])
    suite.sets.sets = {"self": same}
    results = suite(Encoders(enc, enc), "zero_shot")
    assert results["self"]["P@1"] == pytest.approx(1.0) and results["self/maxsim"]["P@1"] == pytest.approx(1.0)


def test_real_fixture_sets_load():
    afriqa = load_retrieval_dir(EVAL / "retrieval" / "afriqa-sw-en")
    assert len(afriqa.queries) == 20 and len(afriqa.docs) == 80 and len(afriqa.queries_en) == 20
    tico = load_translation_set(EVAL / "translation" / "so" / "tico19-test.tsv", "so")
    assert len(tico.queries) == 40 and all(tico.qrels[q] == {q: 1} for q in tico.queries)


def test_suite_runs_every_stage_and_skips_missing_sets(tmp_path):
    suite = retrieval(EVAL, "sw", ["afriqa", "udhr", "tico19-test"], cache_dir=str(tmp_path / "cache"))
    suite.load()
    assert set(suite.sets.sets) == {"afriqa-sw-en", "tico19-test-sw-en"} and "udhr" in suite.skipped
    teacher, student = tiny_encoder(seed=0, frozen=True), tiny_encoder(seed=1)
    upper = suite(Encoders(student, teacher), "teacher_en")
    assert set(upper) == {"afriqa-sw-en"}  # only AfriQA has English versions of its queries
    zero = suite(Encoders(student, teacher), "zero_shot")
    assert set(zero) == {"afriqa-sw-en", "tico19-test-sw-en"}
    assert all(0.0 <= v <= 1.0 for m in zero.values() for v in m.values())
    assert len(list((tmp_path / "cache").glob("*.safetensors"))) == 2  # one entry per collection


def test_suite_with_no_set_present_says_how_to_get_data(tmp_path):
    with pytest.raises(DataError, match="run `make data`"):
        retrieval(tmp_path, "so", ["afriqa", "flores200-devtest"]).load()
    with pytest.raises(ConfigError, match="retrieval.scoring"):
        retrieval(tmp_path, "so", [], scoring=["bm25"])


def test_embedding_cache_computes_once_and_survives_corruption(tmp_path):
    cache = EmbeddingCache(tmp_path)
    calls = []

    def compute():
        calls.append(1)
        return pack([torch.ones(2, 4), torch.zeros(3, 4)])

    first = cache.get_or_compute({"k": 1}, compute)
    second = cache.get_or_compute({"k": 1}, compute)
    assert len(calls) == 1 and [t.shape for t in unpack(second)] == [(2, 4), (3, 4)]
    torch.testing.assert_close(first["offsets"], second["offsets"])
    cache.path({"k": 1}).write_bytes(b"garbage")
    cache.get_or_compute({"k": 1}, compute)
    assert len(calls) == 2 and not [p for p in Path(tmp_path).iterdir() if p.name.startswith(".")]


def test_malformed_qrels_are_reported(tmp_path):
    (tmp_path / "queries.tsv").write_text("qid\ttext\nq1\thabari\n")
    (tmp_path / "docs.tsv").write_text("docid\ttext\nd1\tnews\n")
    (tmp_path / "qrels.tsv").write_text("qid\tdocid\trelevance\nq1\td1\tyes\n")
    with pytest.raises(DataError, match=r"qrels\.tsv line 2: relevance 'yes' is not an integer"):
        load_retrieval_dir(tmp_path)
    (tmp_path / "qrels.tsv").write_text("qid\tdocid\trelevance\nq1\td7\t1\n")
    with pytest.raises(DataError, match="no query has a relevant document"):
        load_retrieval_dir(tmp_path)


def test_a_single_value_for_a_list_setting_is_a_one_element_list():
    suite = retrieval(EVAL, "sw", "afriqa", scoring="maxsim", metrics="nDCG@10")  # retrieval.sets=afriqa ...
    assert (suite.sets.names, suite.scoring, suite.metrics) == (["afriqa"], ["maxsim"], ["nDCG@10"])
    suite.load()
    assert set(suite.sets.sets) == {"afriqa-sw-en"}


def test_when_no_requested_set_exists_the_error_lists_those_that_do():
    with pytest.raises(DataError, match=r"none of the evaluation sets \['nonexistent'\] exists for lang=sw .*"
                                        r"the sets for sw are: afriqa, tico19-test") as e:
        retrieval(EVAL, "sw", ["nonexistent"]).load()
    assert "make data" not in str(e.value)  # it cannot build a set nobody ships


@pytest.mark.parametrize("kwargs,message", [
    ({"top_k": 0}, r"retrieval\.top_k=0: must be >= 1"),
    ({"top_k": 10}, r"retrieval\.top_k=10 retrieves fewer documents than the metrics need \(100 for R@100\)"),
    ({"max_queries": 0}, r"retrieval\.max_queries=0: must be >= 1 \(or null\)"),
    ({"max_queries": -1}, r"retrieval\.max_queries=-1: must be >= 1"),
    ({"max_documents": 0}, r"retrieval\.max_documents=0: must be >= 1 \(or null\)"),
    ({"batch_size": "big"}, r"retrieval\.batch_size='big': must be an integer"),
])
def test_values_that_would_give_empty_or_zero_metrics_are_refused(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        retrieval(EVAL, "sw", ["afriqa"], **kwargs)


def test_a_document_cap_keeps_every_judged_document_and_draws_the_rest_by_seed():
    full = RetrievalSets(str(EVAL), "sw", ["afriqa"], max_queries=2).load()["afriqa-sw-en"]
    judged = {d for rels in full.qrels.values() for d in rels}
    capped = RetrievalSets(str(EVAL), "sw", ["afriqa"], max_queries=2, max_documents=len(judged) + 1).load()["afriqa-sw-en"]
    assert judged < set(capped.docs) <= set(full.docs) and len(capped.docs) == len(judged) + 1
    assert capped.queries == full.queries and capped.qrels == full.qrels
    again = RetrievalSets(str(EVAL), "sw", ["afriqa"], max_queries=2, max_documents=len(judged) + 1).load()["afriqa-sw-en"]
    assert again.docs == capped.docs and again.docs_key == capped.docs_key != full.docs_key  # cached apart
    assert full.subsample_documents(len(full.docs), seed=0) is full  # a cap above the collection changes nothing
    assert len(full.subsample_documents(1, seed=0).docs) == len(judged)  # judged documents are never dropped


def test_a_domain_set_joins_the_run_when_present_and_is_never_an_error_when_absent(tmp_path):
    suite = retrieval(EVAL, "sw", ["afriqa"], domain_sets=["tico19-test", "afriqa"])
    suite.load()
    assert sorted(suite.sets.sets) == ["afriqa-sw-en", "tico19-test-sw-en"]  # listed once, though named twice
    alone = retrieval(tmp_path, "sw", [], domain_sets=["afriqa-questions-dev"])
    alone.load()
    assert not alone.active and "afriqa-questions-dev" in alone.skipped  # retrieval.sets=[] still trains


def test_role_pairings_give_the_ceilings_a_perfect_student_would_reach(tiny_pair):
    from optical_lightning_study.ceilings import english_versions, role_pairings

    teacher, student = tiny_pair
    sets = RetrievalSets(str(EVAL), "sw", ["tico19-test", "afriqa"]).load()
    tico, afriqa = sets["tico19-test-sw-en"], sets["afriqa-sw-en"]
    english = english_versions(tico)  # a translation set: the English version of a query is its relevant document
    qid = next(iter(tico.qrels))
    assert english[qid] == tico.docs[next(iter(tico.qrels[qid]))] and english_versions(afriqa) == afriqa.queries_en
    rows = role_pairings(student, teacher, tico, ["P@1"], translation=True)
    assert list(rows) == ["x query -> en passage", "x query -> en query",
                          "en query -> en passage", "en passage -> en passage"]
    assert rows["en passage -> en passage"]["P@1"] == 1.0  # a student that equals its target finds every translation
    # the tiny models have no role prefixes, so both roles are the same embedding
    assert rows["x query -> en query"] == rows["x query -> en passage"]
    assert list(role_pairings(student, teacher, afriqa, ["P@1"], translation=False)) == [
        "x query -> en passage", "en query -> en passage"]


def test_long_dev_pairs_join_consecutive_held_out_pairs_on_both_sides():
    from optical_lightning.data.bitext import read_bitext
    from optical_lightning.evaluation.retrieval_sets import long_pairs

    pairs = read_bitext(SW_BITEXT, "sw")
    joined = long_pairs(pairs[:10], 4)  # two full groups; the last 2 pairs make no paragraph
    assert len(joined) == 2
    assert joined[1].en == " ".join(p.en for p in pairs[4:8]) and joined[1].tgt == " ".join(p.tgt for p in pairs[4:8])


def test_mafand_dev_long_joins_consecutive_dev_sentences_in_order(tmp_path):
    """The long-input dev set is built from a real dev file: 3 consecutive lines a paragraph, both sides."""
    from optical_lightning.data.bitext import read_bitext

    (tmp_path / "translation" / "sw").mkdir(parents=True)
    pairs = read_bitext(SW_BITEXT, "sw")[:8]
    rows = [f"m{i}\t{p.en}\t{p.tgt}" for i, p in enumerate(pairs)]
    (tmp_path / "translation" / "sw" / "mafand-dev.tsv").write_text("id\ten\tsw\n" + "\n".join(rows) + "\n")
    sets = RetrievalSets(str(tmp_path), "sw", ["mafand-dev-long"])
    assert sets.available()["mafand-dev-long"] == ["sw"]
    rs = sets.load()["mafand-dev-long-sw-en"]
    assert list(rs.queries) == ["mafand-dev-long0", "mafand-dev-long1"]  # 8 lines: 2 paragraphs, a tail of 2 dropped
    assert rs.queries["mafand-dev-long1"] == " ".join(p.tgt for p in pairs[3:6])
    assert rs.docs["mafand-dev-long1"] == " ".join(p.en for p in pairs[3:6])
    assert rs.qrels["mafand-dev-long0"] == {"mafand-dev-long0": 1}
    # both columns English: a student equal to the teacher finds every paragraph
    (tmp_path / "translation" / "sw" / "mafand-dev.tsv").write_text(
        "id\ten\tsw\n" + "\n".join(f"m{i}\t{p.en}\t{p.en}" for i, p in enumerate(pairs)) + "\n")
    same = retrieval(tmp_path, "sw", ["mafand-dev-long"], metrics=["P@1"])
    same.load()
    teacher = tiny_encoder(seed=0, frozen=True)
    assert same(Encoders(teacher, teacher), "zero_shot")["mafand-dev-long-sw-en"]["P@1"] == 1.0
    missing = retrieval(tmp_path, "so", ["mafand-dev-long", "mafand-dev"], metrics=["P@1"])
    with pytest.raises(DataError, match="none of the evaluation sets"):
        missing.load()


def test_passages_dev_set_is_graded_by_the_teachers_english_ranking(tmp_path):
    import shutil

    from optical_lightning.evaluation.datasets import read_queries

    shutil.copytree(EVAL / "retrieval" / "afriqa-sw-en", tmp_path / "retrieval" / "afriqa-sw-en")
    english = read_queries(EVAL / "retrieval" / "afriqa-sw-en" / "queries.en.tsv")
    (tmp_path / "translation" / "sw").mkdir(parents=True)
    # the Swahili column holds the English question too: a student equal to the teacher then copies its ranking
    rows = [f"{q}\t{t}\t{t}" for q, t in list(english.items())[:8]]
    (tmp_path / "translation" / "sw" / "afriqa-questions-dev.tsv").write_text("id\ten\tsw\n" + "\n".join(rows) + "\n")
    suite = retrieval(tmp_path, "sw", ["afriqa-passages-dev"], metrics=["nDCG@10"])
    suite.load()
    assert suite.sets.available()["afriqa-passages-dev"] == ["sw"]
    teacher = tiny_encoder(seed=0, frozen=True)
    same = suite(Encoders(teacher, teacher), "zero_shot")["afriqa-passages-dev-sw-en"]["nDCG@10"]
    other = suite(Encoders(tiny_encoder(seed=5), teacher), "trained")["afriqa-passages-dev-sw-en"]["nDCG@10"]
    qrels = suite.sets.sets["afriqa-passages-dev-sw-en"].qrels
    assert len(qrels) == 8 and all(sorted(g.values()) == list(range(1, 11)) for g in qrels.values())
    assert same == pytest.approx(1.0) and other < 0.9
    assert "afriqa-passages-dev-sw-en" not in suite(Encoders(teacher, teacher), "teacher_en")


def test_held_out_pairs_alone_still_evaluate_where_no_named_set_exists_for_the_language(caplog):
    """A Somali language-model run names Swahili dev sets: its own held-out pairs are then the dev proxy."""
    from optical_lightning.data.bitext import read_bitext
    from optical_lightning.evaluation import HeldOut

    pairs = read_bitext(SW_BITEXT, "sw")[:20]
    suite = retrieval(EVAL, "so", ["afriqa-questions-dev"], bitext_val_long=0)
    suite.load(HeldOut(pairs))
    assert list(suite.sets.sets) == ["bitext-val"] and "evaluating the held-out training pairs only" in caplog.text
    with pytest.raises(DataError, match="none of the evaluation sets"):
        retrieval(EVAL, "so", ["afriqa-questions-dev"]).load()  # nothing at all to evaluate: still an error
