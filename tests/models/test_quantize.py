"""The int8 copy of a causal LM (models/quantize.py): one layer against the float matmul it replaces, the tiny Qwen2's
scores against its float ones, a LoRA student merged, the original left as it was, and the settings' one-line errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import SW_BITEXT

from optical_lightning.data.bitext import read_bitext
from optical_lightning.models.causal_lm import adapt_student
from optical_lightning.models.quantize import Int8Linear, check_quantize, int8_copy
from optical_lightning.models.tiny import tiny_causal_lm
from optical_lightning.utils.errors import ConfigError

SW = [p.tgt for p in read_bitext(SW_BITEXT, "sw")[:8]]
LORA = {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj", "up_proj"]}
pytestmark = pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing:FutureWarning")


def relative_error(got: torch.Tensor, want: torch.Tensor) -> torch.Tensor:
    """Per row: |got - want| / |want|."""
    return (got - want).norm(dim=-1) / want.norm(dim=-1)


def test_int8_linear_is_the_float_matmul_up_to_rounding_and_one_huge_token_spoils_no_other():
    torch.manual_seed(0)
    weight, bias = torch.randn(96, 64), torch.randn(96)
    x = torch.randn(2, 5, 64)
    x[0, 0] *= 1000  # an "attention sink": one token far larger than the rest
    got = Int8Linear(weight, bias)(x)
    want = F.linear(x, weight, bias)
    assert got.shape == want.shape == (2, 5, 96)
    assert relative_error(got, want).max() < 0.02  # every token, the huge one included
    # per-tensor activation scales (PyTorch's quantize_dynamic) flatten the ordinary tokens: what per-token avoids
    scale = x.abs().max() / 127
    per_tensor = F.linear((x / scale).round() * scale, weight, bias)
    assert relative_error(per_tensor, want)[1].mean() > 10 * relative_error(got, want)[1].mean()
    without_bias = Int8Linear(weight, None)(x)
    torch.testing.assert_close(without_bias + bias, got)


def token_logprobs(lm: torch.nn.Module, encoder) -> torch.Tensor:
    batch = encoder.tokenizer(SW, padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = lm(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    return torch.log_softmax(logits.float(), dim=-1)[batch["attention_mask"].bool()]


def test_the_copy_scores_like_the_float_model_and_leaves_it_untouched():
    teacher = tiny_causal_lm(seed=0)
    before = {name: p.clone() for name, p in teacher.base_lm.named_parameters()}
    quantized = int8_copy(teacher.base_lm, merge_adapters=False)
    linears = [m for m in quantized.modules() if isinstance(m, torch.nn.Linear)]
    assert not linears and any(isinstance(m, Int8Linear) for m in quantized.modules())
    assert not quantized.training and not any(p.requires_grad for p in quantized.parameters())
    want, got = token_logprobs(teacher.lm, teacher), token_logprobs(quantized, teacher)
    assert (got.exp() - want.exp()).abs().sum(-1).max() < 0.05  # total variation per token
    assert (got.argmax(-1) == want.argmax(-1)).float().mean() > 0.95
    for name, p in teacher.base_lm.named_parameters():  # the float model is the same object, values and all
        assert p.dtype == torch.float32 and torch.equal(p, before[name])
    assert any(isinstance(m, torch.nn.Linear) for m in teacher.base_lm.modules())


def test_a_students_adapters_are_merged_and_the_teachers_view_leaves_them_out():
    teacher = tiny_causal_lm(seed=0)
    student = adapt_student(teacher, lora=LORA)
    with torch.no_grad(), torch.random.fork_rng():
        torch.manual_seed(0)
        for name, p in student.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    base, adapted = token_logprobs(teacher.lm, teacher), token_logprobs(student.lm, student)
    merged = token_logprobs(int8_copy(student.base_lm, merge_adapters=True), student)
    plain = token_logprobs(int8_copy(student.base_lm, merge_adapters=False), student)
    gap = (adapted.exp() - base.exp()).abs().sum(-1).mean()
    assert gap > 0.1  # the adapters change the model far more than rounding does
    assert (merged.exp() - adapted.exp()).abs().sum(-1).mean() < gap / 20
    assert (plain.exp() - base.exp()).abs().sum(-1).mean() < gap / 20
    assert not any("lora_" in name for name, _ in int8_copy(student.base_lm, merge_adapters=True).named_modules())


def test_the_setting_is_checked_in_one_line():
    assert check_quantize("none") == "none" and check_quantize("int8", "cpu") == "int8"
    for setting, device, says in (("int4", "cpu", "choose from ['none', 'int8']"), ("int8", "cuda", "CPU only")):
        with pytest.raises(ConfigError) as info:
            check_quantize(setting, device)
        assert "\n" not in str(info.value) and says in str(info.value) and "mcqa.quantize" in str(info.value)
