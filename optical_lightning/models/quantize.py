"""A weight-and-activation int8 copy of a causal language model, for faster scoring on a CPU without bf16 units.

Letter log-likelihood scoring (:mod:`~optical_lightning.evaluation.loglik`) is a forward pass of the whole model over
long prompts. Without bf16 units it runs in float32, at about 40% of bf16's speed. :class:`Int8Linear` keeps each
linear layer's weight as int8 per output channel and quantizes each token's input on the fly,

.. math:: y_{to} = s_t\\, s_o \\sum_i \\mathrm{round}(x_{ti}/s_t)\\, \\mathrm{round}(W_{oi}/s_o) + b_o,\\qquad
   s_t = \\max_i |x_{ti}|/127,\\quad s_o = \\max_i |W_{oi}|/127,

with int8 products summed in int32 (``torch._int_mm``). The embeddings, norms and attention stay in float32. Scales
are per token, not per tensor (PyTorch's ``quantize_dynamic``): one token with huge activations (a language model's
first, "attention sink" token) would otherwise flatten every other token of the batch, and per-tensor scales
turned about half of the answers (docs/benchmarks.md). A LoRA student is merged first
(:math:`W + \\frac{\\alpha}{r} B A`, PEFT's ``get_delta_weight``), so the copy scores the student as it is.

It is an option (``mcqa.quantize=int8``), not the default: its answers differ from the bf16 model's on more
questions than float32's do (docs/benchmarks.md). The copy shares nothing with the original (which may go on
training); it costs about a byte per linear weight plus a float32 copy of the embeddings.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from optical_lightning.utils.errors import ConfigError

#: ``mcqa.quantize``: float (the weights' own dtype) or the int8 copy
QUANTIZE = ("none", "int8")


def check_quantize(setting: object, device: torch.device | str = "cpu", name: str = "mcqa.quantize") -> str:
    """``none`` or ``int8``, checked before any model loads; int8 runs on the CPU only."""
    value = str(setting)
    if value not in QUANTIZE:
        raise ConfigError(f"{name}={setting!r}: choose from {list(QUANTIZE)}")
    if value == "int8" and torch.device(device).type != "cpu":
        raise ConfigError(f"{name}=int8: the int8 kernels used here run on the CPU only; use {name}=none on a GPU")
    return value


def _lora_weight(module: nn.Module, merge: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A PEFT LoRA layer's effective (weight, bias): the base layer's, plus its active adapters' deltas when ``merge``."""
    base = module.base_layer
    weight = base.weight.detach().float()
    if merge and not getattr(module, "merged", False):  # merged: PEFT already folded the deltas into the base
        for adapter in module.active_adapters:
            if adapter in module.lora_A:
                weight = weight + module.get_delta_weight(adapter).detach().float()
    return weight, base.bias


class Int8Linear(nn.Module):
    """``y = x W^T + b`` with W int8 per output channel and x int8 per token (row), computed by ``torch._int_mm``
    (int8 products, int32 sums) and rescaled in float32. Per-token scales keep a token with huge activations
    (a language model's first, "attention sink" token) from flattening every other token of the batch to zero."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        super().__init__()
        weight = weight.detach().float()
        scale = weight.abs().amax(1).clamp(min=1e-12) / 127
        self.in_features, self.out_features = weight.shape[1], weight.shape[0]
        self.register_buffer("weight_t", (weight / scale[:, None]).round().clamp(-127, 127).to(torch.int8).t().contiguous())
        self.register_buffer("weight_scale", scale)
        self.register_buffer("bias", None if bias is None else bias.detach().float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        rows = x.reshape(-1, self.in_features).float()
        scale = rows.abs().amax(1, keepdim=True).clamp(min=1e-12) / 127
        quantized = (rows / scale).round_().clamp_(-127, 127).to(torch.int8)
        y = torch._int_mm(quantized, self.weight_t).float().mul_(scale).mul_(self.weight_scale)
        if self.bias is not None:
            y += self.bias
        return y.reshape(*shape[:-1], self.out_features)


def _replaced(model: nn.Module) -> dict[str, nn.Module]:
    """The modules an int8 copy replaces, by name: plain linear layers, and PEFT LoRA layers whole."""
    out = {}
    for name, module in model.named_modules():
        if (hasattr(module, "base_layer") and hasattr(module, "lora_A")) or \
                (isinstance(module, nn.Linear) and not _inside_lora(name, model)):
            out[name] = module
    return out


def int8_copy(model: nn.Module, *, merge_adapters: bool) -> nn.Module:
    """A copy of ``model`` (a Hugging Face causal LM, or a PEFT model around one) whose linear layers are
    :class:`Int8Linear`, in eval mode. ``merge_adapters``: fold the LoRA adapters in (the student); else the base
    weights alone (the teacher, whose view of a shared model has the adapters off)."""
    check_quantize("int8", next(model.parameters()).device)
    replacements: dict[int, nn.Module] = {}
    for module in _replaced(model).values():
        if hasattr(module, "lora_A"):
            weight, bias = _lora_weight(module, merge_adapters)
        else:
            weight, bias = module.weight.detach().float(), module.bias
        replacements[id(module)] = Int8Linear(weight, bias)
    if not replacements:
        raise ConfigError(f"mcqa.quantize=int8: {type(model).__name__} has no linear layers to quantize")
    # deepcopy's memo maps an object to what stands for it in the copy: every linear layer is swapped for its
    # int8 twin without first copying its float weights (the copy would otherwise briefly double the memory)
    quantized = copy.deepcopy(model, memo=dict(replacements))
    quantized = quantized.float().eval()
    for param in quantized.parameters():
        param.requires_grad_(False)
    return quantized


def _inside_lora(name: str, model: nn.Module) -> bool:
    """Whether ``name`` is inside a LoRA layer (its base layer, ``lora_A``, ``lora_B``): replaced with it, whole."""
    parts = name.split(".")
    for depth in range(len(parts) - 1, 0, -1):
        parent = model.get_submodule(".".join(parts[:depth]))
        if hasattr(parent, "base_layer") and hasattr(parent, "lora_A"):
            return True
    return False
