"""Numeric precision of inference and training, chosen by what the hardware does fast.

bfloat16 halves the cost of encoder matmuls where the hardware has bf16 units (Ampere+ GPUs;
CPUs with AVX512-BF16 or AMX) and slows them down where it has not, so ``auto`` asks the
hardware. Measured on this project's evaluation data (AfriQA passages, multilingual-e5-small, an
AVX512-BF16 CPU): bf16 encoding runs 2.1x faster and its embeddings keep cosine >= 0.99998 with
fp32. Losses that need the range (the OT head) cast to float32 themselves.
"""

from __future__ import annotations

import contextlib
import os
import platform
from collections.abc import Iterator

import torch

from optical_lightning.utils.errors import ConfigError

PRECISIONS = ("auto", "32", "bf16")


#: oneDNN ISA levels (``ONEDNN_MAX_CPU_ISA``) below native bf16: a process capped at one of them computes bf16 in
#: emulation, so it runs float32
_ISA_WITHOUT_BF16 = {"SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI"}


def bf16_is_fast(device_type: str = "cpu") -> bool:
    """Whether bf16 matmuls run on native units: an Ampere+ GPU; an x86 CPU with AVX512-BF16 or AMX (and oneDNN not
    capped below them by ``ONEDNN_MAX_CPU_ISA``); an Arm CPU with bf16.

    Not ``torch.ops.mkldnn._is_mkldnn_bf16_supported()`` alone: it also says yes on AVX512 CPUs without bf16
    units, where oneDNN emulates bf16 and a matmul runs 4x slower than in float32 (docs/benchmarks.md)."""
    if device_type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA", os.environ.get("DNNL_MAX_CPU_ISA", "")).strip().upper()
    if cap in _ISA_WITHOUT_BF16:
        return False
    if platform.machine().lower() in ("x86_64", "amd64", "i386", "i686"):
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())  # Arm: bf16 instructions (oneDNN's check)
    except (AttributeError, RuntimeError):
        return False


def inference_dtype(precision: str, device_type: str = "cpu") -> torch.dtype | None:
    """``torch.bfloat16`` for autocast, or ``None`` for plain float32."""
    precision = str(precision)
    if precision not in PRECISIONS:
        raise ConfigError(f"precision={precision!r}: choose from {list(PRECISIONS)}")
    if precision == "bf16" or (precision == "auto" and bf16_is_fast(device_type)):
        return torch.bfloat16
    return None


@contextlib.contextmanager
def autocast(precision: str, device_type: str = "cpu") -> Iterator[None]:
    dtype = inference_dtype(precision, device_type)
    with torch.autocast(device_type, dtype=dtype, enabled=dtype is not None):
        yield


def training_precision(accelerator: str = "cpu") -> str:
    """Lightning's ``precision`` for ``trainer.precision=${auto_precision:cpu}``."""
    return "bf16-mixed" if bf16_is_fast("cuda" if accelerator == "gpu" else accelerator) else "32-true"
