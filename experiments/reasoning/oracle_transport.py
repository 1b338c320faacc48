"""The ceiling of token-level alignment: if the Swahili states after layer L *were* the English ones, transported
token by token, would the model answer as it does in English?

For each AfriMMLU question the base model reads the English prompt and the Swahili prompt up to layer L. The OT head
(cosine cost on unit states, Sinkhorn at the training blur) gives a plan P between the two prompts' question-and-
option tokens, and each Swahili token i is replaced by English states: its barycentric projection
``sum_j P_ji y_j / sum_j P_ji`` (``soft``), or the English state it sends most mass to (``hard``), with ``y`` the raw
(unnormalised) English states. The layers above L then read the replaced states in the Swahili sequence's own
positions, and the answer letters are scored as the study scores them. Rows:

* ``zero-shot``: the Swahili states as they are (the base model's Swahili answers);
* ``content soft`` / ``content hard``: question and option tokens replaced; the template's tokens (its English
  instruction, ``A.`` .. ``D.``, ``Answer:``) keep the states they have in the Swahili prompt. This is what a
  perfect alignment of the bitext's content would give the layers above;
* ``all soft``: every token transported, the template's too. The English template tokens after layer L have read the
  English question, so this row lets the English answer through the template and bounds the others from above;
* ``content hard xT`` (``--shares``): the content moved a share T of the way to its hard targets;
* ``student`` (``--student RUN/student``): a trained student reading the Swahili prompt;
* ``English``: the base model on the English prompt (the reference of agreement).

Beside each row, the Swahili content's transport cost to the English content, measured where training measures
it (after the final RMSNorm, unit length, cosine cost): how close a student must bring the content, in the units of
its training log, for the answers to follow.

    python experiments/reasoning/oracle_transport.py --layers 7,14,21 --out experiments/reasoning/oracle-transport/val
"""

from __future__ import annotations

import argparse
import json
import string
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from optical_lightning.evaluation.loglik import (
    CONTINUATIONS,
    DEFAULT_TEMPLATE,
    continuation_logliks,
    encode_pair,
    gold_probabilities,
)
from optical_lightning.evaluation.questions import MCQuestion, QuestionSet
from optical_lightning.losses.ot import OTDistillationHead
from optical_lightning.models.causal_lm import CausalLMEncoder, load_causal_lm
from optical_lightning.utils.resources import machine

DATA = "data/eval/mcqa/afrimmlu"
CONTENT = ("question", "option_a", "option_b", "option_c", "option_d")
#: the transported rows: which tokens move (the question and options, or all) and whether to the hard targets
TRANSPORTS = {"content soft": ("content", False), "content hard": ("content", True), "all soft": ("all", False)}
VARIANTS = ("zero-shot", *TRANSPORTS)


def prompt_and_content(question: MCQuestion, template: str = DEFAULT_TEMPLATE) -> tuple[str, list[tuple[int, int]]]:
    """The scored prompt and the character spans of its question and options (the rest is the template)."""
    values = {"subject": question.subject.replace("_", " "), "question": question.question,
              **dict(zip(CONTENT[1:], question.choices))}
    text, spans = "", []
    for literal, field, _, _ in string.Formatter().parse(template):
        text += literal
        if field is not None:
            if field in CONTENT:
                spans.append((len(text), len(text) + len(values[field])))
            text += values[field]
    return text, spans


