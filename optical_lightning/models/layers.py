"""The layer split: train only a backbone's top ``k`` transformer layers, and run the fixed ones below on their own.

Why: training moves the last layer most (experiments/DIAGNOSIS.md, "What moves"); the layers below stay
where the pretrained model had them and no gradient flows through them. Run without dropout, their output is
a pure function of the text, so it can be cached (:mod:`optical_lightning.data.student_cache`) and only the
top layers run in a step. These functions work on the bare Hugging Face backbone (BERT/XLM-R layout:
``embeddings``, ``encoder.layer``); :meth:`Encoder.train_top_layers
<optical_lightning.models.encoder.Encoder.train_top_layers>` applies them.
"""

from __future__ import annotations

import copy

from torch import Tensor, nn
from transformers import PreTrainedModel

from optical_lightning.utils.errors import ConfigError


def freeze_below_top(backbone: PreTrainedModel, k: int) -> int:
    """Freeze the embeddings and every transformer layer below the top ``k``; returns how many stay fixed."""
    layers = getattr(getattr(backbone, "encoder", None), "layer", None)
    if layers is None:
        raise ConfigError("student.trainable_layers: this backbone has no encoder.layer list (BERT/XLM-R layout); "
                          "set student.trainable_layers=null")
    if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k <= len(layers):
        raise ConfigError(f"student.trainable_layers={k!r}: must be an integer in [0, {len(layers)}] or null (all)")
    backbone.requires_grad_(False)
    for layer in list(layers)[len(layers) - k:]:
        layer.requires_grad_(True)
    return len(layers) - k


def fixed_modules(backbone: PreTrainedModel, n_layers: int) -> list[nn.Module]:
    """The embeddings and the lowest ``n_layers`` transformer layers: what stays fixed below the cut."""
    return [backbone.embeddings, *list(backbone.encoder.layer)[:n_layers]]


def split_views(backbone: PreTrainedModel, cut: int) -> tuple[nn.Module, nn.Module]:
    """(lower, upper): ``backbone`` cut below layer ``cut``, sharing every parameter.

    Each view is the model's own forward over a slice of its layer list, so masks, attention
    implementation and dtype handling stay the library's; the upper view's embedding layer
    passes given hidden states (``inputs_embeds``) through.
    """
    layers = backbone.encoder.layer
    return (_backbone_view(backbone, layers[:cut]),
            _backbone_view(backbone, layers[cut:], embeddings=_GivenHidden()))


class _GivenHidden(nn.Module):
    """Stands in for the embedding layer of the upper view: returns the hidden states it is given."""

    def forward(self, input_ids: Tensor | None = None, inputs_embeds: Tensor | None = None, **_: object) -> Tensor:
        return inputs_embeds


def _backbone_view(backbone: PreTrainedModel, layers: nn.ModuleList, embeddings: nn.Module | None = None) -> nn.Module:
    """A shallow copy of ``backbone`` whose encoder runs only ``layers`` (parameters are shared, not copied)."""
    view = copy.copy(backbone)
    view._modules = dict(backbone._modules)
    encoder = copy.copy(backbone.encoder)
    encoder._modules = dict(backbone.encoder._modules)
    encoder._modules["layer"] = layers
    view._modules["encoder"] = encoder
    if embeddings is not None:
        view._modules["embeddings"] = embeddings
    return view
