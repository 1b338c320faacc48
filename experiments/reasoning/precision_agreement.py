"""How often the base model's answers agree across numeric precisions:
`python experiments/reasoning/precision_agreement.py REFERENCE OTHER [OTHER ...] [--out FILE]`.

Each argument is ``LABEL=PATH``: a run's ``mcqa.json`` (its base-model rows: ``teacher_en`` in English and
``zero_shot`` in the run's language) or a ``python -m optical_lightning.mcqa_score --reference ... --out`` file
(``predicted`` and ``reference_predicted``). For each language, the table gives every record's accuracy, the
share of questions on which its answer equals the reference's (the first argument), and, where both records hold
the letters' log-likelihoods, the paired change in the right letter's probability with its 95% interval: the
questions matched by id. Two machines (or precisions) scoring the same weights give the size of a machine effect.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from optical_lightning.evaluation.loglik import gold_probabilities
from optical_lightning.utils.atomic import atomic_write_text
from optical_lightning_study.significance import paired_test


def base_answers(record: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``{"target": ..., "en": ...}``, each ``{"ids", "answers", "predicted", "loglik"}`` (``loglik`` ``None``
    where the record lacks it), from either kind of record."""
    ids, answers = record["ids"], record["answers"]
    if "stages" in record:  # a run's mcqa.json: its name is the result name of both base rows
        name = record["name"]
        target, english = record["stages"]["zero_shot"][name], record["stages"]["teacher_en"][name]
        rows = {"target": (target["predicted"], target.get("loglik")),
                "en": (english["predicted"], english.get("loglik"))}
    else:  # mcqa_score --out
        rows = {"target": (record["predicted"], record.get("loglik")),
                "en": (record.get("reference_predicted"), record.get("reference_loglik"))}
    return {language: {"ids": ids, "answers": answers, "predicted": predicted, "loglik": loglik}
            for language, (predicted, loglik) in rows.items() if predicted is not None}


def _gold_by_id(rows: dict[str, Any]) -> dict[str, float]:
    return dict(zip(rows["ids"], gold_probabilities(rows["loglik"], rows["answers"]).tolist()))


def gold_prob_change(rows: dict[str, Any], reference: dict[str, Any], shared: list[str]) -> str:
    """The paired change in the right letter's probability against the reference, or – without log-likelihoods."""
    if rows["loglik"] is None or reference["loglik"] is None:
        return "–"
    mine, theirs = _gold_by_id(rows), _gold_by_id(reference)
    t = paired_test([mine[i] for i in shared], [theirs[i] for i in shared])
    return f"{t['diff']:+.4f} [{t['low']:+.4f}, {t['high']:+.4f}], p {t['p']:.2f}"


def table(records: list[tuple[str, dict[str, Any]]]) -> str:
    """A markdown table: language, record, n, accuracy, agreement with the first record, and the change in the
    right letter's probability against it."""
    (ref_label, reference), *_ = records
    lines = [f"| language | record | n | accuracy | same answer as {ref_label} | right letter's probability, change "
             f"against {ref_label} [95% CI] |", "|---|---|---|---|---|---|"]
    ref = base_answers(reference)
    for language in ("target", "en"):
        if language not in ref:
            continue
        by_id = dict(zip(ref[language]["ids"], ref[language]["predicted"]))
        for label, record in records:
            rows = base_answers(record).get(language)
            if rows is None:
                continue
            shared = [(i, a, p) for i, a, p in zip(rows["ids"], rows["answers"], rows["predicted"]) if i in by_id]
            if not shared:
                raise SystemExit(f"error: {label} shares no question ids with {ref_label}; compare the same split")
            accuracy = sum(a == p for _, a, p in shared) / len(shared)
            agreement = sum(by_id[i] == p for i, _, p in shared) / len(shared)
            change = gold_prob_change(rows, ref[language], [i for i, _, _ in shared])
            lines.append(f"| {'English' if language == 'en' else 'target'} | {label} | {len(shared)} | "
                         f"{accuracy:.3f} | {agreement:.3f} | {change} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("records", nargs="+", help="LABEL=PATH, the reference first")
    parser.add_argument("--out", type=Path, help="also write the table here")
    args = parser.parse_args(argv)
    records = []
    for given in args.records:
        label, sep, path = given.partition("=")
        if not sep or not Path(path).is_file():
            print(f"error: {given!r}: give LABEL=PATH of an existing mcqa.json or mcqa_score --out file", file=sys.stderr)
            return 2
        records.append((label, json.loads(Path(path).read_text(encoding="utf-8"))))
    text = table(records)
    print(text, end="")
    if args.out:
        atomic_write_text(args.out, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
