"""How often a job's model answers A, B, C and D on AfriMMLU test (Swahili), beside its agreement with the base
model's English answers: `python experiments/letter_counts.py JOB_DIR [JOB_DIR ...]` (folders holding mcqa.json).

A shift of the letter prior changes agreement without any change in what the model knows; these counts show it.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path


def main(folders: list[str]) -> None:
    print("| job | stage | A | B | C | D | agreement with English answers |\n|---|---|---|---|---|---|---|")
    for folder in folders:
        mcqa = json.loads((Path(folder) / "mcqa.json").read_text())
        stage = "trained" if "trained" in mcqa["stages"] else "zero_shot"
        predicted = mcqa["stages"][stage][mcqa["name"]]["predicted"]
        counts = Counter(predicted)
        agreement = sum(p == r for p, r in zip(predicted, mcqa["teacher_en_predicted"])) / len(predicted)
        print(f"| {Path(folder).name} | {stage} | " + " | ".join(str(counts[k]) for k in range(4)) + f" | {agreement:.3f} |")
    english = Counter(mcqa["teacher_en_predicted"])
    print("| base model, English questions | teacher_en | " + " | ".join(str(english[k]) for k in range(4)) + " | 1.000 |")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])