def tokens_and_content(tokenizer: Any, prompt: str, spans: list[tuple[int, int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """The prompt's tokens as the scorer feeds them (``encode_pair``'s context) and which lie in ``spans``."""
    ids = encode_pair(tokenizer, prompt, CONTINUATIONS[0])[0]
    offsets = tokenizer(prompt, return_offsets_mapping=True)["offset_mapping"]
    if len(offsets) != len(ids):
        raise ValueError("the tokenizer's offsets do not match the scored prompt's tokens")
    return torch.tensor(ids), torch.tensor([any(s < end and e > start for start, end in spans) for s, e in offsets])


@contextmanager
def replaced_after(lm: torch.nn.Module, layer: int, states: torch.Tensor) -> Iterator[None]:
    """Within the block, decoder layer ``layer`` of the causal LM ``lm`` (its base model: the hook holds for every
    view of it) outputs ``states`` (T, H) at the first T positions of every row instead of what it computed (the
    letters after the prompt keep theirs)."""

    def swap(module: torch.nn.Module, args: Any, output: Any) -> Any:
        hidden = (output[0] if isinstance(output, tuple) else output).clone()
        hidden[:, :len(states)] = states.to(hidden.dtype)
        return (hidden, *output[1:]) if isinstance(output, tuple) else hidden

    handle = lm.get_decoder().layers[layer - 1].register_forward_hook(swap)
    try:
        yield
    finally:
        handle.remove()


def letters(lm: torch.nn.Module, tokenizer: Any, prompt: str) -> torch.Tensor:
    """The four letters' log-likelihoods after the prompt, scored exactly as the study scores them."""
    return continuation_logliks(lm, tokenizer, [prompt], CONTINUATIONS, batch_size=len(CONTINUATIONS))[0]


@torch.inference_mode()
def states_by_layer(lm: torch.nn.Module, ids: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The prompt's hidden states: the embeddings, then after every decoder layer (the last after the final norm)."""
    return lm(input_ids=ids[None], output_hidden_states=True, use_cache=False).hidden_states


def transported(sw: torch.Tensor, en: torch.Tensor, sw_mask: torch.Tensor, en_mask: torch.Tensor,
                head: OTDistillationHead, hard: bool, share: float = 1.0) -> torch.Tensor:
    """``sw`` (T, H) with its masked tokens moved ``share`` of the way to English states of ``en`` (S, H), through
    the plan (1: replaced)."""
    y, x = sw[sw_mask].float(), en[en_mask].float()
    plan = head(F.normalize(x, dim=-1)[None], torch.ones(1, len(x)), F.normalize(y, dim=-1)[None],
                torch.ones(1, len(y))).plan[0]  # (English, Swahili)
    target = x[plan.argmax(0)] if hard else (plan.T @ x) / plan.sum(0)[:, None]
    out = sw.clone().float()
    out[sw_mask] = y + share * (target - y)
    return out


@torch.inference_mode()
def cost_geometry(lm: torch.nn.Module, states: torch.Tensor) -> torch.Tensor:
    """(T, H) raw states in the geometry the cost compares: after the final RMSNorm, unit length."""
    norm = lm.get_decoder().norm
    return F.normalize(norm(states.to(norm.weight.dtype)).float(), dim=-1)


@torch.inference_mode()
def content_cost(lm: torch.nn.Module, head: OTDistillationHead, en: torch.Tensor, sw: torch.Tensor,
                 en_mask: torch.Tensor, sw_mask: torch.Tensor) -> float:
    """The transport cost <P, C> between the two prompts' question-and-option tokens in the geometry training
    aligns (the final RMSNorm, unit length, cosine distance): how far the Swahili content is from the English."""
    x, y = cost_geometry(lm, en[en_mask]), cost_geometry(lm, sw[sw_mask])
    return float(head(x[None], torch.ones(1, len(x)), y[None], torch.ones(1, len(y))).transport_cost[0])


def run(encoder: CausalLMEncoder, questions: Sequence[MCQuestion], english: Sequence[MCQuestion],
        layers: Sequence[int], head: OTDistillationHead, shares: Sequence[float] = (),
        student: CausalLMEncoder | None = None,
        progress: Callable[[int], None] = lambda i: None) -> tuple[dict[str, torch.Tensor], dict[str, list[float]]]:
    """Per layer and row, the four letter log-likelihoods of every question (and the English ones), and the
    Swahili content's transport cost to the English content."""
    # the base model's view (any student's adapters off); the swap hooks sit on the shared decoder layers
    lm, base, tokenizer = encoder.lm, encoder.base_lm, encoder.tokenizer
    logliks: dict[str, list] = defaultdict(list)
    costs: dict[str, list[float]] = defaultdict(list)
    for i, (sw_q, en_q) in enumerate(zip(questions, english)):
        (sw_prompt, sw_spans), (en_prompt, en_spans) = prompt_and_content(sw_q), prompt_and_content(en_q)
        sw_ids, sw_content = tokens_and_content(tokenizer, sw_prompt, sw_spans)
        en_ids, en_content = tokens_and_content(tokenizer, en_prompt, en_spans)
        sw_states, en_states = states_by_layer(lm, sw_ids), states_by_layer(lm, en_ids)
        logliks["English"].append(letters(lm, tokenizer, en_prompt))
        zero_shot = letters(lm, tokenizer, sw_prompt)
        if student is not None:
            student_states, student_answer = states_by_layer(student.lm, sw_ids), letters(student.lm, tokenizer, sw_prompt)
        masks = {"content": (sw_content, en_content),
                 "all": (torch.ones(len(sw_ids), dtype=torch.bool), torch.ones(len(en_ids), dtype=torch.bool))}
        for layer in layers:
            sw_h, en_h = sw_states[layer][0], en_states[layer][0]

            def cost(states: torch.Tensor) -> float:
                return content_cost(base, head, en_h, states, en_content, sw_content)  # noqa: B023

            logliks[f"zero-shot @{layer}"].append(zero_shot)
            costs[f"zero-shot @{layer}"].append(cost(sw_h))
            if student is not None:
                logliks[f"student @{layer}"].append(student_answer)
                costs[f"student @{layer}"].append(cost(student_states[layer][0]))
            rows = {**{name: (tokens, hard, 1.0) for name, (tokens, hard) in TRANSPORTS.items()},
                    **{f"content hard x{t:g}": ("content", True, t) for t in shares}}
            for name, (tokens, hard, share) in rows.items():
                states = transported(sw_h, en_h, *masks[tokens], head, hard, share)
                with replaced_after(base, layer, states):
                    logliks[f"{name} @{layer}"].append(letters(lm, tokenizer, sw_prompt))
                costs[f"{name} @{layer}"].append(cost(states))
        progress(i + 1)
    return {name: torch.stack(rows) for name, rows in logliks.items()}, dict(costs)


def summary(logliks: dict[str, torch.Tensor], costs: dict[str, list[float]],
            answers: Sequence[int]) -> dict[str, dict[str, float]]:
    """Accuracy, agreement with the English answers, the right letter's probability and the content's mean
    transport cost to the English content, per row."""
    gold = torch.tensor(list(answers))
    english = logliks["English"].argmax(-1)
    return {name: {"accuracy": float((ll.argmax(-1) == gold).float().mean()),
                   "agreement": float((ll.argmax(-1) == english).float().mean()),
                   "gold_prob": float(gold_probabilities(ll, list(answers)).mean()),
                   **({"cost": sum(costs[name]) / len(costs[name])} if name in costs else {})}
            for name, ll in logliks.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="Qwen/Qwen2.5-Coder-1.5B-Instruct")
    parser.add_argument("--split", default="val", help="AfriMMLU split: val (dev, the default) or test")
    parser.add_argument("--lang", default="sw")
    parser.add_argument("--layers", default="14", help="comma-separated decoder layers, e.g. 7,14,21")
    parser.add_argument("--blur", type=float, default=0.1, help="the OT head's blur (training default 0.1)")
    parser.add_argument("--shares", default="", help="also move the content part of the way, e.g. 0.25,0.5,0.75")
    parser.add_argument("--student", help="a run's student/ folder: its Swahili answers and content cost beside")
    parser.add_argument("--max-questions", type=int)
    parser.add_argument("--dtype", default="bf16")
    parser.add_argument("--cache-dir", default=".cache")
    parser.add_argument("--data", default=DATA)
    parser.add_argument("--out", type=Path, required=True, help="writes OUT.json and OUT.md")
    args = parser.parse_args(argv)

    started = time.time()
    layers = [int(x) for x in args.layers.split(",")]
    qset = QuestionSet(f"{args.data}/{args.lang}.{args.split}.jsonl", f"{args.data}/en.{args.split}.jsonl", args.lang,
                       max_questions=args.max_questions)
    questions = qset.load()
    if not questions:
        raise SystemExit(f"error: {qset.skipped}")
    encoder = load_causal_lm(args.model, align_layer=max(layers), dtype=args.dtype, cache_dir=args.cache_dir)
    depth = len(encoder.base_lm.get_decoder().layers)
    if max(layers) >= depth:  # the last layer's hidden state is read after the final norm, not where the hook swaps
        raise SystemExit(f"error: --layers {args.layers}: choose layers below {depth}, the model's last")
    from rich.progress import Progress

    with Progress(transient=True) as bar:
        task = bar.add_task(f"{len(questions)} questions", total=len(questions))
        student = CausalLMEncoder.from_pretrained(args.student, teacher=encoder, frozen=True) if args.student else None
        shares = [float(x) for x in args.shares.split(",") if x]
        logliks, costs = run(encoder, questions, qset.english, layers, OTDistillationHead(blur=args.blur), shares,
                             student, progress=lambda i: bar.update(task, completed=i))
    rows = summary(logliks, costs, [q.answer for q in questions])
    record = {"model": args.model, "split": args.split, "lang": args.lang, "n": len(questions), "layers": layers,
              "blur": args.blur, "dtype": args.dtype, "student": args.student, "summary": rows, "costs": costs,
              "ids": [q.id for q in questions], "answers": [q.answer for q in questions],
              "logliks": {k: [[round(float(x), 5) for x in r] for r in v] for k, v in logliks.items()},
              "machine": machine(),
              "date": time.strftime("%Y-%m-%d"), "seconds": round(time.time() - started, 1)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(record))
    table = ["| states after the layer | accuracy | agreement with English | right letter's probability | "
             "content transport cost |", "|---|---|---|---|---|"] + [
        f"| {k} | {v['accuracy']:.3f} | {v['agreement']:.3f} | {v['gold_prob']:.3f} | "
        + (f"{v['cost']:.3f}" if "cost" in v else "–") + " |" for k, v in rows.items()]
    args.out.with_suffix(".md").write_text(
        f"AfriMMLU {args.lang} {args.split}, {len(questions)} questions, {args.model} ({args.dtype}), blur {args.blur}, "
        f"{record['date']}, {record['seconds']:.0f} s\n\n" + "\n".join(table) + "\n")
    print("\n".join(table))


if __name__ == "__main__":
    main()
