"""The encoder view of a causal language model: its hidden states after one decoder layer are the token cloud.

OPTICAL's head only needs token clouds, so it aligns a language model with itself as well as a retrieval
encoder with another: the model reading English is the teacher, the same model with LoRA adapters reading
the target language is the student (``conf/teacher/qwen_coder_1_5b.yaml``, ``conf/student/qwen_coder_1_5b.yaml``).
:class:`CausalLMEncoder` offers what the pipeline, the collator, the caches, the module and the evaluators use of
an :class:`~optical_lightning.models.encoder.Encoder` (``tokenize``, ``forward -> EncoderOutput``, ``encode``,
``dim``, ``fingerprint``, ``freeze``, ``save_pretrained``), plus ``lm``, the full causal LM with logits, for
log-likelihood scoring.

* **Tokens.** The hidden states after the first ``align_layer`` decoder layers (1-based), through the model's final
  RMSNorm when ``final_norm`` (the scale the LM head reads), L2-normalised per token when ``normalize``; computed
  in the weights' dtype, returned in float32 so that losses and caches see one dtype. Only those layers run: a
  forward hook on layer ``align_layer`` stops the decoder there (:class:`_ReachedAlignLayer`), so a student aligned
  at layer 14 of 28 pays for 14 layers, forward and backward.
* **Pooled.** The mean of the (normalised) token states over real tokens, normalised again: a language model's
  raw states have a few huge dimensions and a first-token "attention sink" many times the others' norm, which a
  mean of raw states would be made of.
* **Masks.** Right padding (causal attention never looks right, so padding cannot change a real token's state);
  the content mask is the real tokens minus special tokens (BOS, chat markers) and minus any role prefix. No
  prefixes by default: a language model reads plain text.
* **Student.** :func:`adapt_student` wraps the teacher's own model in PEFT LoRA on the layers below
  ``align_layer`` (the only ones that run), so there is one copy of the base weights. The teacher then runs
  with the adapters disabled (``PeftModel.disable_adapter``), so its outputs stay the base model's whatever
  the student learns. Base weights never train; only the adapters of a student do.
* **Saved student.** A standard PEFT adapter folder (``PeftModel.from_pretrained(base, folder)`` loads it;
  ``adapter_config.json`` names the hub id the config named, not a cache path), its tokenizer, and
  ``optical_lm.json`` with the encoder-view settings, so :meth:`CausalLMEncoder.from_pretrained` rebuilds it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import warnings
import weakref
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers.utils import logging as hf_logging

from optical_lightning.models.checks import check_tokenizer, check_weight_files, read_plain_fields
from optical_lightning.models.encoder import Encoder, EncoderOutput, Role
from optical_lightning.models.registry import resolve_model
from optical_lightning.utils.atomic import atomic_dir
from optical_lightning.utils.errors import ConfigError, ModelLoadError
from optical_lightning.utils.precision import bf16_is_fast

if TYPE_CHECKING:  # peft is imported on use: a teacher alone never needs it
    from peft import PeftModel

LM_CONFIG = "optical_lm.json"  # the encoder-view settings beside a saved model or adapter
ADAPTER_CONFIG = "adapter_config.json"
DTYPES = {"bf16": torch.bfloat16, "32": torch.float32}
DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj")

#: base model -> hash of its weights (they never train, so one hash per model object serves every view)
_BASE_HASHES: weakref.WeakKeyDictionary[nn.Module, str] = weakref.WeakKeyDictionary()


class _ReachedAlignLayer(Exception):
    """Raised by the hook on decoder layer ``align_layer`` to stop the forward pass there, carrying its output."""

    def __init__(self, hidden: Tensor) -> None:
        super().__init__("reached the align layer")
        self.hidden = hidden


def resolve_dtype(dtype: object, setting: str = "teacher.dtype") -> torch.dtype:
    """``auto`` (bf16 where the CPU or GPU has native bf16 units, else float32), ``bf16`` or ``32``."""
    value = str(dtype)
    if value == "auto":
        return torch.bfloat16 if bf16_is_fast("cuda" if torch.cuda.is_available() else "cpu") else torch.float32
    if value not in DTYPES:
        raise ConfigError(f"{setting}={dtype!r}: choose auto, bf16 or 32")
    return DTYPES[value]


class CausalLMEncoder(nn.Module):
    """A causal LM (``Qwen2ForCausalLM`` and kin) seen as an encoder; see the module docstring.

    Args:
        lm: the base causal LM (with its head: ``lm`` serves logits).
        tokenizer: its tokenizer (a pad token is set to EOS when it has none).
        align_layer: how many decoder layers run (1-based); their output is the token cloud.
        adapters: the PEFT model wrapping ``lm`` - given for a student (:func:`adapt_student`), None for a teacher.
    """

    def __init__(
        self,
        lm: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        *,
        align_layer: int,
        final_norm: bool = True,
        normalize: bool = True,
        query_prefix: str = "",
        passage_prefix: str = "",
        max_length: int = 128,
        passage_max_length: int | None = None,
        adapters: PeftModel | None = None,
        frozen: bool = False,
        name: str = "",
        setting: str = "teacher",
    ) -> None:
        super().__init__()
        layers = len(_decoder(lm).layers)
        if isinstance(align_layer, bool) or not isinstance(align_layer, int) or not 1 <= align_layer <= layers:
            raise ConfigError(f"{setting}.align_layer={align_layer!r}: the model has {layers} decoder layers; "
                              f"choose 1..{layers} (e.g. {layers // 2}, the middle)")
        if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 2:
            raise ConfigError(f"{setting}.max_length={max_length!r}: must be an integer >= 2")
        if tokenizer.pad_token is None:  # batches need padding; right padding is never attended to
            tokenizer.pad_token = tokenizer.eos_token
        self.model = adapters if adapters is not None else lm  # what runs: the PEFT model of a student
        self._base = (lm,)  # a tuple, not a submodule: a student registers the weights once, through ``model``
        self.tokenizer = tokenizer
        self.align_layer, self.final_norm, self.normalize = align_layer, final_norm, normalize
        self.max_length = max_length
        self.prefixes: dict[str, str] = {"query": query_prefix, "passage": passage_prefix}
        self.max_lengths: dict[str, int] = {"query": max_length, "passage": passage_max_length or max_length}
        self.name = name or getattr(lm.config, "_name_or_path", "")
        self.frozen_below: int | None = None  # no fixed lower layers to cache (data.student_cache)
        self.frozen = False
        # a teacher whose model a student adapted keeps that PEFT model here (a tuple: not a submodule) to
        # switch the adapters off in its own forward pass
        self._student_adapters: tuple[PeftModel, ...] = ()
        self._lm_view: tuple[nn.Module, ...] = ()
        lm.requires_grad_(False)  # base weights never train; a student's adapters are switched on below
        if adapters is not None:
            for param_name, param in adapters.named_parameters():
                param.requires_grad_("lora_" in param_name)
        if frozen:
            self.freeze()

    # ------------------------------------------------------------------ what it is
    @property
    def is_student(self) -> bool:
        return self.model is not self.base_lm

    @property
    def base_lm(self) -> PreTrainedModel:
        """The base causal LM (shared by a teacher and the student adapted from it)."""
        return self._base[0]

    @property
    def dim(self) -> int:
        return self.base_lm.config.hidden_size

    @property
    def lm(self) -> nn.Module:
        """The full causal LM, called as ``lm(input_ids=..., attention_mask=...).logits``: the student's with its
        adapters on, the teacher's with any student's adapters off."""
        if self.is_student or not self._student_adapters:
            return self.model
        if not self._lm_view:
            self._lm_view = (_TeacherLM(self),)
        return self._lm_view[0]

    def freeze(self) -> CausalLMEncoder:
        """Teacher mode: no gradients, eval mode. A teacher freezes only the base weights (a student sharing
        them keeps its adapters trainable)."""
        self.frozen = True
        for param_name, param in self.model.named_parameters():
            if self.is_student or "lora_" not in param_name:
                param.requires_grad_(False)
        return self.train(False)

    def train(self, mode: bool = True) -> CausalLMEncoder:
        """A student (or a teacher alone) sets the model's mode; a teacher sharing its model with a student
        leaves it to the student (its own forward pass runs in eval mode regardless)."""
        self.training = mode and not self.frozen
        if self.is_student or not self._student_adapters:
            self.model.train(self.training)
        return self

    # ------------------------------------------------------------------ tokenisation
    def tokenize(self, texts: list[str], role: Role = "query") -> dict[str, Tensor]:
        """Right-padded ids, attention mask and ``content_mask`` (no special tokens, no prefix tokens)."""
        prefix = self.prefixes[role]
        enc = self.tokenizer(
            [prefix + t for t in texts], padding=True, truncation=True, max_length=self.max_lengths[role],
            return_tensors="pt", return_special_tokens_mask=True, padding_side="right",
            return_offsets_mapping=self.tokenizer.is_fast and bool(prefix),
        )
        # special tokens added by the tokenizer (BOS) or written in the text (chat markers) carry no content
        special = enc.pop("special_tokens_mask").bool() | torch.isin(
            enc["input_ids"], torch.tensor(self.tokenizer.all_special_ids, dtype=enc["input_ids"].dtype))
        content = enc["attention_mask"].bool() & ~special
        if "offset_mapping" in enc:  # tokens lying wholly inside the prefix are not content
            content &= enc.pop("offset_mapping")[..., 1] > len(prefix.rstrip())
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"], "content_mask": content}

    # ------------------------------------------------------------------ forward
    def forward(self, batch: dict[str, Tensor]) -> EncoderOutput:
        """The token cloud after ``align_layer`` decoder layers (only those run) and its pooled vector."""
        view = self._teacher_view() if not self.is_student else contextlib.nullcontext()
        with view, torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            hidden = self.hidden_states(batch["input_ids"], batch["attention_mask"])
        mask = batch["attention_mask"].bool()
        hidden = hidden.float()
        if self.normalize:
            hidden = F.normalize(hidden, dim=-1)
        m = mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * m).sum(1) / m.sum(1).clamp_min(1.0)
        if self.normalize:
            pooled = F.normalize(pooled, dim=-1)
        content = batch.get("content_mask")
        content = mask if content is None else content.bool()
        return EncoderOutput(tokens=hidden, attention_mask=mask, content_mask=content, pooled=pooled)

    def hidden_states(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """(B, L, H) after decoder layer ``align_layer`` (through the final norm when ``final_norm``), in the
        weights' dtype; the layers above it never run."""
        decoder = _decoder(self.base_lm)

        def stop(module: nn.Module, args: Any, output: Any) -> None:
            raise _ReachedAlignLayer(output[0] if isinstance(output, tuple) else output)

        handle = decoder.layers[self.align_layer - 1].register_forward_hook(stop)
        try:
            decoder(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
        except _ReachedAlignLayer as reached:
            hidden = reached.hidden
        else:  # pragma: no cover - the hook always fires
            raise RuntimeError(f"decoder layer {self.align_layer} never ran")
        finally:
            handle.remove()
        return decoder.norm(hidden) if self.final_norm else hidden

    @contextlib.contextmanager
    def _teacher_view(self) -> Iterator[None]:
        """The base model as it was loaded: any student's adapters off, eval mode; both restored after."""
        modes = [(m, m.training) for m in self.base_lm.modules()]
        self.base_lm.eval()
        adapters = self._student_adapters[0] if self._student_adapters else None
        # PEFT re-enables the adapters' gradients on the way out; keep them as the student had them
        grads = [(p, p.requires_grad) for n, p in adapters.named_parameters() if "lora_" in n] if adapters else []
        try:
            with adapters.disable_adapter() if adapters is not None else contextlib.nullcontext():
                yield
        finally:
            for param, flag in grads:
                param.requires_grad_(flag)
            for module, mode in modes:
                module.training = mode

    encode = Encoder.encode  # the same length-sorted batching and API (pooled, or pooled and content tokens)

    def fingerprint(self) -> str:
        """A hash of the settings, the base weights and (a student) the adapters: the key of cached embeddings.
        A teacher's is the same whether or not a student adapted its model."""
        cached = getattr(self, "_fingerprint", None)
        if cached is not None and self.frozen:
            return cached
        h = hashlib.sha256(json.dumps(self.encoder_config(), sort_keys=True).encode())
        h.update(_base_hash(self.base_lm).encode())
        if self.is_student:
            for param_name, tensor in sorted(self.model.state_dict().items()):
                if "lora_" in param_name:
                    h.update(param_name.encode())
                    h.update(_bytes(tensor))
        self._fingerprint = h.hexdigest()[:24]
        return self._fingerprint

    def weights_fingerprint(self) -> str:
        """The base model alone (its name, dtype and weights; not the view's settings such as ``align_layer``, nor
        adapters): the key of what depends only on the model, such as its answers to multiple-choice prompts."""
        h = hashlib.sha256(f"{self.name}|{self.base_lm.dtype}".encode())
        h.update(_base_hash(self.base_lm).encode())
        return h.hexdigest()[:24]

    # ------------------------------------------------------------------ persistence
    def encoder_config(self) -> dict:
        return {
            "kind": "causal_lm",
            "align_layer": self.align_layer,
            "final_norm": self.final_norm,
            "normalize": self.normalize,
            "query_prefix": self.prefixes["query"],
            "passage_prefix": self.prefixes["passage"],
            "max_length": self.max_length,
            "passage_max_length": self.max_lengths["passage"],
            "dtype": "bf16" if self.base_lm.dtype == torch.bfloat16 else "32",
            "base_model": self.name,
        }

    def save_pretrained(self, path: str | os.PathLike) -> Path:
        """Write the folder atomically (complete or absent): a student as a PEFT adapter folder, a teacher as a
        Hugging Face model folder; both with the tokenizer and ``optical_lm.json``."""
        with atomic_dir(path) as tmp:
            if self.is_student:
                # the embeddings never train: no hub lookup of the base's vocabulary to decide whether to save them
                self.model.save_pretrained(str(tmp), save_embedding_layers=False)
            else:  # the base weights under plain names, whether or not a student's adapters sit in the modules
                state = {k.replace(".base_layer.", "."): v for k, v in self.base_lm.state_dict().items() if "lora_" not in k}
                self.base_lm.save_pretrained(tmp, state_dict=state, safe_serialization=True)
            self.tokenizer.save_pretrained(tmp)
            (tmp / LM_CONFIG).write_text(json.dumps(self.encoder_config(), indent=2) + "\n")
        return Path(path)

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, *, teacher: CausalLMEncoder | None = None, frozen: bool = False,
                        cache_dir: str | None = None) -> CausalLMEncoder:
        """Rebuild an encoder saved by :meth:`save_pretrained`. A student folder needs its base: ``teacher`` (whose
        model it then adapts, as :func:`adapt_student` does), else the ``base_model`` its settings name is loaded."""
        path = Path(path)
        cfg = read_lm_config(path)
        view = {k: cfg[k] for k in ("align_layer", "final_norm", "normalize", "query_prefix", "passage_prefix",
                                    "max_length", "passage_max_length")}
        if not (path / ADAPTER_CONFIG).is_file():  # a saved teacher: a whole model folder
            return load_causal_lm(str(path), dtype=cfg["dtype"], frozen=frozen, name=cfg["base_model"], **view)
        from peft import PeftModel

        base = teacher if teacher is not None else load_causal_lm(cfg["base_model"], dtype=cfg["dtype"], frozen=True,
                                                                  cache_dir=cache_dir, **view)
        if base._student_adapters:
            raise ConfigError(f"cannot load {path}: a student already adapts this teacher's model")
        try:
            with _quiet_peft():
                adapters = PeftModel.from_pretrained(base.base_lm, str(path), is_trainable=not frozen)
        except (OSError, ValueError, RuntimeError) as e:
            raise ModelLoadError(f"cannot load the saved adapters {path}: {' '.join(str(e).split())[:160]}; copy the "
                                 f"whole saved folder again") from e
        student = cls(base.base_lm, base.tokenizer, adapters=adapters, frozen=frozen, name=cfg["base_model"],
                      setting="student", **view)
        base._student_adapters = (adapters,)
        base.train(base.training)
        return student


