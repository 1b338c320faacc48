"""Does the alignment learned on bitext reach the questions' text, and does the prompt around it matter?

The transport cost between a Swahili text's token states and its English translation's, after layer L (the final
RMSNorm, unit length, cosine cost: the geometry and blur training uses), for the base model and a trained student,
on three readings:

* ``bitext``: the run's held-out bitext pairs (``data.val_size`` of the training file, the run's seed), each sentence
  read alone from position 0, as training reads it;
* ``questions alone``: each AfriMMLU question and its four options, joined by newlines, read alone the same way;
* ``questions in the prompt``: the same text inside the scored prompt (``oracle_transport.py``'s reading: the
  template's tokens are read, only the question's and options' tokens are transported).

If the student lowers the cost of the questions read alone as much as the bitext's, the text is not what stops the
alignment; if the prompt's reading stays higher than the questions read alone, the template is.

    python experiments/reasoning/content_context.py --student outputs/reasoning/dev-strong-300/student \\
        --blur 0.05 --out experiments/reasoning/content-context/val-strong300
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from oracle_transport import DATA, prompt_and_content, tokens_and_content

from optical_lightning.data.datamodule import BitextDataModule
from optical_lightning.evaluation.questions import MCQuestion, QuestionSet
from optical_lightning.losses.ot import OTDistillationHead
from optical_lightning.models.causal_lm import CausalLMEncoder, load_causal_lm
from optical_lightning.utils.resources import machine

READINGS = ("bitext", "questions alone", "questions in the prompt")


def alone(question: MCQuestion) -> str:
    """The question and its options as one plain text, without the template."""
    return "\n".join((question.question, *question.choices))


@torch.inference_mode()
def states(encoder: CausalLMEncoder, ids: torch.Tensor) -> torch.Tensor:
    """(T, H) unit states after the encoder's align layer (a teacher reads with any student's adapters off)."""
    return encoder({"input_ids": ids[None], "attention_mask": torch.ones(1, len(ids), dtype=torch.long)}).tokens[0]


def cost(head: OTDistillationHead, x: torch.Tensor, y: torch.Tensor) -> float:
    """<P, C> between the English cloud ``x`` and the Swahili cloud ``y`` (unit states, uniform weights)."""
    return float(head(x[None], torch.ones(1, len(x)), y[None], torch.ones(1, len(y))).transport_cost[0])


def text_ids(encoder: CausalLMEncoder, text: str) -> torch.Tensor:
    return encoder.tokenize([text])["input_ids"][0]


def costs(teacher: CausalLMEncoder, reader: CausalLMEncoder, head: OTDistillationHead,
          pairs: Sequence[tuple[str, str]], questions: Sequence[MCQuestion],
          english: Sequence[MCQuestion]) -> dict[str, list[float]]:
    """Per reading, each item's cost: the teacher reads English, ``reader`` (the base model or a student) Swahili."""
    out: dict[str, list[float]] = {name: [] for name in READINGS}
    for en, sw in pairs:
        out["bitext"].append(cost(head, states(teacher, text_ids(teacher, en)), states(reader, text_ids(reader, sw))))
    for sw_q, en_q in zip(questions, english):
        out["questions alone"].append(cost(head, states(teacher, text_ids(teacher, alone(en_q))),
                                           states(reader, text_ids(reader, alone(sw_q)))))
        (en_ids, en_mask), (sw_ids, sw_mask) = (tokens_and_content(teacher.tokenizer, *prompt_and_content(q))
                                                for q in (en_q, sw_q))
        out["questions in the prompt"].append(cost(head, states(teacher, en_ids)[en_mask],
                                                   states(reader, sw_ids)[sw_mask]))
    return out


