"""One row per language-model run: `python experiments/reasoning/dev_table.py RUN_DIR [RUN_DIR ...] [--out FILE]`.

Reads each run's ``results.json`` and ``mcqa.json`` and prints what a recipe is chosen by on dev: Swahili accuracy,
the right letter's mean probability (``gold_prob``, far less noisy than accuracy on ~100 questions), agreement
with the base model's English answers, the student's English accuracy and agreement (forgetting), and the
hidden-state "find the translation" proxies. The first row is the base model (zero-shot) of the first run.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from optical_lightning.evaluation.loglik import gold_probabilities
from optical_lightning.utils.atomic import atomic_write_text

COLUMNS = ("run", "overrides", "sw accuracy", "sw gold_prob", "sw agreement", "en accuracy", "en agreement",
           "bitext-val P@1", "afriqa-questions-dev nDCG@10", "fit (s)")


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def row(run: Path, stage: str = "trained") -> list[str]:
    results = json.loads((run / "results.json").read_text())
    mcqa = json.loads((run / "mcqa.json").read_text())
    metrics, name = results["metrics"], mcqa["name"]
    sw = mcqa["stages"][stage][name]
    en = mcqa["stages"]["trained"].get(f"{name}-en") if stage == "trained" else mcqa["stages"]["teacher_en"][name]
    # a table cell holds one line: a newline in a setting (a prompt prefix) is written as \n, a pipe escaped
    overrides = [o.replace("\n", "\\n").replace("|", "\\|") for o in results["run"]["overrides"]
                 if not o.startswith(("trainer.enable_progress_bar", "hydra.", "experiment=", "mcqa.split="))]

    def agreement(predicted: list[int]) -> float:
        return _mean([float(p == t) for p, t in zip(predicted, mcqa["teacher_en_predicted"])])

    def proxy(key: str, metric: str) -> str:
        value = metrics.get(key, {}).get(stage, {}).get(metric)
        return "–" if value is None else f"{value:.3f}"

    return [run.name if stage == "trained" else "base model", " ".join(overrides) if stage == "trained" else "–",
            f"{_mean([float(p == a) for p, a in zip(sw['predicted'], mcqa['answers'])]):.3f}",
            f"{float(gold_probabilities(sw['loglik'], mcqa['answers']).mean()):.3f}", f"{agreement(sw['predicted']):.3f}",
            f"{_mean([float(p == a) for p, a in zip(en['predicted'], mcqa['answers'])]):.3f}" if en else "–",
            f"{agreement(en['predicted']):.3f}" if en else "–",
            proxy("bitext-val", "P@1"), proxy(f"afriqa-questions-dev-{mcqa['path'].split('/')[-1][:2]}-en", "nDCG@10"),
            f"{results['timing']['fit_s']:.0f}" if stage == "trained" else "–"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    for run in args.runs:
        if not (run / "results.json").is_file() or not (run / "mcqa.json").is_file():
            print(f"error: {run} holds no complete language-model run (results.json, mcqa.json)", file=sys.stderr)
            return 2
    rows = [row(args.runs[0], "zero_shot"), *(row(run) for run in args.runs)]
    text = "\n".join(["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS),
                      *("| " + " | ".join(r) + " |" for r in rows)]) + "\n"
    print(text)
    if args.out:
        atomic_write_text(args.out, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
