"""How much of a trained student's alignment is one shift of every Swahili state, and what does such a shift do to
the answers?

A cosine cost can fall without any token finding its own English counterpart: adding the same vector to every
Swahili state (the mean English state minus the mean Swahili state, a "language offset") brings all of them
nearer to all the English states at once. This reads the AfriMMLU prompts after layer L, as ``oracle_transport.py``
does, and scores the answers with the question-and-option states replaced by:

* ``zero-shot``: the base model's Swahili states;
* ``student RUN``: each trained student's (``--student`` takes several; its own answers: a student reads the
  whole Swahili prompt);
* ``global offset``: the base model's Swahili states plus one language offset, measured on the run's held-out bitext
  (every sentence's tokens but position 0, the attention sink);
* ``prompt offset``: plus the offset between this prompt's own English and Swahili content (an oracle: it knows
  the English question's mean state);
* ``content hard x0.25``: each token moved a quarter of the way to the English state its plan sends most mass to.

Beside each row, the content's transport cost (training's geometry and blur), plain and centred (``ot.center``:
each cloud's mean removed, so a shift costs nothing). For each student, how much of its
displacement from the base model's states is a shift shared by every token (the squared norm of the mean
displacement over the mean squared displacement), and the cosine between that shift and the language offset; and
whether the student went towards each token's own English target (the hard oracle's) and how far: the
least-squares fraction of the way (the quarter-way oracle has 0.25) and the mean cosine between its move and
the oracle's, each also with the shift shared by every token removed from both moves; once on the raw states that
the layers above read, once in the cost's geometry (after the final RMSNorm, unit length), which weighs each
dimension by the final norm's gain and ignores length.

    python experiments/reasoning/offset.py --student outputs/reasoning/dev-strong-300/student --blur 0.05 \\
        --out experiments/reasoning/offset/val-strong300
    python experiments/reasoning/offset.py --student outputs/reasoning/{dev-strong-300,dev-strong-center}/student \\
        --out experiments/reasoning/offset/val-center
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from content_context import inputs, students_parser
from oracle_transport import (
    content_cost,
    cost_geometry,
    letters,
    prompt_and_content,
    replaced_after,
    states_by_layer,
    summary,
    tokens_and_content,
    transported,
)

from optical_lightning.evaluation.questions import MCQuestion
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


def toward_targets(moved: torch.Tensor, wanted: torch.Tensor) -> dict[str, float]:
    """A student's move ``moved`` (T, H) against the move to each token's own target ``wanted`` (T, H): ``along``, the
    least-squares fraction of the way, :math:`\\sum_t \\langle m_t, w_t\\rangle / \\sum_t \\|w_t\\|^2`; ``cos``, the
    mean cosine between the two moves; and ``token along`` / ``token cos``, the same after each move's mean over
    the tokens (its shared shift) is removed: only what the student moved token by token."""
    out = {}
    for prefix, m, w in (("", moved, wanted), ("token ", moved - moved.mean(0), wanted - wanted.mean(0))):
        out[f"{prefix}along"] = float((m * w).sum() / w.pow(2).sum().clamp_min(1e-12))
        out[f"{prefix}cos"] = float(F.cosine_similarity(m, w, dim=-1, eps=1e-12).mean())
    return out


def read(encoder: CausalLMEncoder, student: CausalLMEncoder | None, sw_q: MCQuestion, en_q: MCQuestion, layer: int,
         heads: dict[str, OTDistillationHead], offset: torch.Tensor
         ) -> tuple[dict[str, tuple[torch.Tensor, dict[str, float]]], dict[str, float] | None]:
    """One question's rows: name -> (its four letter log-likelihoods, its content costs under each head); the
    base model's rows without ``student``, else the student's row and its move (:func:`displacement`,
    :func:`toward_targets`)."""
    lm, base, tokenizer = encoder.lm, encoder.base_lm, encoder.tokenizer
    sw_prompt, en_prompt = prompt_and_content(sw_q)[0], prompt_and_content(en_q)[0]
    sw_ids, sw_mask = tokens_and_content(tokenizer, *prompt_and_content(sw_q))
    en_ids, en_mask = tokens_and_content(tokenizer, *prompt_and_content(en_q))
    sw_h, en_h = states_by_layer(lm, sw_ids)[layer][0].float(), states_by_layer(lm, en_ids)[layer][0].float()

    def costs(states: torch.Tensor) -> dict[str, float]:
        return {kind: content_cost(base, head, en_h, states, en_mask, sw_mask) for kind, head in heads.items()}

    if student is not None:
        student_h = states_by_layer(student.lm, sw_ids)[layer][0].float()
        row = (letters(student.lm, tokenizer, sw_prompt), costs(student_h))
        target = transported(sw_h, en_h, sw_mask, en_mask, heads["cost"], hard=True)
        moved = (student_h - sw_h)[sw_mask]
        shared_share, cos_offset = displacement(moved, offset)
        unit = lambda h: cost_geometry(base, h[sw_mask])  # noqa: E731
        in_cost = toward_targets(unit(student_h) - unit(sw_h), unit(target) - unit(sw_h))
        return {"student": row}, {"shared_share": shared_share, "cos_to_language_offset": cos_offset,
                                  **toward_targets(moved, (target - sw_h)[sw_mask]),
                                  **{f"cost-geometry {key}": value for key, value in in_cost.items()}}
    shifted = {"zero-shot": sw_h, "global offset": sw_h.clone(), "prompt offset": sw_h.clone(),
               "content hard x0.25": transported(sw_h, en_h, sw_mask, en_mask, heads["cost"], hard=True, share=0.25)}
    shifted["global offset"][sw_mask] += offset
    shifted["prompt offset"][sw_mask] += en_h[en_mask].mean(0) - sw_h[sw_mask].mean(0)
    rows = {"English": (letters(lm, tokenizer, en_prompt), {})}
    for name, states in shifted.items():
        with replaced_after(base, layer, states):
            rows[name] = (letters(lm, tokenizer, sw_prompt), costs(states))
    return rows, None


def main(argv: list[str] | None = None) -> None:
    args = students_parser(__doc__).parse_args(argv)

    started = time.time()
    qset, questions, pairs = inputs(args)
    load = lambda: load_causal_lm(args.model, align_layer=args.layer, dtype=args.dtype,  # noqa: E731
                                  cache_dir=args.cache_dir)
    encoder = load()
    heads = {"cost": OTDistillationHead(blur=args.blur), "centred cost": OTDistillationHead(blur=args.blur, center=True)}
    offset = language_offset(encoder.lm, encoder.tokenizer, pairs, args.layer)
    logliks: dict[str, list] = defaultdict(list)
    costs: dict[str, dict[str, list[float]]] = {name: defaultdict(list) for name in heads}
    moves: dict[str, dict[str, float]] = {}
    readers = [("base", encoder)] + [(f"student {Path(s).parent.name}", s) for s in args.student]
    for name, reader in readers:
        if name != "base":  # each student adapts a base model of its own (a model holds one student's adapters)
            encoder = load()
            reader = CausalLMEncoder.from_pretrained(reader, teacher=encoder, frozen=True)
        student_moves: dict[str, list[float]] = defaultdict(list)
        for sw_q, en_q in zip(questions, qset.english):
            rows, move = read(encoder, reader if name != "base" else None, sw_q, en_q, args.layer, heads, offset)
            for row, (ll, row_costs) in rows.items():
                row = name if row == "student" else row
                logliks[row].append(ll)
                for kind, value in row_costs.items():
                    costs[kind][row].append(value)
            for key, value in (move or {}).items():
                student_moves[key].append(value)
        if name != "base":
            moves[name] = {key: sum(values) / len(values) for key, values in student_moves.items()}
    rows = summary({k: torch.stack(v) for k, v in logliks.items()}, dict(costs["cost"]), [q.answer for q in questions])
    for row, values in costs["centred cost"].items():
        rows[row]["centred cost"] = sum(values) / len(values)
    record = {"model": args.model, "students": args.student, "split": args.split, "layer": args.layer,
              "blur": args.blur, "dtype": args.dtype, "n": len(questions), "n_pairs": len(pairs), "summary": rows,
              "student_displacement": moves, "offset_norm": float(offset.norm()), "costs": costs,
              "machine": machine(), "date": time.strftime("%Y-%m-%d"), "seconds": round(time.time() - started, 1)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(record, indent=1))
    table = [f"AfriMMLU sw {args.split}, {len(questions)} questions; language offset from {len(pairs)} held-out pairs of "
             f"{args.bitext} (norm {record['offset_norm']:.2f}); layer {args.layer}, blur {args.blur}, {args.model} "
             f"({args.dtype}); {record['date']}, {record['seconds']:.0f} s on {record['machine']['cpu']}", "",
             "| Swahili content states after the layer | accuracy | agreement with English | right letter's probability "
             "| content transport cost | centred |", "|---|---|---|---|---|---|"]
    table += [f"| {k} | {v['accuracy']:.3f} | {v['agreement']:.3f} | {v['gold_prob']:.3f} | "
              + " | ".join(f"{v[c]:.3f}" if c in v else "–" for c in heads) + " |" for k, v in rows.items()]
    table += ["", "Each student's displacement from the base model's Swahili content states: the share of its mean squared "
              "length that one shift shared by every token carries, and that shift's cosine to the language offset "
              "(means over questions):", ""]
    table += [f"- {name}: {m['shared_share']:.3f}, cosine {m['cos_to_language_offset']:.3f}" for name, m in moves.items()]
    table += ["", "Each student's move against the move to each token's own English target (the hard oracle's), means over "
              "questions: the fraction of the way (least squares; the quarter-way oracle: 0.25) and the cosine between "
              "the moves, of the whole move and of its token-specific part (each move's shared shift removed); on the raw "
              "states, and in the cost's geometry (after the final RMSNorm, unit length):", "",
              "| student | fraction of the way | cosine | token-specific fraction | token-specific cosine |",
              "|---|---|---|---|---|"]
    table += [f"| {name}{geometry} | {m[prefix + 'along']:.3f} | {m[prefix + 'cos']:.3f} | "
              f"{m[prefix + 'token along']:.3f} | {m[prefix + 'token cos']:.3f} |"
              for name, m in moves.items()
              for geometry, prefix in (("", ""), (", cost geometry", "cost-geometry "))]
    args.out.with_suffix(".md").write_text("\n".join(table) + "\n")
    print("\n".join(table))


if __name__ == "__main__":
    main()
