"""The sentence-transformers module files of a saved encoder, so ``SentenceTransformer(path)`` loads it.

Written into the folder :meth:`Encoder.save_pretrained <optical_lightning.models.encoder.Encoder.save_pretrained>`
fills; this module takes the encoder's settings as plain arguments (encoder.py imports it, not the reverse).
"""

from __future__ import annotations

import json
from pathlib import Path

from safetensors.torch import save_file
from torch import nn


def write_sentence_transformers_modules(folder: Path, *, hidden_size: int, pooling: str, projection: nn.Linear | None,
                                        normalize: bool, max_length: int, prefixes: dict[str, str]) -> None:
    """Transformer -> Pooling -> [Dense] -> [Normalize], the layout SentenceTransformer(path) reads.

    Mean pooling commutes with the affine projection, so pooling before Dense (the
    sentence-transformers order) gives the same vector as our project-then-pool.
    """
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"}]
    pool_dir = folder / "1_Pooling"
    pool_dir.mkdir()
    (pool_dir / "config.json").write_text(json.dumps({
        "word_embedding_dimension": hidden_size,
        "pooling_mode_cls_token": pooling == "cls",
        "pooling_mode_mean_tokens": pooling == "mean",
        "pooling_mode_max_tokens": False,
        "pooling_mode_mean_sqrt_len_tokens": False,
    }, indent=2))
    modules.append({"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"})
    if projection is not None:
        dense_dir = folder / "2_Dense"
        dense_dir.mkdir()
        (dense_dir / "config.json").write_text(json.dumps({
            "in_features": hidden_size, "out_features": projection.out_features, "bias": True,
            "activation_function": "torch.nn.modules.linear.Identity",
        }, indent=2))
        save_file({f"linear.{k}": v.detach().cpu().contiguous() for k, v in projection.state_dict().items()},
                  dense_dir / "model.safetensors")
        modules.append({"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"})
    if normalize:
        modules.append({"idx": len(modules), "name": str(len(modules)), "path": f"{len(modules)}_Normalize",
                        "type": "sentence_transformers.models.Normalize"})
        (folder / f"{len(modules) - 1}_Normalize").mkdir()
    (folder / "modules.json").write_text(json.dumps(modules, indent=2))
    (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": max_length}))
    (folder / "config_sentence_transformers.json").write_text(json.dumps({
        "prompts": {"query": prefixes["query"], "document": prefixes["passage"]},
        "default_prompt_name": None,
        "similarity_fn_name": "cosine",
    }, indent=2))
