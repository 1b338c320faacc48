"""`experiments/reasoning/layers.py`: "find the translation" at every layer of a causal LM, base and student."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import ROOT, cli_env

from optical_lightning.models.tiny import tiny_causal_lm


def test_every_layer_finds_an_identical_translation(tmp_path):
    """Where the 'translation' is the English sentence itself, both sides have the same states at every layer, so
    P@1 is 1 from the embeddings to the last layer: an oracle that needs no trained model."""
    model = tmp_path / "tiny"
    tiny_causal_lm(seed=0).save_pretrained(model)
    sentences = ["The river is long.", "Cats sleep all day.", "Prices rose in May.", "Who wrote the law?",
                 "Water boils at 100 degrees.", "The market opens early."]
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("id\ten\tsw\n" + "".join(f"p{i}\t{s}\t{s}\n" for i, s in enumerate(sentences)))
    out = tmp_path / "layers"
    proc = subprocess.run([sys.executable, str(ROOT / "experiments" / "reasoning" / "layers.py"), "--model", str(model),
                           "--pairs", str(pairs), "--out", str(out)], capture_output=True, text=True, timeout=300,
                          env=cli_env())
    assert proc.returncode == 0, proc.stderr[-2000:]
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["layers"] == list(range(5)) and record["n"] == 6  # the embeddings and 4 decoder layers
    assert record["p_at_1"]["base"] == [1.0] * 5
    assert out.with_suffix(".png").stat().st_size > 0
