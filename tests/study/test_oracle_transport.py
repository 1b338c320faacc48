"""`experiments/reasoning/oracle_transport.py`: the answers a causal LM gives when its target-language states after a
layer are replaced by its English states, transported token by token."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys

import numpy as np
import torch
from conftest import FIXTURES, ROOT, cli_env, save_tiny_teacher_and_student

from optical_lightning.models.tiny import tiny_causal_lm

SCRIPT = ROOT / "experiments" / "reasoning" / "oracle_transport.py"
_spec = importlib.util.spec_from_file_location("oracle_transport", SCRIPT)
oracle_transport = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(oracle_transport)
AFRIMMLU = FIXTURES / "mcqa" / "afrimmlu"


def _oracle(tmp_path, data, *args: str) -> dict:
    out = tmp_path / "oracle"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--model", str(tmp_path / "tiny"), "--data", str(data),
                           "--dtype", "32", "--max-questions", "2", "--out", str(out), *args],
                          capture_output=True, text=True, timeout=300, env=cli_env())
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "| content hard @3 |" in out.with_suffix(".md").read_text()
    return json.loads(out.with_suffix(".json").read_text())


def test_a_question_transported_onto_itself_is_answered_as_it_was(tmp_path):
    """When the 'Swahili' file is the English one, the plan at a small blur is the identity: every transported row
    must give the English log-likelihoods (hard: exactly; soft: to the plan's residual mass)."""
    tiny_causal_lm(seed=0).save_pretrained(tmp_path / "tiny")
    data = tmp_path / "data"
    data.mkdir()
    for lang in ("sw", "en"):
        shutil.copy(AFRIMMLU / "en.test.jsonl", data / f"{lang}.val.jsonl")
    record = _oracle(tmp_path, data, "--layers", "3", "--blur", "0.02", "--shares", "0.5")
    english = np.array(record["logliks"]["English"])
    rows = {f"{v} @3" for v in (*oracle_transport.VARIANTS, "content hard x0.5")}
    assert english.shape == (record["n"], 4) and set(record["summary"]) == {"English"} | rows
    for name, values in record["logliks"].items():
        assert np.abs(np.array(values) - english).max() < (1e-4 if "soft" not in name else 2e-3), name


def test_a_student_is_read_beside_the_base_model_without_changing_it(tmp_path):
    """With a trained student loaded, the base model's rows are what they are without it (its adapters are off
    there), the student's row is its own, and moving the content towards its English states lowers its cost."""
    save_tiny_teacher_and_student(tmp_path)
    args = ("--split", "test", "--layers", "3", "--shares", "0.5")
    alone = _oracle(tmp_path, AFRIMMLU, *args)
    both = _oracle(tmp_path, AFRIMMLU, *args, "--student", str(tmp_path / "student"))
    for name in ("English", "zero-shot @3", "content hard @3"):
        assert both["logliks"][name] == alone["logliks"][name], name
    assert both["logliks"]["student @3"] != both["logliks"]["zero-shot @3"]
    cost = {name: value["cost"] for name, value in alone["summary"].items() if "cost" in value}
    assert cost["zero-shot @3"] > cost["content hard x0.5 @3"] > cost["content hard @3"]


def test_the_swapped_states_reach_the_layers_above():
    """Swapping in the states a layer computed changes nothing; swapping in others changes the answer's
    log-likelihoods, and the hook is gone after the block."""
    encoder = tiny_causal_lm(seed=0)
    lm, tokenizer = encoder.base_lm, encoder.tokenizer
    prompt = "Question: which river is longest?\nA. Nile\nB. Tana\nC. Rhine\nD. Thames\nAnswer:"
    ids, _ = oracle_transport.tokens_and_content(tokenizer, prompt, [])
    states = oracle_transport.states_by_layer(lm, ids)[2][0]
    before = oracle_transport.letters(lm, tokenizer, prompt)
    with oracle_transport.replaced_after(lm, 2, states):
        assert torch.allclose(oracle_transport.letters(lm, tokenizer, prompt), before, atol=1e-5)
    with oracle_transport.replaced_after(lm, 2, torch.randn_like(states) * states.norm(dim=-1, keepdim=True)):
        assert not torch.allclose(oracle_transport.letters(lm, tokenizer, prompt), before, atol=1e-3)
    assert torch.equal(oracle_transport.letters(lm, tokenizer, prompt), before)


def test_content_spans_cover_the_question_and_options_only():
    question = oracle_transport.MCQuestion("q1", "world_religions", "Ni nani?", ("Moja", "Mbili", "Tatu", "Nne"), 0)
    prompt, spans = oracle_transport.prompt_and_content(question)
    assert [prompt[s:e] for s, e in spans] == ["Ni nani?", "Moja", "Mbili", "Tatu", "Nne"]
    assert prompt.startswith("The following is a multiple choice question about world religions.")


def test_the_last_layer_is_refused_in_one_line(tmp_path):
    model = tmp_path / "tiny"
    tiny_causal_lm(seed=0).save_pretrained(model)
    proc = subprocess.run([sys.executable, str(SCRIPT),
                           "--model", str(model), "--data", str(AFRIMMLU),
                           "--split", "test", "--layers", "4", "--out", str(tmp_path / "x")],
                          capture_output=True, text=True, timeout=300, env=cli_env())
    assert proc.returncode == 1 and proc.stderr.strip().splitlines()[-1].startswith("error: --layers 4: choose layers below 4")
