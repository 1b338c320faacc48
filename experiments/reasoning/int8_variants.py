"""Int8 variants of the base model's letter scoring against its bf16 answers:
`python experiments/reasoning/int8_variants.py [--every 10] [--out FILE]`.

Scores every N-th AfriMMLU test question, in Swahili and in English, with the base model in float32 and three int8
variants, and compares each answer with the bf16 answers cached by an earlier bf16 run (``.cache/loglik/``):

* ``float32``: no quantisation (the reference for what rounding alone changes);
* ``dynamic``: PyTorch's ``quantize_dynamic`` on every linear layer (int8 weights, one scale per activation tensor);
* ``dynamic-float-down_proj``: the same with the MLP's ``down_proj`` kept in float32;
* ``per-token``: ``optical_lightning.models.quantize.int8_copy`` (one scale per token; ``mcqa.quantize=int8``).

Run it alone: it also prints seconds per question. To play a CPU without bf16 units, prefix
``ONEDNN_MAX_CPU_ISA=AVX512_CORE_VNNI``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from torch import nn

from optical_lightning.evaluation.loglik import question_logliks, questions_hash
from optical_lightning.evaluation.questions import QuestionSet
from optical_lightning.models.causal_lm import load_causal_lm
from optical_lightning.models.quantize import int8_copy
from optical_lightning.utils.atomic import atomic_write_text

MODEL = "Qwen/Qwen2.5-Coder-1.5B-Instruct"
AFRIMMLU = Path("data/eval/mcqa/afrimmlu")


def dynamic(lm: nn.Module, keep_float: str | None = None) -> nn.Module:
    """``quantize_dynamic`` on a copy (every linear layer, or all but those whose name ends with ``keep_float``)."""
    import copy

    names = {n for n, m in lm.named_modules() if isinstance(m, nn.Linear)
             and (keep_float is None or not n.endswith(keep_float))}
    return torch.ao.quantization.quantize_dynamic(copy.deepcopy(lm), names, dtype=torch.qint8, inplace=True)


def bf16_answers(cache: Path, questions: list) -> list[int] | None:
    """The bf16 base model's cached answers to exactly ``questions`` (the same set, in order), if a run left them."""
    wanted = questions_hash(questions)
    for entry in cache.glob("*.json"):
        record = json.loads(entry.read_text(encoding="utf-8"))
        key = record.get("key", {})
        if key.get("questions") == wanted and key.get("dtype") == "torch.bfloat16" and "quantize" not in key:
            return record["predicted"]
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--every", type=int, default=10, help="score every N-th test question")
    parser.add_argument("--cache", type=Path, default=Path(".cache/loglik"), help="where the bf16 answers are cached")
    parser.add_argument("--out", type=Path, help="also write the table here")
    args = parser.parse_args(argv)
    questions = QuestionSet(str(AFRIMMLU / "sw.test.jsonl"), str(AFRIMMLU / "en.test.jsonl"), "sw", ["sw"])
    questions.load()
    languages = {"Swahili": questions.questions, "English": questions.english}
    references = {lang: bf16_answers(args.cache, qs) for lang, qs in languages.items()}
    if any(r is None for r in references.values()):
        print(f"error: no bf16 answers to all 500 test questions in {args.cache}; run `python run.py "
              f"experiment=reasoning` on a CPU with bf16 first", file=sys.stderr)
        return 2
    teacher = load_causal_lm(MODEL, align_layer=14, dtype="32", frozen=True)
    variants = {"float32": lambda: teacher.lm, "dynamic": lambda: dynamic(teacher.lm),
                "dynamic-float-down_proj": lambda: dynamic(teacher.lm, "down_proj"),
                "per-token": lambda: int8_copy(teacher.lm, merge_adapters=False)}
    lines = ["| variant | language | n | accuracy (bf16) | same answer as bf16 | s per question |",
             "|---|---|---|---|---|---|"]
    for name, build in variants.items():
        lm = build()
        for lang, full in languages.items():
            chosen = full[::args.every]
            reference = references[lang][::args.every]
            start = time.perf_counter()
            predicted = question_logliks(lm, teacher.tokenizer, chosen).argmax(1).tolist()
            seconds = (time.perf_counter() - start) / len(chosen)
            accuracy = sum(p == q.answer for p, q in zip(predicted, chosen)) / len(chosen)
            bf16 = sum(p == q.answer for p, q in zip(reference, chosen)) / len(chosen)
            same = sum(p == r for p, r in zip(predicted, reference)) / len(chosen)
            lines.append(f"| {name} | {lang} | {len(chosen)} | {accuracy:.3f} ({bf16:.3f}) | {same:.3f} | {seconds:.3f} |")
            print(lines[-1], flush=True)
        del lm
    text = "\n".join(lines) + "\n"
    if args.out:
        atomic_write_text(args.out, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
