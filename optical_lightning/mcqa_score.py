"""Score a language model on multiple-choice questions: ``python -m optical_lightning.mcqa_score --model MODEL
--questions FILE [--reference EN_FILE] [--adapter RUN_DIR/student] [--max-questions N] [--quantize int8]
[--out predictions.json]``.

Any Global-MMLU-format file (JSONL or CSV: ``question, option_a .. option_d, answer, subject``) is answered by
letter log-likelihood, as lm-evaluation-harness scores MMLU (:mod:`optical_lightning.evaluation.loglik`).
``--model`` is a Hugging Face folder or hub id (``Qwen/Qwen2.5-Coder-1.5B-Instruct`` resolves offline to its
converted copy); ``--adapter`` adds a trained student's LoRA adapters (a PEFT folder, ``RUN_DIR/student``).
Prints accuracy with its 95% interval, chance, per-subject accuracy and, with ``--reference`` (the same questions
in English, parallel by id), the model's accuracy in English and how often it gives the same answer in both.
Model code from a folder is never run (no ``trust_remote_code``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table

from optical_lightning.evaluation.loglik import question_logliks, resolve_template
from optical_lightning.evaluation.mcqa import accuracy_report
from optical_lightning.evaluation.questions import QuestionSet
from optical_lightning.models.loading import _load_error
from optical_lightning.models.quantize import QUANTIZE, int8_copy
from optical_lightning.models.registry import resolve_model
from optical_lightning.utils.atomic import atomic_write_json
from optical_lightning.utils.errors import ConfigError, DataError, ModelLoadError, require_int, user_error
from optical_lightning.utils.precision import inference_dtype

ADAPTER_CONFIG = "adapter_config.json"


def check_inputs(args: argparse.Namespace) -> tuple[str, Path | None]:
    """Every argument checked before the model loads (a minute for 1.5B parameters): the template, the
    numbers, the files, the adapter folder and ``--out``. Returns the template and the ``--out`` path."""
    template = resolve_template(args.template.replace("\\n", "\n"), "--template")
    require_int("--batch-size", args.batch_size, minimum=1)
    require_int("--max-questions", args.max_questions, minimum=1, allow_none=True)
    for flag, given in (("--questions", args.questions), ("--reference", args.reference)):
        if given is not None and not Path(given).is_file():
            raise DataError(f"{flag} {given}: no such file; give a Global-MMLU JSONL or CSV file "
                            f"(question, option_a..option_d, answer, subject)")
    if args.adapter is not None and not (Path(args.adapter) / ADAPTER_CONFIG).is_file():
        raise ModelLoadError(f"--adapter {args.adapter}: no {ADAPTER_CONFIG} there; give the folder a LoRA student "
                             f"was saved to (RUN_DIR/student)")
    out = None
    if args.out is not None:
        out = Path(args.out).expanduser()
        if out.is_dir():
            raise ConfigError(f"--out {args.out} is a directory; give the JSON file to write, e.g. {out / 'predictions.json'}")
        if not out.resolve().parent.is_dir():
            raise ConfigError(f"--out {args.out}: the folder {out.resolve().parent} does not exist; create it first")
        for given in (args.questions, args.reference):
            if given is not None and out.resolve() == Path(given).resolve():
                raise ConfigError(f"--out {args.out} is the input {given}; writing would overwrite it: choose another --out")
    return template, out


def load_model(name: str, adapter: str | None, dtype: str, cache_dir: str | None) -> tuple[Any, Any]:
    """(causal LM, tokenizer) of ``name``, with ``adapter``'s LoRA weights when given; a folder that is no
    model, or an adapter made for another base model, is one line."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    location = resolve_model(name, cache_dir)
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")
    torch_dtype = inference_dtype(dtype) or torch.float32
    try:
        tokenizer = AutoTokenizer.from_pretrained(location, local_files_only=offline)
        model = AutoModelForCausalLM.from_pretrained(location, dtype=torch_dtype, local_files_only=offline)
    except (OSError, ValueError) as e:
        if isinstance(e, ModelLoadError):
            raise
        raise _load_error(name, location, offline, "--model", e) from e
    if adapter is None:
        return model.eval(), tokenizer
    from peft import PeftModel

    base = json.loads((Path(adapter) / ADAPTER_CONFIG).read_text(encoding="utf-8")).get("base_model_name_or_path")
    try:
        model = PeftModel.from_pretrained(model, adapter, is_trainable=False)
    except (RuntimeError, ValueError, KeyError) as e:  # size mismatch, target modules that do not exist
        on = f" (it was trained on {base})" if base else ""
        raise ModelLoadError(f"--adapter {adapter} does not fit --model {name}{on}: {_why(e)}; pass the base "
                             f"model the student was trained from") from e
    if base and base != name and resolve_model(base, cache_dir) != location:
        logging.getLogger(__name__).warning("--adapter %s was trained on %r, not --model %s; its weights fit, "
                                            "so scoring goes on", adapter, base, name)
    return model.eval(), tokenizer