class _TeacherLM(nn.Module):
    """The teacher's full causal LM when a student adapted its model: the base with the adapters off."""

    def __init__(self, encoder: CausalLMEncoder) -> None:
        super().__init__()
        self._encoder = (encoder,)  # not a submodule: no second registration of the weights
        self.train(False)  # its forward runs the base in eval mode whatever this flag says

    @property
    def device(self) -> torch.device:  # it registers no parameters of its own: where the base model lives
        return self._encoder[0].base_lm.device

    @property
    def dtype(self) -> torch.dtype:
        return self._encoder[0].base_lm.dtype

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        encoder = self._encoder[0]
        with encoder._teacher_view():
            return encoder.base_lm(*args, **kwargs)


@contextlib.contextmanager
def _quiet_peft() -> Iterator[None]:
    """PEFT asks transformers a deprecated question (``is_gradient_checkpointing``): not the user's concern."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing", category=FutureWarning)
        yield


def _decoder(lm: nn.Module) -> nn.Module:
    """The decoder stack (``layers`` and final ``norm``) of a causal LM."""
    decoder = lm.get_decoder() if hasattr(lm, "get_decoder") else getattr(lm, "model", None)
    if decoder is None or not hasattr(decoder, "layers") or not hasattr(decoder, "norm"):
        raise ModelLoadError(f"{type(lm).__name__} has no decoder with .layers and .norm; only decoder-only causal "
                             f"LMs of the Llama/Qwen family can be read as encoders")
    return decoder


def _bytes(tensor: Tensor) -> memoryview:
    return memoryview(tensor.detach().cpu().contiguous().view(torch.uint8).numpy())


def _base_hash(lm: nn.Module) -> str:
    """The hash of the base weights under their plain names (adapters left out), once per model object."""
    if lm not in _BASE_HASHES:
        h = hashlib.sha256()
        for key, tensor in lm.state_dict().items():
            if "lora_" not in key:
                h.update(key.replace(".base_layer.", ".").encode())
                h.update(_bytes(tensor))
        _BASE_HASHES[lm] = h.hexdigest()
    return _BASE_HASHES[lm]


# ---------------------------------------------------------------------- builders (conf/teacher, conf/student)
def load_causal_lm(
    model_name_or_path: str,
    *,
    align_layer: int,
    final_norm: bool = True,
    normalize: bool = True,
    query_prefix: str = "",
    passage_prefix: str = "",
    max_length: int = 128,
    passage_max_length: int | None = None,
    dtype: str = "auto",
    frozen: bool = True,
    cache_dir: str | None = None,
    name: str | None = None,
    setting: str = "teacher.model_name_or_path",
) -> CausalLMEncoder:
    """The teacher: a causal LM from a hub id (offline: the registry's converted copy) or a folder. The config and
    ``align_layer`` are checked before the weights load; ``dtype`` is ``auto`` (bf16 where native), ``bf16`` or ``32``."""
    group = setting.split(".")[0]
    torch_dtype = resolve_dtype(dtype, f"{group}.dtype")
    location = resolve_model(model_name_or_path, cache_dir=cache_dir)
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        config = AutoConfig.from_pretrained(location, local_files_only=offline)
        layers = getattr(config, "num_hidden_layers", None)
        if isinstance(layers, int) and not (isinstance(align_layer, int) and 1 <= align_layer <= layers):
            raise ConfigError(f"{group}.align_layer={align_layer!r}: {model_name_or_path} has {layers} decoder layers; "
                              f"choose 1..{layers} (e.g. {layers // 2}, the middle)")
        if Path(location).is_dir():
            check_weight_files(Path(location))
        tokenizer = AutoTokenizer.from_pretrained(location, local_files_only=offline)
        lm = AutoModelForCausalLM.from_pretrained(location, dtype=torch_dtype, local_files_only=offline)
    except (OSError, ValueError) as e:
        if isinstance(e, (ModelLoadError, ConfigError)):
            raise
        from optical_lightning.models.loading import _load_error  # the same messages as for encoders

        raise _load_error(model_name_or_path, location, offline, setting, e) from e
    finally:
        hf_logging.set_verbosity(verbosity)
    check_tokenizer(tokenizer, f"{setting}={model_name_or_path}", Path(location) if Path(location).is_dir() else None)
    return CausalLMEncoder(lm.eval(), tokenizer, align_layer=align_layer, final_norm=final_norm, normalize=normalize,
                           query_prefix=query_prefix, passage_prefix=passage_prefix, max_length=max_length,
                           passage_max_length=passage_max_length, frozen=frozen,
                           name=name or model_name_or_path, setting=group)


def adapt_student(
    teacher: Any = None,
    *,
    lora: dict | None = None,
    align_layer: int | None = None,
    final_norm: bool | None = None,
    normalize: bool | None = None,
    query_prefix: str | None = None,
    passage_prefix: str | None = None,
    max_length: int | None = None,
    passage_max_length: int | None = None,
    target_dim: int | None = None,
) -> CausalLMEncoder:
    """The student: the teacher's own model wrapped in PEFT LoRA (``lora = {r, alpha, dropout, target_modules}``)
    on the decoder layers below ``align_layer``. The base weights are the teacher's (no copy); the teacher keeps
    reading them with the adapters off. Unset view settings (null) are the teacher's."""
    if not isinstance(teacher, CausalLMEncoder):
        raise ConfigError("this student adapts the teacher's own language model with LoRA, so the teacher must be a "
                          "causal LM too: set teacher=qwen_coder_1_5b (or teacher=tiny_lm), or choose another student")
    if teacher.is_student or teacher._student_adapters:
        raise ConfigError("the teacher's model is already adapted by a student: build one student per teacher")
    from peft import get_peft_model

    align = teacher.align_layer if align_layer is None else align_layer
    layers = len(_decoder(teacher.base_lm).layers)
    if isinstance(align, bool) or not isinstance(align, int) or not 1 <= align <= layers:
        raise ConfigError(f"student.align_layer={align!r}: the model has {layers} decoder layers; choose 1..{layers} "
                          f"(or null: the teacher's {teacher.align_layer})")
    config = lora_config(teacher.base_lm, align, **dict(lora or {}))
    with _quiet_peft():
        adapters = get_peft_model(teacher.base_lm, config)
    # PEFT records the folder it was loaded from (a cache path offline): name the model the config named instead
    adapters.peft_config["default"].base_model_name_or_path = teacher.name

    def pick(value: Any, default: Any) -> Any:
        return default if value is None else value

    student = CausalLMEncoder(
        teacher.base_lm, teacher.tokenizer, adapters=adapters, align_layer=align,
        final_norm=pick(final_norm, teacher.final_norm), normalize=pick(normalize, teacher.normalize),
        query_prefix=pick(query_prefix, teacher.prefixes["query"]),
        passage_prefix=pick(passage_prefix, teacher.prefixes["passage"]),
        max_length=pick(max_length, teacher.max_length),
        passage_max_length=pick(passage_max_length, teacher.max_lengths["passage"]),
        name=teacher.name, setting="student",
    )
    teacher._student_adapters = (adapters,)
    if target_dim is not None and student.dim != target_dim:  # pragma: no cover - the same model, the same width
        raise ConfigError(f"student embeds in {student.dim} dimensions but the teacher in {target_dim}")
    return student.train()


def lora_config(lm: nn.Module, align_layer: int, r: int = 8, alpha: float = 16, dropout: float = 0.0,
                target_modules: Sequence[str] = DEFAULT_TARGETS) -> Any:
    """A PEFT ``LoraConfig`` on ``target_modules`` of decoder layers ``0 .. align_layer - 1``, checked first."""
    from peft import LoraConfig

    if isinstance(r, bool) or not isinstance(r, int) or r < 1:
        raise ConfigError(f"student.lora.r={r!r}: the adapter rank must be an integer >= 1 (e.g. 8)")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not alpha > 0:
        raise ConfigError(f"student.lora.alpha={alpha!r}: must be a number > 0 (e.g. 16, twice the rank)")
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        raise ConfigError(f"student.lora.dropout={dropout!r}: must be in [0, 1)")
    layer = _decoder(lm).layers[0]
    names = {n.rsplit(".", 1)[-1] for n, m in layer.named_modules() if isinstance(m, nn.Linear)}
    unknown = sorted(set(target_modules) - names)
    if unknown or not target_modules:
        raise ConfigError(f"student.lora.target_modules: {', '.join(unknown) or 'empty'} names no linear layer of a "
                          f"decoder layer; choose from {', '.join(sorted(names))}")
    return LoraConfig(r=r, lora_alpha=alpha, lora_dropout=float(dropout), target_modules=list(target_modules),
                      layers_to_transform=list(range(align_layer)), layers_pattern="layers", bias="none",
                      task_type="CAUSAL_LM")


#: the fields of optical_lm.json: name -> (accepted types, may be null, default when absent)
_LM_FIELDS: dict[str, tuple[tuple[type, ...], bool, object]] = {
    "align_layer": ((int,), False, None),
    "final_norm": ((bool,), False, True),
    "normalize": ((bool,), False, True),
    "query_prefix": ((str,), False, ""),
    "passage_prefix": ((str,), False, ""),
    "max_length": ((int,), False, 128),
    "passage_max_length": ((int,), True, None),
    "dtype": ((str,), False, "auto"),
    "base_model": ((str,), False, None),
}


def read_lm_config(folder: Path) -> dict:
    """The plain, type-checked fields of ``folder/optical_lm.json`` (nothing in a shared folder is imported or
    called); a missing folder, file or field is a one-line :class:`ModelLoadError`."""
    file = folder / LM_CONFIG
    if not file.is_file():
        raise ModelLoadError(f"{folder} is not a saved optical-lightning language model (no {LM_CONFIG}); copy the "
                             f"whole saved folder again")
    return read_plain_fields(file, _LM_FIELDS, "settings")