def add_inputs(parser: argparse.ArgumentParser) -> None:
    """The settings that pick the questions, the held-out bitext and the model's view (shared with ``offset.py``)."""
    parser.add_argument("--split", default="val", help="AfriMMLU split: val (dev, the default) or test")
    parser.add_argument("--bitext", default="data/bitext/sw/train.tsv", help="the run's training file")
    parser.add_argument("--val-size", type=int, default=128, help="the run's data.val_size")
    parser.add_argument("--seed", type=int, default=42, help="the run's seed")
    parser.add_argument("--layer", type=int, default=14)
    parser.add_argument("--blur", type=float, default=0.05, help="the OT head's blur (the strong recipe's 0.05)")
    parser.add_argument("--dtype", default="bf16")
    parser.add_argument("--cache-dir", default=".cache")
    parser.add_argument("--data", default=DATA)
    parser.add_argument("--max-items", type=int, help="at most this many bitext pairs and questions (quick checks)")


def students_parser(doc: str) -> argparse.ArgumentParser:
    """The command line of a read of several students: the model, ``--student`` folders, the inputs and ``--out``."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--model", default="Qwen/Qwen2.5-Coder-1.5B-Instruct")
    parser.add_argument("--student", nargs="+", required=True, help="one or more runs' student/ folders")
    add_inputs(parser)
    parser.add_argument("--out", type=Path, required=True, help="writes OUT.json and OUT.md")
    return parser


def inputs(args: argparse.Namespace) -> tuple[QuestionSet, list[MCQuestion], list[tuple[str, str]]]:
    """The AfriMMLU questions (with their English) and the run's held-out bitext pairs, as (English, Swahili)."""
    qset = QuestionSet(f"{args.data}/sw.{args.split}.jsonl", f"{args.data}/en.{args.split}.jsonl", "sw",
                       max_questions=args.max_items)
    questions = qset.load()
    if not questions:
        raise SystemExit(f"error: {qset.skipped}")
    data = BitextDataModule(train=[args.bitext], lang="sw", val_size=args.val_size, seed=args.seed)
    data.setup()
    return qset, questions, [(p.en, p.tgt) for p in data.val_pairs][:args.max_items]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="Qwen/Qwen2.5-Coder-1.5B-Instruct")
    parser.add_argument("--student", help="a run's student/ folder (else the base model alone)")
    add_inputs(parser)
    parser.add_argument("--out", type=Path, required=True, help="writes OUT.json and OUT.md")
    args = parser.parse_args(argv)

    started = time.time()
    qset, questions, pairs = inputs(args)
    teacher = load_causal_lm(args.model, align_layer=args.layer, dtype=args.dtype, cache_dir=args.cache_dir,
                             frozen=True)
    head = OTDistillationHead(blur=args.blur)
    readers = {"base model": teacher}
    if args.student:
        readers["student"] = CausalLMEncoder.from_pretrained(args.student, teacher=teacher, frozen=True)
    per_item = {name: costs(teacher, reader, head, pairs, questions, qset.english) for name, reader in readers.items()}
    means = {name: {k: sum(v) / len(v) for k, v in rows.items()} for name, rows in per_item.items()}
    record = {"model": args.model, "student": args.student, "split": args.split, "bitext": args.bitext,
              "n_pairs": len(pairs), "n_questions": len(questions), "layer": args.layer, "blur": args.blur,
              "dtype": args.dtype, "means": means, "per_item": per_item, "machine": machine(),
              "date": time.strftime("%Y-%m-%d"), "seconds": round(time.time() - started, 1)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(record, indent=1))
    lines = [f"Transport cost of the Swahili states after layer {args.layer} to the English ones (cosine on unit states, "
             f"blur {args.blur}); {len(pairs)} held-out bitext pairs of {args.bitext}, AfriMMLU sw {args.split} "
             f"({len(questions)} questions); {args.model} ({args.dtype}), student {args.student or '-'}; "
             f"{record['date']}, {record['seconds']:.0f} s on {record['machine']['cpu']}", "",
             "| Swahili read by | " + " | ".join(READINGS) + " |", "|---" * (len(READINGS) + 1) + "|"]
    lines += [f"| {name} | " + " | ".join(f"{row[k]:.3f}" for k in READINGS) + " |" for name, row in means.items()]
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
