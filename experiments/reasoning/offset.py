"""How much of a trained student's alignment is one shift of every Swahili state, and what does such a shift do to
the answers?

A cosine cost can fall without any token finding its own English counterpart: adding the same vector to every
Swahili state (the mean English state minus the mean Swahili state, a "language offset") brings all of them
nearer to all the English states at once. This reads the AfriMMLU prompts after layer L, as ``oracle_transport.py``
does, and scores the answers with the question-and-option states replaced by:

* ``zero-shot``: the base model's Swahili states;
* ``student``: a trained student's (its own answers: the student reads the whole Swahili prompt);
* ``global offset``: the base model's Swahili states plus one language offset, measured on the run's held-out bitext
  (every sentence's tokens but position 0, the attention sink);
* ``prompt offset``: plus the offset between this prompt's own English and Swahili content (an oracle: it knows
  the English question's mean state);
* ``content hard x0.25``: each token moved a quarter of the way to the English state its plan sends most mass to.

Beside each row, the content's transport cost (training's geometry and blur). For the student, how much of its
displacement from the base model's states is a shift shared by every token (the squared norm of the mean
displacement over the mean squared displacement), and the cosine between that shift and the language offset.

    python experiments/reasoning/offset.py --student outputs/reasoning/dev-strong-300/student --blur 0.05 \\
        --out experiments/reasoning/offset/val-strong300
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from oracle_transport import (
    DATA,
    content_cost,
    letters,
    prompt_and_content,
    replaced_after,
    states_by_layer,
    summary,
    tokens_and_content,
    transported,
)

from optical_lightning.data.datamodule import BitextDataModule
from optical_lightning.evaluation.questions import QuestionSet
from optical_lightning.losses.ot import OTDistillationHead
from optical_lightning.models.causal_lm import CausalLMEncoder, load_causal_lm
from optical_lightning.utils.resources import machine


def language_offset(lm: torch.nn.Module, tokenizer: Any, pairs: list[tuple[str, str]], layer: int) -> torch.Tensor:
    """(H,) mean English state minus mean Swahili state after ``layer``, over every token but position 0."""
    sums = {"en": 0.0, "sw": 0.0}
    counts = {"en": 0, "sw": 0}
    for en, sw in pairs:
        for lang, text in (("en", en), ("sw", sw)):
            h = states_by_layer(lm, torch.tensor(tokenizer.encode(text)))[layer][0, 1:].float()
            sums[lang] = sums[lang] + h.sum(0)
            counts[lang] += len(h)
    return sums["en"] / counts["en"] - sums["sw"] / counts["sw"]


def displacement(moved: torch.Tensor, offset: torch.Tensor) -> tuple[float, float]:
    """For a student's displacement ``moved`` (T, H) of T tokens from the base model's states: the share of its mean
    squared length that one shift shared by every token carries, and that shift's cosine to ``offset`` (H,)."""
    shift = moved.mean(0)
    return float(shift.pow(2).sum() / moved.pow(2).sum(-1).mean()), float(F.cosine_similarity(shift, offset, dim=0))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="Qwen/Qwen2.5-Coder-1.5B-Instruct")
    parser.add_argument("--student", required=True, help="a run's student/ folder")
    parser.add_argument("--split", default="val")
    parser.add_argument("--bitext", default="data/bitext/sw/train.tsv", help="the run's training file")
    parser.add_argument("--val-size", type=int, default=128, help="the run's data.val_size")
    parser.add_argument("--seed", type=int, default=42, help="the run's seed")
    parser.add_argument("--layer", type=int, default=14)
    parser.add_argument("--blur", type=float, default=0.05)
    parser.add_argument("--dtype", default="bf16")
    parser.add_argument("--cache-dir", default=".cache")
    parser.add_argument("--data", default=DATA)
    parser.add_argument("--max-items", type=int, help="at most this many questions and bitext pairs (quick checks)")
    parser.add_argument("--out", type=Path, required=True, help="writes OUT.json and OUT.md")
    args = parser.parse_args(argv)

    started = time.time()
    qset = QuestionSet(f"{args.data}/sw.{args.split}.jsonl", f"{args.data}/en.{args.split}.jsonl", "sw",
                       max_questions=args.max_items)
    questions = qset.load()
    if not questions:
        raise SystemExit(f"error: {qset.skipped}")
    data = BitextDataModule(train=[args.bitext], lang="sw", val_size=args.val_size, seed=args.seed)
    data.setup()
    pairs = [(p.en, p.tgt) for p in data.val_pairs][:args.max_items]
    encoder = load_causal_lm(args.model, align_layer=args.layer, dtype=args.dtype, cache_dir=args.cache_dir)
    student = CausalLMEncoder.from_pretrained(args.student, teacher=encoder, frozen=True)
    lm, base, tokenizer, layer = encoder.lm, encoder.base_lm, encoder.tokenizer, args.layer
    head = OTDistillationHead(blur=args.blur)
    offset = language_offset(lm, tokenizer, pairs, layer)

    logliks: dict[str, list] = defaultdict(list)
    costs: dict[str, list[float]] = defaultdict(list)
    shared, alignment = [], []
    for sw_q, en_q in zip(questions, qset.english):
        sw_prompt, en_prompt = prompt_and_content(sw_q)[0], prompt_and_content(en_q)[0]
        sw_ids, sw_mask = tokens_and_content(tokenizer, *prompt_and_content(sw_q))
        en_ids, en_mask = tokens_and_content(tokenizer, *prompt_and_content(en_q))
        sw_h, en_h = states_by_layer(lm, sw_ids)[layer][0].float(), states_by_layer(lm, en_ids)[layer][0].float()
        student_h = states_by_layer(student.lm, sw_ids)[layer][0].float()
        logliks["English"].append(letters(lm, tokenizer, en_prompt))
        logliks["student"].append(letters(student.lm, tokenizer, sw_prompt))
        costs["student"].append(content_cost(base, head, en_h, student_h, en_mask, sw_mask))
        shifted = {"zero-shot": sw_h, "global offset": sw_h.clone(), "prompt offset": sw_h.clone(),
                   "content hard x0.25": transported(sw_h, en_h, sw_mask, en_mask, head, hard=True, share=0.25)}
        shifted["global offset"][sw_mask] += offset
        shifted["prompt offset"][sw_mask] += en_h[en_mask].mean(0) - sw_h[sw_mask].mean(0)
        for name, states in shifted.items():
            with replaced_after(base, layer, states):
                logliks[name].append(letters(lm, tokenizer, sw_prompt))
            costs[name].append(content_cost(base, head, en_h, states, en_mask, sw_mask))
        share, cosine = displacement((student_h - sw_h)[sw_mask], offset)
        shared.append(share)
        alignment.append(cosine)
    rows = summary({k: torch.stack(v) for k, v in logliks.items()}, dict(costs), [q.answer for q in questions])
    moves = {"shared_share": sum(shared) / len(shared), "cos_to_language_offset": sum(alignment) / len(alignment)}
    record = {"model": args.model, "student": args.student, "split": args.split, "layer": layer, "blur": args.blur,
              "dtype": args.dtype, "n": len(questions), "n_pairs": len(pairs), "summary": rows,
              "student_displacement": moves, "offset_norm": float(offset.norm()), "costs": costs,
              "per_question": {"shared_share": shared, "cos_to_language_offset": alignment},
              "machine": machine(), "date": time.strftime("%Y-%m-%d"), "seconds": round(time.time() - started, 1)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(record, indent=1))
    table = [f"AfriMMLU sw {args.split}, {len(questions)} questions; language offset from {len(pairs)} held-out pairs of "
             f"{args.bitext} (norm {record['offset_norm']:.2f}); layer {layer}, blur {args.blur}, {args.model} "
             f"({args.dtype}), student {args.student}; {record['date']}, {record['seconds']:.0f} s on "
             f"{record['machine']['cpu']}", "",
             "| Swahili content states after the layer | accuracy | agreement with English | right letter's probability "
             "| content transport cost |", "|---|---|---|---|---|"]
    table += [f"| {k} | {v['accuracy']:.3f} | {v['agreement']:.3f} | {v['gold_prob']:.3f} | "
              + (f"{v['cost']:.3f}" if "cost" in v else "–") + " |" for k, v in rows.items()]
    table += ["", f"The student's displacement from the base model's Swahili content states: a shift shared by every "
              f"token is {moves['shared_share']:.3f} of its mean squared length; that shift's cosine to the "
              f"language offset is {moves['cos_to_language_offset']:.3f} (means over questions)."]
    args.out.with_suffix(".md").write_text("\n".join(table) + "\n")
    print("\n".join(table))


if __name__ == "__main__":
    main()
