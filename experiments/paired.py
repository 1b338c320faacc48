"""Trained against zero-shot on the same queries, for every set of one run: `python experiments/paired.py RUN_DIR`.

Reads ``per_query.json`` (and ``mcqa.json``) of a run and prints, per set and headline metric, the
zero-shot and trained means, the paired difference with its 95% bootstrap interval and the sign-flip
p-value (:mod:`optical_lightning_study.significance`). ``--against OTHER_RUN`` compares the trained
stage of RUN_DIR with OTHER_RUN's trained stage instead (e.g. OPTICAL against MSE; the "zero-shot"
column then holds OTHER_RUN). ``--out FILE`` also writes the table.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from optical_lightning.evaluation.loglik import gold_probabilities
from optical_lightning.utils.atomic import atomic_write_text
from optical_lightning_study.significance import paired_test
from optical_lightning_study.sweeps import DEFAULT_HEADLINE, HEADLINE


def _read(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def rows(run: Path, against: Path | None = None) -> list[tuple[str, str, dict[str, float], float, float]]:
    out = []
    per_query = _read(run / "per_query.json")
    base, base_stage = (per_query, "zero_shot") if against is None else (_read(against / "per_query.json"), "trained")
    names = sorted({key.rsplit("/", 1)[0] for key in per_query})
    for name in names:
        zero, trained = base.get(f"{name}/{base_stage}"), per_query.get(f"{name}/trained")
        if not zero or not trained:
            continue
        metric = HEADLINE.get(name.split("-")[0], DEFAULT_HEADLINE)
        qids = sorted(set(zero) & set(trained))
        if not qids:  # e.g. bitext-val of two runs trained on different sources: different pairs
            print(f"note: {name}: the two runs share no query; not paired", file=sys.stderr)
            continue
        a, b = [trained[q][metric] for q in qids], [zero[q][metric] for q in qids]
        out.append((name, metric, paired_test(a, b), sum(b) / len(b), sum(a) / len(a)))
    if (run / "mcqa.json").is_file():
        mcqa = json.loads((run / "mcqa.json").read_text())
        other = mcqa if against is None else _read(against / "mcqa.json")
        if other.get("ids") != mcqa.get("ids"):
            return out  # not the same questions: nothing to pair
        answers, teacher = mcqa["answers"], mcqa["teacher_en_predicted"]
        for name in mcqa["stages"].get("trained", {}):
            # a language model's NAME-en row (the student on the English questions) pairs with the base model
            # on the same English questions: the teacher_en stage's NAME
            stage, base_name = base_stage, name
            if name not in other["stages"].get(base_stage, {}) and name.endswith("-en") and against is None:
                stage, base_name = "teacher_en", name.removesuffix("-en")
            if base_name not in other["stages"].get(stage, {}):
                continue
            z = other["stages"][stage][base_name]["predicted"]
            t = mcqa["stages"]["trained"][name]["predicted"]
            for metric, ref in (("accuracy", answers), ("agreement", teacher)):
                if ref is None:
                    continue
                a = [float(p == r) for p, r in zip(t, ref)]
                b = [float(p == r) for p, r in zip(z, ref)]
                out.append((name, metric, paired_test(a, b), sum(b) / len(b), sum(a) / len(a)))
            if "loglik" in mcqa["stages"]["trained"][name] and "loglik" in other["stages"][stage][base_name]:
                # a language model's letter likelihoods: the probability of the right letter, far less noisy
                a = gold_probabilities(mcqa["stages"]["trained"][name]["loglik"], answers).tolist()
                b = gold_probabilities(other["stages"][stage][base_name]["loglik"], answers).tolist()
                out.append((name, "gold_prob", paired_test(a, b), sum(b) / len(b), sum(a) / len(a)))
    return out


def table(found: list[tuple[str, str, dict[str, float], float, float]], base: str = "zero-shot",
          this: str = "trained") -> str:
    lines = [f"| set | metric | n | {base} | {this} | {this} − {base} [95% CI] | p |", "|---|---|---|---|---|---|---|"]
    for name, metric, t, zero, trained in found:
        lines.append(f"| {name} | {metric} | {t['n']} | {zero:.3f} | {trained:.3f} | {t['diff']:+.3f} "
                     f"[{t['low']:+.3f}, {t['high']:+.3f}] | {t['p']:.3g} |")
    return "\n".join(lines) + "\n"


def run_label(run: Path) -> str:
    """A run's loss (``distill.name``) for a column header, else its directory name."""
    distill = _read(run / "results.json").get("config", {}).get("distill", {})
    return str(distill.get("name") or run.name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("--against", default=None, help="another run: compare trained with its trained stage")
    parser.add_argument("--labels", nargs=2, metavar=("AGAINST", "RUN"), default=None,
                        help="column names for --against's run and RUN (default: their distill.name)")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    run, against = Path(args.run_dir), Path(args.against) if args.against else None
    for folder in (run, against):
        if folder is not None and not (folder / "results.json").is_file():
            print(f"error: {folder} holds no complete run (results.json); pass a run directory", file=sys.stderr)
            return 2
    if against is None:
        text = table(rows(run))
    else:
        labels = args.labels or (run_label(against), run_label(run))
        text = table(rows(run, against), *labels)
    print(text)
    if args.out:
        atomic_write_text(Path(args.out), text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
