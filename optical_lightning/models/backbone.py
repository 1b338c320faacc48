"""The bare Hugging Face backbone an :class:`~optical_lightning.models.encoder.Encoder` wraps, loaded from a local
folder or a hub id: shared by a saved encoder (``Encoder.from_pretrained``) and a pretrained one (``load_encoder``)."""

from __future__ import annotations

from pathlib import Path

from transformers import AutoModel, PreTrainedModel
from transformers.utils import logging as hf_logging

from optical_lightning.models.checks import check_weight_files


def load_backbone(location: str, offline: bool) -> PreTrainedModel:
    """The bare encoder without a pooler head: we pool ourselves, so a checkpoint's pooler weights are
    deliberately unused and transformers' load report about them is silenced. A local folder's weight
    files are checked first: a truncated one is a one-line error, not a traceback from deep inside."""
    if Path(location).is_dir():
        check_weight_files(Path(location))
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        return AutoModel.from_pretrained(location, local_files_only=offline, add_pooling_layer=False)
    except TypeError:  # architectures without a pooler option
        return AutoModel.from_pretrained(location, local_files_only=offline)
    finally:
        hf_logging.set_verbosity(verbosity)
