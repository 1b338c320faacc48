"""A Hugging Face encoder that returns token embeddings, masks and a pooled vector.

The same wrapper serves as frozen teacher and trainable student. What OPTICAL needs from it:

* ``tokens`` (B, L, D): per-token embeddings, L2-normalised so that ``1 - x @ y.T`` is the cosine
  distance the OT head transports along;
* ``attention_mask``: real (non-padding) tokens, used for pooling as the original models were trained;
* ``content_mask``: the tokens that take part in alignment - real tokens minus special tokens
  (``[CLS]``, ``</s>``, ...) and minus the text prefix (``query: `` for multilingual-e5);
* ``pooled`` (B, D): mean or CLS pooling, the vector dense retrieval scores with.

An optional linear projection (student side) maps the backbone's space to the teacher's; it is
identity-initialised when the sizes match so training starts from the pretrained geometry.
A saved encoder is an ordinary Hugging Face folder plus ``optical_encoder.json`` (pooling, prefixes,
projection) and ``projection.safetensors``; it also carries sentence-transformers module files,
so ``SentenceTransformer(path)`` loads it with no code from this project. A LoRA student is saved
with its adapters merged into the weights, and with the adapter alone in ``lora/`` (PEFT format).

What trains in a student is chosen here (:meth:`Encoder.train_top_layers`, :meth:`Encoder.add_lora`) and
done on the backbone by :mod:`~optical_lightning.models.layers` and :mod:`~optical_lightning.models.lora`;
:func:`~optical_lightning.models.loading.load_encoder` builds an encoder from a model name.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from transformers import AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from optical_lightning.models.backbone import load_backbone
from optical_lightning.models.checks import check_tokenizer, read_plain_fields, safetensors_problem
from optical_lightning.models.layers import fixed_modules, freeze_below_top, split_views
from optical_lightning.models.lora import inject_lora, merged_lora_state, save_lora_adapter
from optical_lightning.models.st_export import write_sentence_transformers_modules
from optical_lightning.utils.atomic import atomic_dir
from optical_lightning.utils.errors import ConfigError, ModelLoadError
from optical_lightning.utils.precision import autocast

Role = Literal["query", "passage"]
ENCODER_CONFIG = "optical_encoder.json"
PROJECTION_WEIGHTS = "projection.safetensors"
LORA_DIR = "lora"  # a LoRA student's adapter alone, loadable with peft.PeftModel.from_pretrained(base, path)


@dataclass
class EncoderOutput:
    tokens: Tensor  # (B, L, D)
    attention_mask: Tensor  # (B, L) bool: real tokens
    content_mask: Tensor  # (B, L) bool: real tokens that take part in alignment
    pooled: Tensor  # (B, D)


class Encoder(nn.Module):
    """Wraps a transformer backbone and its tokenizer; see the module docstring."""

    def __init__(
        self,
        backbone: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        *,
        pooling: Literal["mean", "cls"] = "mean",
        query_prefix: str = "",
        passage_prefix: str = "",
        max_length: int = 128,
        passage_max_length: int | None = None,
        normalize: bool = True,
        projection_dim: int | None = None,
        frozen: bool = False,
        freeze_embeddings: bool = False,
        name: str = "",
    ) -> None:
        super().__init__()
        if pooling not in ("mean", "cls"):
            raise ConfigError(f"pooling='{pooling}': choose 'mean' or 'cls'")
        if max_length < 2:
            raise ConfigError(f"max_length={max_length}: must be at least 2 (room for special tokens)")
        self.backbone, self.tokenizer = backbone, tokenizer
        self.pooling, self.normalize, self.max_length = pooling, normalize, max_length
        self.prefixes: dict[str, str] = {"query": query_prefix, "passage": passage_prefix}
        # documents are longer than queries: give them their own truncation length
        self.max_lengths: dict[str, int] = {"query": max_length, "passage": passage_max_length or max_length}
        self.name = name or getattr(backbone.config, "_name_or_path", "")
        hidden = backbone.config.hidden_size
        self.projection: nn.Linear | None = None
        if projection_dim is not None:
            self.projection = nn.Linear(hidden, projection_dim)
            with torch.no_grad():  # identity where the sizes allow it: start from the pretrained space
                self.projection.weight.zero_()
                k = min(hidden, projection_dim)
                self.projection.weight[:k, :k] = torch.eye(k)
                self.projection.bias.zero_()
        if freeze_embeddings:
            # The (vocabulary x hidden) table is most of a multilingual encoder's weights (96M of mE5-small's
            # 118M): keeping it fixed makes each optimizer step several times cheaper, and tokens unseen in
            # the bitext keep their pretrained vectors instead of drifting.
            backbone.get_input_embeddings().requires_grad_(False)
        self.frozen = False
        # how many transformer layers (with the embeddings) stay fixed below the trained ones; set by
        # train_top_layers(). They run without dropout, so their output is a pure function of the text: cacheable.
        self.frozen_below: int | None = None
        self.lora_config = None  # a peft.LoraConfig once add_lora() injected adapters
        self._split_views: tuple[nn.Module, nn.Module] | None = None
        if frozen:
            self.freeze()

    # ------------------------------------------------------------------ properties
    @property
    def dim(self) -> int:
        return self.projection.out_features if self.projection is not None else self.backbone.config.hidden_size

    def freeze(self) -> Encoder:
        """Teacher mode: eval forever, no gradients, no trainable parameters."""
        self.frozen = True
        self.requires_grad_(False)
        return self.eval()

    def train(self, mode: bool = True) -> Encoder:
        super().train(mode and not self.frozen)
        if self.frozen_below is not None:  # a fixed feature extractor: no dropout noise, cacheable outputs
            for module in fixed_modules(self.backbone, self.frozen_below):
                module.eval()
        return self

    # ------------------------------------------------------------------ what trains
    def train_top_layers(self, k: int) -> Encoder:
        """Freeze the embeddings and every transformer layer below the top ``k``; the projection stays
        trainable. Why: see :mod:`optical_lightning.models.layers`."""
        self.frozen_below = freeze_below_top(self.backbone, k)
        self._split_views = None  # the cut moved: rebuild the views on next use
        return self.train(self.training)

    def add_lora(self, r: int = 8, alpha: float = 16, dropout: float = 0.0,
                 target_modules: Sequence[str] = ("query", "key", "value", "dense")) -> Encoder:
        """Freeze the backbone and inject PEFT LoRA adapters (rank ``r``) into its ``target_modules`` linears;
        the projection stays trainable. Why: see :mod:`optical_lightning.models.lora`."""
        self.lora_config = inject_lora(self.backbone, r=r, alpha=alpha, dropout=dropout, target_modules=target_modules)
        return self

    # ------------------------------------------------------------------ tokenisation
    def tokenize(self, texts: list[str], role: Role = "query") -> dict[str, Tensor]:
        """Tokenise with the role's prefix; adds ``content_mask`` (no specials, no prefix tokens)."""
        prefix = self.prefixes[role]
        enc = self.tokenizer(
            [prefix + t for t in texts],
            padding=True,
            truncation=True,
            max_length=self.max_lengths[role],
            return_tensors="pt",
            return_special_tokens_mask=True,
            return_offsets_mapping=self.tokenizer.is_fast and bool(prefix),
        )
        content = enc["attention_mask"].bool() & ~enc.pop("special_tokens_mask").bool()
        if "offset_mapping" in enc:  # tokens lying wholly inside the prefix are not content
            content &= enc.pop("offset_mapping")[..., 1] > len(prefix.rstrip())
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"], "content_mask": content}

    # ------------------------------------------------------------------ forward
    def forward(self, batch: dict[str, Tensor]) -> EncoderOutput:
        """Encode a tokenised batch; with ``lower_hidden`` (the frozen layers' output, from
        :meth:`lower_hidden`) only the trained top layers run."""
        if "lower_hidden" in batch:
            hidden = self._views()[1](inputs_embeds=batch["lower_hidden"],
                                      attention_mask=batch["attention_mask"]).last_hidden_state
        else:
            hidden = self.backbone(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        if self.projection is not None:
            hidden = self.projection(hidden)
        mask = batch["attention_mask"].bool()
        if self.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            m = mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * m).sum(1) / m.sum(1).clamp_min(1.0)
        if self.normalize:
            hidden, pooled = F.normalize(hidden, dim=-1), F.normalize(pooled, dim=-1)
        content = batch.get("content_mask")
        content = mask if content is None else content.bool()
        return EncoderOutput(tokens=hidden, attention_mask=mask, content_mask=content, pooled=pooled)

    @torch.no_grad()  # not inference mode: the trained layers take these tensors into autograd
    def lower_hidden(self, batch: dict[str, Tensor]) -> Tensor:
        """The hidden states (B, L, H) after the embeddings and the ``frozen_below`` fixed layers."""
        if self.frozen_below is None:
            raise ConfigError("only a student with student.trainable_layers=K has fixed lower layers to cache")
        return self._views()[0](input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state

    def _views(self) -> tuple[nn.Module, nn.Module]:
        """(lower, upper): the backbone cut below its first trained layer, sharing every parameter
        (:func:`~optical_lightning.models.layers.split_views`), built once per cut. Not registered as
        submodules: no duplicate weights."""
        if self._split_views is None:  # a tuple, so nn.Module does not register the views as submodules
            self._split_views = split_views(self.backbone, self.frozen_below)
        return self._split_views

    @torch.inference_mode()
    def encode(self, texts: list[str], role: Role = "query", batch_size: int = 64, tokens: bool = False,
               progress: bool = False, precision: str = "32") -> Tensor | tuple[Tensor, list[Tensor]]:
        """Pooled embeddings (N, D) on the CPU - the sentence-transformers style API.

        Texts are batched by length (longest first) so padding is minimal, then restored to input
        order. With ``tokens=True`` also returns each text's content-token embeddings (L_i, D) for
        late-interaction (max-sim) scoring. ``precision`` is ``32``, ``bf16`` or ``auto`` (bf16
        where the hardware runs it natively; see :mod:`optical_lightning.utils.precision`).
        """
        was_training = self.training
        self.eval()
        device = next(self.parameters()).device
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        pooled = torch.empty(len(texts), self.dim)
        token_list: list[Tensor] = [torch.empty(0)] * len(texts)
        starts = range(0, len(texts), batch_size)
        if progress:
            from rich.progress import track

            starts = track(starts, description=f"encoding {len(texts)} {role} texts", transient=True)
        for start in starts:
            idx = order[start : start + batch_size]
            batch = {k: v.to(device) for k, v in self.tokenize([texts[i] for i in idx], role).items()}
            with autocast(precision, device.type):
                out = self(batch)
            pooled[idx] = out.pooled.float().cpu()
            if tokens:
                for row, i in enumerate(idx):
                    token_list[i] = out.tokens[row][out.content_mask[row]].float().cpu()
        self.train(was_training)
        return (pooled, token_list) if tokens else pooled

    def fingerprint(self) -> str:
        """A hash of the configuration and every weight: the key of cached document embeddings."""
        cached = getattr(self, "_fingerprint", None)
        if cached is not None and self.frozen:
            return cached
        h = hashlib.sha256(json.dumps(self.encoder_config(), sort_keys=True).encode())
        for name, tensor in self.state_dict().items():
            h.update(name.encode())
            h.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
        self._fingerprint = h.hexdigest()[:24]
        return self._fingerprint

    # ------------------------------------------------------------------ persistence
    def encoder_config(self) -> dict:
        return {
            "pooling": self.pooling,
            "query_prefix": self.prefixes["query"],
            "passage_prefix": self.prefixes["passage"],
            "max_length": self.max_length,
            "passage_max_length": self.max_lengths["passage"],
            "normalize": self.normalize,
            "projection_dim": self.projection.out_features if self.projection is not None else None,
            "base_model": self.name,
        }

    def save_pretrained(self, path: str | os.PathLike) -> Path:
        """Write an HF folder (+ sentence-transformers modules) atomically: complete or absent."""
        with atomic_dir(path) as tmp:
            if self.lora_config is None:
                self.backbone.save_pretrained(tmp, safe_serialization=True)
            else:  # a plain Hugging Face folder (adapters merged), and the adapter on its own
                self.backbone.save_pretrained(tmp, state_dict=merged_lora_state(self.backbone), safe_serialization=True)
                save_lora_adapter(self.backbone, self.lora_config, tmp / LORA_DIR)
            self.tokenizer.save_pretrained(tmp)
            (tmp / ENCODER_CONFIG).write_text(json.dumps(self.encoder_config(), indent=2) + "\n")
            if self.projection is not None:
                save_file({k: v.detach().cpu().contiguous() for k, v in self.projection.state_dict().items()},
                          tmp / PROJECTION_WEIGHTS)
            write_sentence_transformers_modules(
                tmp, hidden_size=self.backbone.config.hidden_size, pooling=self.pooling, projection=self.projection,
                normalize=self.normalize, max_length=self.max_length, prefixes=self.prefixes)
        return Path(path)

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, frozen: bool = False) -> Encoder:
        """Load a folder written by :meth:`save_pretrained`.

        ``optical_encoder.json`` is read as plain, type-checked fields (saved folders are shared and
        downloaded: nothing in them is imported or called), and the folder is refused in one line when
        a file is missing or truncated or its tokenizer cannot read ordinary text.
        """
        path = Path(path)
        if not (path / ENCODER_CONFIG).is_file():
            raise ModelLoadError(f"{path} is not a saved optical-lightning encoder (no {ENCODER_CONFIG}); "
                                 f"load plain Hugging Face models with load_encoder()")
        cfg = read_encoder_config(path)
        if cfg["projection_dim"] is not None and not (path / PROJECTION_WEIGHTS).is_file():
            raise ModelLoadError(f"{path}: {ENCODER_CONFIG} says the encoder has a projection but "
                                 f"{PROJECTION_WEIGHTS} is missing; copy the whole saved folder again")
        try:
            tokenizer = AutoTokenizer.from_pretrained(path)
            backbone = load_backbone(str(path), offline=True)
        except (OSError, ValueError) as e:
            if isinstance(e, ModelLoadError):
                raise
            raise ModelLoadError(f"cannot load the saved encoder {path}: {' '.join(str(e).split())[:160]}; "
                                 f"copy the whole saved folder again") from e
        check_tokenizer(tokenizer, f"saved encoder {path}", path)
        encoder = cls(
            backbone,
            tokenizer,
            pooling=cfg["pooling"],
            query_prefix=cfg["query_prefix"],
            passage_prefix=cfg["passage_prefix"],
            max_length=cfg["max_length"],
            passage_max_length=cfg["passage_max_length"],
            normalize=cfg["normalize"],
            projection_dim=cfg["projection_dim"],
            frozen=frozen,
            name=cfg["base_model"],
        )
        if encoder.projection is not None:
            weights = path / PROJECTION_WEIGHTS
            if (why := safetensors_problem(weights)) is not None:
                raise ModelLoadError(f"{weights} is truncated or corrupt ({why}); copy the whole saved folder again")
            try:
                encoder.projection.load_state_dict(load_file(weights))
            except RuntimeError as e:  # missing keys or another shape than optical_encoder.json says
                raise ModelLoadError(f"{weights} does not fit {ENCODER_CONFIG} (projection {backbone.config.hidden_size}"
                                     f" -> {cfg['projection_dim']}): {' '.join(str(e).split())[:160]}; copy the "
                                     f"whole saved folder again") from e
        return encoder


