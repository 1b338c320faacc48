"""Would a squared-distance cost on the raw states align anything the cosine cost does not?

Training transports unit vectors (cosine cost). On the raw residual stream after layer L, a squared distance splits
exactly into a direction part and a length part,

    1/2 |x - y|^2 = |x| |y| (1 - cos(x, y)) + 1/2 (|x| - |y|)^2,

so it can differ from the cosine cost only where token lengths vary. This measures, on the AfriMMLU prompts' question
and option tokens (the base model reading English and Swahili, as ``oracle_transport.py`` reads them):

* the lengths of the content tokens' raw states, and of position 0 (the attention sink) for contrast;
* under the cosine plan, the share of the transported squared distance that is the length part;
* how often each Swahili token's hard target (the English token it sends most mass to) is the same under the
  squared-distance plan (the states divided by the English tokens' root-mean-square length, so the blur keeps its
  cosine-distance units) as under the cosine plan.

    python experiments/reasoning/state_norms.py --out experiments/reasoning/state-norms/val
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from oracle_transport import DATA, prompt_and_content, tokens_and_content

from optical_lightning.evaluation.questions import QuestionSet
from optical_lightning.losses.ot import OTDistillationHead, cosine_cost
from optical_lightning.models.causal_lm import load_causal_lm
from optical_lightning.utils.resources import machine


def plan(head: OTDistillationHead, x: torch.Tensor, y: torch.Tensor, cost: torch.Tensor) -> torch.Tensor:
    """The entropic plan (English, Swahili) for a precomputed cost between clouds ``x`` and ``y``."""
    a, b = torch.full((1, len(x)), 1 / len(x)), torch.full((1, len(y)), 1 / len(y))
    return head.solve(a, x[None], b, y[None], cost[None])[0]


def measure(x: torch.Tensor, y: torch.Tensor, head: OTDistillationHead) -> dict[str, float]:
    """The length share and the hard-target overlap for one prompt's English ``x`` and Swahili ``y`` raw states."""
    nx, ny = x.norm(dim=-1), y.norm(dim=-1)
    ux, uy = F.normalize(x, dim=-1), F.normalize(y, dim=-1)
    cost = cosine_cost(ux[None], uy[None])[0]
    p_cos = plan(head, ux, uy, cost)
    angular = nx[:, None] * ny[None] * cost
    length = 0.5 * (nx[:, None] - ny[None]) ** 2
    scale = nx.pow(2).mean().sqrt()
    xs, ys = x / scale, y / scale
    p_sq = plan(head, xs, ys, 0.5 * torch.cdist(xs, ys) ** 2)
    return {"length_share": float((p_cos * length).sum() / (p_cos * (length + angular)).sum()),
            "same_hard_target": float((p_cos.argmax(0) == p_sq.argmax(0)).float().mean()),
            "cosine_cost": float((p_cos * cost).sum())}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="Qwen/Qwen2.5-Coder-1.5B-Instruct")
    parser.add_argument("--split", default="val")
    parser.add_argument("--layer", type=int, default=14)
    parser.add_argument("--blur", type=float, default=0.1)
    parser.add_argument("--dtype", default="bf16")
    parser.add_argument("--cache-dir", default=".cache")
    parser.add_argument("--data", default=DATA)
    parser.add_argument("--max-questions", type=int)
    parser.add_argument("--out", type=Path, required=True, help="writes OUT.json and OUT.md")
    args = parser.parse_args(argv)

    started = time.time()
    qset = QuestionSet(f"{args.data}/sw.{args.split}.jsonl", f"{args.data}/en.{args.split}.jsonl", "sw",
                       max_questions=args.max_questions)
    questions = qset.load()
    if not questions:
        raise SystemExit(f"error: {qset.skipped}")
    # raw states: no final norm, no unit length; only the layers up to --layer run
    encoder = load_causal_lm(args.model, align_layer=args.layer, final_norm=False, normalize=False, dtype=args.dtype,
                             cache_dir=args.cache_dir)
    head, tokenizer = OTDistillationHead(blur=args.blur), encoder.tokenizer
    lengths: dict[str, list[float]] = {"en": [], "sw": [], "sink": []}
    rows = []
    for sw_q, en_q in zip(questions, qset.english):
        states = {}
        for lang, q in (("en", en_q), ("sw", sw_q)):
            ids, content = tokens_and_content(tokenizer, *prompt_and_content(q))
            with torch.inference_mode():
                h = encoder.hidden_states(ids[None], torch.ones(1, len(ids), dtype=torch.long))[0].float()
            states[lang] = h[content]
            lengths[lang] += h[content].norm(dim=-1).tolist()
            lengths["sink"].append(float(h[0].norm()))
        rows.append(measure(states["en"], states["sw"], head))

    def stats(values: list[float]) -> dict[str, float]:
        t = torch.tensor(values)
        return {"mean": float(t.mean()), "std": float(t.std()), "p5": float(t.quantile(0.05)),
                "p95": float(t.quantile(0.95)), "n": len(values)}

    summary = {"lengths": {k: stats(v) for k, v in lengths.items()},
               **{k: float(torch.tensor([r[k] for r in rows]).mean()) for k in rows[0]}}
    record = {"model": args.model, "split": args.split, "layer": args.layer, "blur": args.blur, "dtype": args.dtype,
              "n": len(questions), "summary": summary, "per_question": rows,
              "machine": machine(),
              "date": time.strftime("%Y-%m-%d"), "seconds": round(time.time() - started, 1)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(record, indent=1))
    lines = [f"AfriMMLU sw {args.split}, {len(questions)} questions, {args.model} ({args.dtype}), raw states after layer "
             f"{args.layer}, blur {args.blur}, {record['date']}, {record['seconds']:.0f} s on {record['machine']['cpu']} "
             f"({record['machine']['torch_threads']} threads)", "",
             "| tokens | mean length | std | 5th-95th percentile | n |", "|---|---|---|---|---|"]
    names = {"en": "English content", "sw": "Swahili content", "sink": "position 0 (both prompts)"}
    lines += [f"| {names[k]} | {v['mean']:.1f} | {v['std']:.1f} | {v['p5']:.1f}-{v['p95']:.1f} | {v['n']} |"
              for k, v in summary["lengths"].items()]
    lines += ["", f"Under the cosine plan the length part is {summary['length_share']:.4f} of the transported squared "
              f"distance (mean over questions); the squared-distance plan gives the same hard target to "
              f"{summary['same_hard_target']:.3f} of the Swahili content tokens; cosine transport cost "
              f"{summary['cosine_cost']:.3f}."]
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
