"""The training-step benchmark: what one optimisation step costs with each distillation loss.

A step is what the trainer does per batch: collate (tokenise, or read the teacher cache), forward
under the run's precision, backward, optimizer step. Every variant runs on the same real bitext
pairs, chosen to have about ``tokens`` tokens a side, with the same student and optimizer settings:

* ``student_only`` - the student's forward/backward and update with no teacher and no head: the
  floor every distillation step pays;
* ``mse`` - the MSE baseline as ``distill=mse`` ships it (pooled teacher vector; student on the
  target and on the English side), and ``mse_target_only`` without the English term;
* ``optical`` / ``optical_divergence`` - the OT head with OPTICAL's <P, C> loss / the debiased
  Sinkhorn divergence, the teacher running live;
* ``optical_cached`` - ``optical`` with the teacher's token clouds read from the teacher cache.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor

from optical_lightning.data.bitext import BitextPair
from optical_lightning.data.collate import PairCollator
from optical_lightning.data.student_cache import FrozenLayersCache
from optical_lightning.data.teacher_cache import TeacherTokenCache
from optical_lightning.losses.ot import OTDistillationHead
from optical_lightning.losses.terms import PooledMSETerm, TransportTerm
from optical_lightning.models.encoder import Encoder
from optical_lightning.training.module import DistillationModule
from optical_lightning_study.bench.measure import time_call

# variant -> (OT loss or None, ot_weight, mse_weight, student sees English too)
VARIANTS: dict[str, tuple[str | None, float, float, bool]] = {
    "mse": (None, 0.0, 1.0, True),
    "mse_target_only": (None, 0.0, 1.0, False),
    "optical": ("transport", 1.0, 0.0, False),
    "optical_divergence": ("divergence", 1.0, 0.0, False),
}


def autocast_dtype(trainer_precision: str) -> torch.dtype | None:
    """The autocast dtype of a Lightning precision string (``bf16-mixed``, ``16-mixed``, ``32-true``)."""
    precision = str(trainer_precision)
    if precision.startswith("bf16"):
        return torch.bfloat16
    if precision.startswith("16"):
        return torch.float16
    return None


@contextlib.contextmanager
def _autocast(dtype: torch.dtype | None, device: torch.device) -> Iterator[None]:
    with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
        yield


def pick_pairs(pairs: list[BitextPair], teacher: Encoder, student: Encoder, batch_size: int, tokens: int,
               pool: int = 4000) -> list[BitextPair]:
    """The ``batch_size`` pairs (of the first ``pool``) whose two sides are closest to ``tokens``
    tokens each, counted as the encoders see them (prefix and special tokens included)."""
    candidates = pairs[:pool]
    if not candidates:
        raise ValueError("the step benchmark needs bitext pairs; none were read")
    def lengths(encoder: Encoder, texts: list[str]) -> list[int]:
        prefix = encoder.prefixes["query"]
        ids = encoder.tokenizer([prefix + t for t in texts], truncation=True, max_length=encoder.max_length)["input_ids"]
        return [len(x) for x in ids]

    en = lengths(teacher, [p.en for p in candidates])
    tgt = lengths(student, [p.tgt for p in candidates])
    ranked = sorted(range(len(candidates)), key=lambda i: abs(en[i] - tokens) + abs(tgt[i] - tokens))
    chosen = [candidates[i] for i in ranked[:batch_size]]
    return (chosen * (batch_size // len(chosen) + 1))[:batch_size]  # tiny files: repeat pairs


def _to(batch: dict[str, dict[str, Tensor]], device: torch.device) -> dict[str, dict[str, Tensor]]:
    return {k: {n: t.to(device) for n, t in part.items()} for k, part in batch.items()}


class StepBench:
    """Builds and times one training step per variant on a fixed batch."""

    def __init__(self, teacher: Encoder, student: Encoder, head_factory: Callable[[str], OTDistillationHead],
                 optimizer_factory: Callable[..., torch.optim.Optimizer], pairs: list[BitextPair],
                 precision: str, device: torch.device) -> None:
        self.teacher, self.student, self.pairs = teacher, student, pairs
        self.head_factory, self.optimizer_factory = head_factory, optimizer_factory
        self.dtype, self.device = autocast_dtype(precision), device

    def _module(self, variant: str) -> tuple[DistillationModule, PairCollator]:
        loss, ot_weight, mse_weight, with_en = VARIANTS[variant.removesuffix("_cached")]
        head = self.head_factory(loss) if loss else None
        terms = [PooledMSETerm(mse_weight)] if head is None else [TransportTerm(ot_weight, head), PooledMSETerm(mse_weight)]
        module = DistillationModule(self.student, self.teacher, terms, optimizer=self.optimizer_factory, scheduler=None)
        return module.to(self.device), PairCollator(self.teacher, self.student, with_student_en=with_en)

    def step_fn(self, variant: str, teacher_cache: TeacherTokenCache | None = None,
                student_cache: FrozenLayersCache | None = None,
                batches: list[list[BitextPair]] | None = None) -> Callable[[], Tensor]:
        """One full training step of ``variant`` on the benchmark batch (or the next of ``batches``,
        in turn); returns the loss."""
        batches = batches or [self.pairs]
        turn = iter(range(1 << 62))
        self.student.train()
        params = [p for p in self.student.parameters() if p.requires_grad]
        optimizer = self.optimizer_factory(params=params)
        if variant == "student_only":
            def loss_of() -> Tensor:
                pairs = batches[next(turn) % len(batches)]
                batch = self.student.tokenize([p.tgt for p in pairs], "query")
                return self.student({k: v.to(self.device) for k, v in batch.items()}).pooled.float().sum()
        else:
            module, collate = self._module(variant)
            collate.teacher_cache, collate.student_cache = teacher_cache, student_cache
            def loss_of() -> Tensor:
                pairs = batches[next(turn) % len(batches)]
                return module.distillation_loss(_to(collate(pairs), self.device))[0]

        def step() -> Tensor:
            with _autocast(self.dtype, self.device):
                loss = loss_of()
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            return loss.detach()

        return step

    def teacher_forward_fn(self) -> Callable[[], None]:
        """The live teacher's share of a step: its forward pass over the English side, without grad."""
        batch = {k: v.to(self.device) for k, v in self.teacher.tokenize([p.en for p in self.pairs], "query").items()}

        def forward() -> None:
            with torch.no_grad(), _autocast(self.dtype, self.device):
                self.teacher(batch)

        return forward

    def loss(self, teacher_cache: TeacherTokenCache | None = None, seed: int = 0,
             student_cache: FrozenLayersCache | None = None) -> float:
        """The ``optical`` loss of the batch at the current weights, with fixed dropout masks."""
        module, collate = self._module("optical")
        collate.teacher_cache, collate.student_cache = teacher_cache, student_cache
        self.student.train()
        torch.manual_seed(seed)
        with torch.no_grad(), _autocast(self.dtype, self.device):
            return float(module.distillation_loss(_to(collate(self.pairs), self.device))[0])


