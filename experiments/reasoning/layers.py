"""Where in the language model are a sentence and its translation alike, before and after training?

For every decoder layer, "find the translation" on held-out pairs: each Swahili sentence's pooled hidden state
(per-token L2, mean over real tokens, L2) against all the English ones, P@1 by cosine. The base model reads both
sides; a saved student (a run's ``student/`` adapter folder) reads the Swahili side while the base model reads the
English one, which is what the student is trained for at its ``align_layer``. The curve shows where the model is
most language-agnostic and whether an alignment made at one layer survives the layers above it.

    python experiments/reasoning/layers.py --student outputs/reasoning/default-val/student \
        --out experiments/reasoning/layers
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from optical_lightning.data.bitext import read_bitext
from optical_lightning.models.causal_lm import CausalLMEncoder, load_causal_lm

PAIRS = "data/eval/translation/sw/afriqa-questions-dev.tsv"


@torch.no_grad()
def pooled_by_layer(encoder: CausalLMEncoder, texts: list[str], batch_size: int = 16) -> torch.Tensor:
    """(layers + 1, sentences, hidden) pooled states: the embeddings, then every decoder layer's output."""
    out = []
    for i in range(0, len(texts), batch_size):
        batch = encoder.tokenize(texts[i:i + batch_size])
        states = encoder.lm(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                            output_hidden_states=True).hidden_states
        mask = batch["attention_mask"][None, :, :, None].float()
        tokens = F.normalize(torch.stack(states).float(), dim=-1)
        out.append(F.normalize((tokens * mask).sum(2) / mask.sum(2), dim=-1))
    return torch.cat(out, dim=1)


def p_at_1(queries: torch.Tensor, docs: torch.Tensor) -> list[float]:
    """Per layer: the share of queries whose nearest document is their own translation."""
    hits = (queries @ docs.transpose(-1, -2)).argmax(-1) == torch.arange(queries.shape[1])
    return hits.float().mean(-1).tolist()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="Qwen/Qwen2.5-Coder-1.5B-Instruct")
    parser.add_argument("--student", help="a run's student/ folder")
    parser.add_argument("--pairs", default=PAIRS, help="held-out bitext (id, en, sw)")
    parser.add_argument("--lang", default="sw")
    parser.add_argument("--cache-dir", default=".cache")
    parser.add_argument("--out", type=Path, required=True, help="writes OUT.json and OUT.png")
    args = parser.parse_args(argv)

    started = time.time()
    pairs = read_bitext(args.pairs, args.lang)
    base = load_causal_lm(args.model, align_layer=1, cache_dir=args.cache_dir)
    english = pooled_by_layer(base, [p.en for p in pairs])
    curves = {"base": p_at_1(pooled_by_layer(base, [p.tgt for p in pairs]), english)}
    if args.student:
        student = CausalLMEncoder.from_pretrained(args.student, teacher=base, frozen=True)
        curves[args.student] = p_at_1(pooled_by_layer(student, [p.tgt for p in pairs]), english)
    record = {"pairs": args.pairs, "n": len(pairs), "model": args.model, "metric": "P@1 sw->en, pooled per layer",
              "layers": list(range(len(curves["base"]))), "p_at_1": curves,
              "machine": {"cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads()},
              "date": time.strftime("%Y-%m-%d"), "seconds": round(time.time() - started, 1)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(record, indent=1))
    plot(record, args.out.with_suffix(".png"))
    for name, values in curves.items():
        print(name, " ".join(f"{v:.2f}" for v in values))


def plot(record: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    for name, values in record["p_at_1"].items():
        ax.plot(record["layers"], values, marker=".", label=Path(name).parent.name or name)
    ax.set(xlabel="hidden state after layer (0 = embeddings)", ylabel="P@1 find the translation",
           title=f"{record['model']}: {record['n']} held-out pairs")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
