"""Does a student lower the transport cost by bringing each Swahili token to its own English counterpart, or by
pairing it with another English token?

The cost :math:`\\langle P, C\\rangle` re-solves the plan :math:`P` for every set of states, so it falls whenever the
Swahili tokens come near *some* English tokens. This reads each AfriMMLU prompt's question-and-option tokens after
layer L in the cost's geometry (the final RMSNorm, unit length), with the base model in English and in Swahili and
with each student in Swahili, and reports per student:

* ``same counterpart``: the share of Swahili tokens whose plan sends most of their mass to the same English token
  under the student's plan as under the base model's;
* ``cost``: the student's cost under its own plan, and ``cost, base plan``: under the base model's plan held fixed
  (the pairing the zero-shot states imply). A student that moved each token towards its own counterpart lowers both.

    python experiments/reasoning/pairing.py --student outputs/reasoning/{dev-strong-300,dev-strong-r32}/student \\
        --out experiments/reasoning/pairing/val
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
from content_context import inputs, students_parser
from oracle_transport import cost_geometry, prompt_and_content, states_by_layer, tokens_and_content

from optical_lightning.losses.ot import OTDistillationHead, cosine_cost
from optical_lightning.models.causal_lm import CausalLMEncoder, load_causal_lm
from optical_lightning.utils.resources import machine


def plan(head: OTDistillationHead, en: torch.Tensor, sw: torch.Tensor) -> torch.Tensor:
    """(S, T) the entropic plan between unit vectors ``en`` (S, H) and ``sw`` (T, H), uniform weights."""
    return head(en[None], torch.ones(1, len(en)), sw[None], torch.ones(1, len(sw))).plan[0]


def content(base: torch.nn.Module, lm: torch.nn.Module, ids: torch.Tensor, mask: torch.Tensor, layer: int) -> torch.Tensor:
    """The masked tokens' states after ``layer`` of ``lm``, in the cost's geometry (``base``'s final norm)."""
    return cost_geometry(base, states_by_layer(lm, ids)[layer][0][mask])


def pairing(head: OTDistillationHead, en: torch.Tensor, base_sw: torch.Tensor, student_sw: torch.Tensor
            ) -> dict[str, float]:
    """One prompt's content in the cost's geometry: the share of Swahili tokens with the same English counterpart
    under the student's plan as under the base model's, and the student's cost under each plan."""
    base_plan, own_plan = plan(head, en, base_sw), plan(head, en, student_sw)
    cost = cosine_cost(en[None], student_sw[None])[0]
    return {"same counterpart": float((own_plan.argmax(0) == base_plan.argmax(0)).float().mean()),
            "cost": float((own_plan * cost).sum()), "cost, base plan": float((base_plan * cost).sum()),
            "base cost": float((base_plan * cosine_cost(en[None], base_sw[None])[0]).sum())}


def main(argv: list[str] | None = None) -> None:
    args = students_parser(__doc__).parse_args(argv)

    started = time.time()
    qset, questions, _ = inputs(args)
    head = OTDistillationHead(blur=args.blur)
    means: dict[str, dict[str, float]] = {}
    encoder = load_causal_lm(args.model, align_layer=args.layer, dtype=args.dtype, cache_dir=args.cache_dir)
    base, layer, tokenizer = encoder.base_lm, args.layer, encoder.tokenizer
    prompts = [(tokens_and_content(tokenizer, *prompt_and_content(sw_q)),
                tokens_and_content(tokenizer, *prompt_and_content(en_q))) for sw_q, en_q in zip(questions, qset.english)]
    # the base model's states are the same for every student: read them once
    base_states = [(content(base, encoder.lm, en_ids, en_mask, layer), content(base, encoder.lm, sw_ids, sw_mask, layer))
                   for (sw_ids, sw_mask), (en_ids, en_mask) in prompts]
    for i, student_dir in enumerate(args.student):
        if i:  # each student adapts a base model of its own (a model holds one student's adapters)
            encoder = load_causal_lm(args.model, align_layer=args.layer, dtype=args.dtype, cache_dir=args.cache_dir)
            base = encoder.base_lm
        student = CausalLMEncoder.from_pretrained(student_dir, teacher=encoder, frozen=True)
        rows = [pairing(head, en, sw, content(base, student.lm, sw_ids, sw_mask, layer))
                for (en, sw), ((sw_ids, sw_mask), _) in zip(base_states, prompts)]
        means[Path(student_dir).parent.name] = {key: sum(r[key] for r in rows) / len(rows) for key in rows[0]}
    record = {"model": args.model, "students": args.student, "split": args.split, "layer": args.layer,
              "blur": args.blur, "dtype": args.dtype, "n": len(questions), "means": means, "machine": machine(),
              "date": time.strftime("%Y-%m-%d"), "seconds": round(time.time() - started, 1)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(record, indent=1))
    table = [f"AfriMMLU sw {args.split}, {len(questions)} questions' content tokens; layer {args.layer}, blur {args.blur}, "
             f"{args.model} ({args.dtype}); {record['date']}, {record['seconds']:.0f} s on {record['machine']['cpu']}", "",
             "| student | same English counterpart as the base model's plan | cost, own plan | cost, base model's plan "
             "| base model's cost |", "|---|---|---|---|---|"]
    table += [f"| {name} | {m['same counterpart']:.3f} | {m['cost']:.3f} | {m['cost, base plan']:.3f} | "
              f"{m['base cost']:.3f} |" for name, m in means.items()]
    args.out.with_suffix(".md").write_text("\n".join(table) + "\n")
    print("\n".join(table))


if __name__ == "__main__":
    main()