def _why(error: Exception) -> str:
    """The first size mismatch of a failed adapter load, shortened (``q_proj.lora_A: [4, 32] in the adapter,
    [4, 64] in the model``), else the error's first 200 characters."""
    text = " ".join(str(error).split())
    found = re.search(r"size mismatch for (\S+): copying a param with shape torch.Size\((\[.*?\])\) from checkpoint, "
                      r"the shape in current model is torch.Size\((\[.*?\])\)", text)
    if found is None:
        return text[:200]
    param, theirs, ours = found.groups()
    return f"size mismatch of {param.removeprefix('base_model.model.')}: {theirs} in the adapter, {ours} in the model"


def subject_table(title: str, report: dict[str, Any], english: dict[str, Any] | None) -> Table:
    table = Table(title=title)
    for column in ("subject", "n", "accuracy", *(("accuracy (en)", "agreement") if english else ())):
        table.add_column(column, justify="left" if column == "subject" else "right")
    for subject, row in report["per_subject"].items():
        extra = (f"{english['per_subject'][subject]['accuracy']:.3f}", f"{row['agreement']:.3f}") if english else ()
        table.add_row(subject, str(row["n"]), f"{row['accuracy']:.3f}", *extra)
    return table


def score(args: argparse.Namespace, console: Console) -> dict[str, Any]:
    """Check, read, load, score, print, write; returns what ``--out`` holds."""
    template, out = check_inputs(args)
    questions = QuestionSet(args.questions, args.reference, max_questions=args.max_questions, seed=args.seed)
    questions.load()
    model, tokenizer = load_model(args.model, args.adapter, args.dtype, args.cache_dir)
    if args.quantize == "int8":  # the adapters merged into the int8 weights; the float model is no longer needed
        model = int8_copy(model, merge_adapters=args.adapter is not None)
    start = time.perf_counter()
    logliks = question_logliks(model, tokenizer, questions.questions, template, args.batch_size, progress=True)
    english = question_logliks(model, tokenizer, questions.english, template, args.batch_size, progress=True) \
        if args.reference else None
    seconds = time.perf_counter() - start
    en_pred = None if english is None else english.argmax(1)
    report = accuracy_report(questions.questions, logliks.argmax(1), en_pred)
    en_report = None if english is None else accuracy_report(questions.english, en_pred)
    n_scored = len(questions.questions) * (2 if english is not None else 1)
    console.print(f"[bold]{args.questions}[/bold]: accuracy {report['accuracy']:.3f} "
                  f"[{report['ci95_low']:.3f}, {report['ci95_high']:.3f}] (95% Wilson), chance {report['chance']:.3f}, "
                  f"n={report['n']}; {seconds / n_scored:.2f} s per question")
    if en_report is not None:
        console.print(f"[bold]{args.reference}[/bold] (English): accuracy {en_report['accuracy']:.3f} "
                      f"[{en_report['ci95_low']:.3f}, {en_report['ci95_high']:.3f}]; the same answer in both: "
                      f"agreement {report['agreement']:.3f}")
    console.print(subject_table(f"{args.model}{' + ' + args.adapter if args.adapter else ''}", report, en_report))
    result = {"model": args.model, "adapter": args.adapter, "questions": args.questions, "reference": args.reference,
              "template": template, "ids": [q.id for q in questions.questions],
              "subjects": [q.subject for q in questions.questions],
              "answers": [q.answer for q in questions.questions], "predicted": report["predicted"],
              "loglik": logliks.tolist(), "reference_predicted": None if en_report is None else en_report["predicted"],
              "reference_loglik": None if english is None else english.tolist(),
              "metrics": {k: v for k, v in report.items() if k != "predicted"},
              "reference_metrics": None if en_report is None else {k: v for k, v in en_report.items() if k != "predicted"},
              "seconds_per_question": seconds / n_scored}
    if out is not None:
        atomic_write_json(out, result)
        console.print(f"wrote the predictions to [bold]{out}[/bold]")
    return result


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m optical_lightning.mcqa_score", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="a causal LM: Hugging Face folder or hub id")
    p.add_argument("--adapter", help="a PEFT LoRA folder trained on --model (a run's student/)")
    p.add_argument("--questions", required=True, help="Global-MMLU JSONL/CSV: question, option_a..option_d, answer")
    p.add_argument("--reference", help="the same questions in English, parallel by id: English accuracy and agreement")
    p.add_argument("--max-questions", type=int, default=None, help="a seeded subset, stratified by subject")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--template", default="default",
                   help="the prompt: `default` (the probe's English one) or a string with {subject} {question} "
                        "{option_a}..{option_d}; \\n is a new line")
    p.add_argument("--batch-size", type=int, default=8, help="prompts per forward pass")
    p.add_argument("--dtype", choices=["auto", "32", "bf16"], default="auto",
                   help="model precision; auto: bf16 where the hardware runs it natively")
    p.add_argument("--quantize", choices=list(QUANTIZE), default="none",
                   help="int8: an int8 copy of the linear layers (CPU only; faster without bf16 units, further from "
                        "the bf16 answers than float32)")
    p.add_argument("--cache-dir", default=None, help="where converted offline models are kept ($OPTICAL_CACHE_DIR)")
    p.add_argument("--out", help="JSON file to write: predictions, log-likelihoods and metrics")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="warning: %(message)s", stream=sys.stderr)
    try:
        score(args, Console())
    except Exception as e:
        if (cause := user_error(e)) is None:
            raise
        print(f"error: {cause}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