def bench_steps(bench: StepBench, variants: list[str], warmup: int, repeats: int) -> dict[str, Any]:
    """Median step times of every variant, and the teacher cache's speed-up and loss agreement."""
    steps: dict[str, dict] = {}
    for variant in ["student_only", *variants]:
        steps[variant] = time_call(bench.step_fn(variant), warmup, repeats, bench.device)
    with tempfile.TemporaryDirectory(prefix="bench-teacher-cache-") as cache_dir:
        cache = TeacherTokenCache(cache_dir, bench.teacher, precision="bf16" if bench.dtype == torch.bfloat16 else "32")
        cache.prepare(p.en for p in bench.pairs)
        live, cached = bench.loss(None), bench.loss(cache)
        # where a cached step's time goes besides the student: building the batch (tokenise vs read the cache)
        _, collate = bench._module("optical")
        collate_live = time_call(lambda: collate(bench.pairs), warmup, repeats)["median_s"]
        collate.teacher_cache = cache
        collate_cached = time_call(lambda: collate(bench.pairs), warmup, repeats)["median_s"]
        steps["optical_cached"] = time_call(bench.step_fn("optical_cached", cache), warmup, repeats, bench.device)
        # the live step again, right after the cached one: both ends of the ratio see the same machine state
        steps["optical_again"] = time_call(bench.step_fn("optical"), warmup, repeats, bench.device)
    live_median = min(steps["optical"]["median_s"], steps["optical_again"]["median_s"])
    # Amdahl: a cache can at most remove the teacher's forward pass from the step
    teacher_s = time_call(bench.teacher_forward_fn(), warmup, repeats, bench.device)["median_s"]
    return {
        "batch": {"pairs": len(bench.pairs),
                  "teacher_tokens": _mean_tokens(bench.teacher, [p.en for p in bench.pairs]),
                  "student_tokens": _mean_tokens(bench.student, [p.tgt for p in bench.pairs])},
        "steps": steps,
        "teacher_cache": {"loss_live": live, "loss_cached": cached, "abs_diff": abs(live - cached),
                          "live_step_s": live_median, "cached_step_s": steps["optical_cached"]["median_s"],
                          "teacher_forward_s": teacher_s, "teacher_share": teacher_s / live_median,
                          "collate_live_s": collate_live, "collate_cached_s": collate_cached,
                          "speedup_bound": live_median / max(live_median - teacher_s, 1e-9)},
    }


def _mean_tokens(encoder: Encoder, texts: list[str]) -> float:
    mask = encoder.tokenize(texts, "query")["attention_mask"]
    return float(mask.sum()) / len(texts)
