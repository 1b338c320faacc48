"""LoRA adapters on a backbone: injecting them, folding them into plain weights, saving them alone (PEFT format).

Why LoRA: the update is a low-rank ``B @ A`` beside each frozen weight, so the student cannot wander far
from the pretrained model, and a job's trained state is a few MB. These functions work on the bare Hugging
Face backbone; :meth:`Encoder.add_lora <optical_lightning.models.encoder.Encoder.add_lora>` applies them,
and :meth:`Encoder.save_pretrained <optical_lightning.models.encoder.Encoder.save_pretrained>` saves the result.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from safetensors.torch import save_file
from torch import Tensor, nn
from transformers import PreTrainedModel

from optical_lightning.utils.errors import ConfigError

if TYPE_CHECKING:  # peft is imported on use: a student without adapters never needs it
    from peft import LoraConfig


def inject_lora(backbone: PreTrainedModel, r: int = 8, alpha: float = 16, dropout: float = 0.0,
                target_modules: Sequence[str] = ("query", "key", "value", "dense")) -> LoraConfig:
    """Freeze ``backbone`` and inject PEFT LoRA adapters (rank ``r``) into its ``target_modules`` linears;
    only the adapters are left trainable. Returns the adapters' config (what saving them needs)."""
    from peft import LoraConfig, inject_adapter_in_model

    if isinstance(r, bool) or not isinstance(r, int) or r < 1:
        raise ConfigError(f"student.lora.r={r!r}: the adapter rank must be an integer >= 1 (e.g. 8)")
    if not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        raise ConfigError(f"student.lora.dropout={dropout!r}: must be in [0, 1)")
    names = {n.rsplit(".", 1)[-1] for n, m in backbone.named_modules() if isinstance(m, nn.Linear)}
    unknown = sorted(set(target_modules) - names)
    if unknown:
        raise ConfigError(f"student.lora.target_modules: {', '.join(unknown)} name no linear layer of this backbone; "
                          f"choose from {', '.join(sorted(names))}")
    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=float(dropout), target_modules=list(target_modules),
                        bias="none")
    backbone.requires_grad_(False)
    inject_adapter_in_model(config, backbone)
    for name, param in backbone.named_parameters():
        param.requires_grad_("lora_" in name)
    return config


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


def save_lora_adapter(backbone: PreTrainedModel, config: LoraConfig, folder: Path) -> None:
    """The adapter alone, loadable with ``peft.PeftModel.from_pretrained(base, folder)``."""
    from peft import get_peft_model_state_dict

    folder.mkdir()
    config.save_pretrained(str(folder))
    # PeftModel's key layout (base_model.model.<module path>), so PeftModel.from_pretrained(base, folder) loads it
    adapter = {f"base_model.model.{k}": v.detach().cpu().contiguous()
               for k, v in get_peft_model_state_dict(backbone).items()}
    save_file(adapter, folder / "adapter_model.safetensors")