#: the fields of optical_encoder.json: name -> (accepted types, may be null, default when absent)
_ENCODER_FIELDS: dict[str, tuple[tuple[type, ...], bool, object]] = {
    "pooling": ((str,), False, None),
    "query_prefix": ((str,), False, ""),
    "passage_prefix": ((str,), False, ""),
    "max_length": ((int,), False, None),
    "passage_max_length": ((int,), True, None),
    "normalize": ((bool,), False, True),
    "projection_dim": ((int,), True, None),
    "base_model": ((str,), False, ""),
}


def read_encoder_config(folder: Path) -> dict:
    """The plain fields of ``folder/optical_encoder.json``, each checked for its type (strings,
    integers, booleans, null): a wrong or missing one is a one-line :class:`ModelLoadError`."""
    file = folder / ENCODER_CONFIG
    cfg = read_plain_fields(file, _ENCODER_FIELDS, "encoder settings")
    if cfg["pooling"] not in ("mean", "cls"):
        raise ModelLoadError(f"{file}: 'pooling' is {cfg['pooling']!r}, expected 'mean' or 'cls'")
    for key in ("max_length", "passage_max_length", "projection_dim"):
        if cfg[key] is not None and cfg[key] < (2 if "length" in key else 1):
            raise ModelLoadError(f"{file}: '{key}' is {cfg[key]}, too small for an encoder; copy the whole saved folder again")
    return cfg
