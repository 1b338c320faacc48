"""Faster steps: what each way of training less of the student saves, against today's step.

Every variant is the ``optical`` step (the OT head, teacher cache off) on the benchmark's batch,
with a differently configured student:

* ``full`` - today's student: every transformer layer trains (the embedding table is fixed);
* ``top{k}`` - ``student.trainable_layers=k``: no gradient flows below the top ``k`` layers;
* ``top{k}_cached`` - the same, with ``data.student_cache=true``: the fixed lower layers' output is
  read from :mod:`optical_lightning.data.student_cache`, so only the top ``k`` layers run at all;
* ``lora`` - ``student.lora``: PEFT adapters train, every backbone weight is fixed;
* ``compiled`` - the full student with ``torch.compile`` (its compile time is reported apart).

Shorter sequences: batches drawn by the run's own sampler, random (``bucket_batches=0``) against
length-sorted windows (``data.bucket_batches``), their mean padded length and a step on each.
The loss of ``top{k}_cached`` is checked against ``top{k}``'s on the same batch and dropout masks.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from omegaconf import DictConfig, OmegaConf

from optical_lightning.data.bitext import BitextPair
from optical_lightning.data.student_cache import FrozenLayersCache
from optical_lightning.models.encoder import Encoder
from optical_lightning_study.bench.measure import time_call
from optical_lightning_study.bench.steps import StepBench

log = logging.getLogger(__name__)


def bench_student_variants(cfg: DictConfig, build_student: Callable[..., Encoder], make_bench: Callable[[Encoder], StepBench],
                           datamodule_factory: Callable[[int], Any], warmup: int, repeats: int) -> dict[str, Any]:
    """Median ``optical`` step of each student variant, the cache's loss agreement and the sampler's padding."""
    v = cfg.bench.student_variants
    k = int(v.top_layers)
    steps: dict[str, dict] = {}

    def timed(name: str, student: Encoder, **step_kwargs: Any) -> StepBench:
        log.info("student variant %s", name)
        bench = make_bench(student)
        steps[name] = time_call(bench.step_fn("optical", **step_kwargs), warmup, repeats, bench.device)
        steps[name]["trainable_params"] = sum(p.numel() for p in student.parameters() if p.requires_grad)
        return bench

    full = timed("full", build_student(trainable_layers=None))
    top = build_student(trainable_layers=k)
    top_bench = timed(f"top{k}", top)
    cache = FrozenLayersCache(top)
    cache.prepare([p.tgt for p in top_bench.pairs])
    timed(f"top{k}_cached", top, student_cache=cache)
    loss_live, loss_cached = top_bench.loss(), top_bench.loss(student_cache=cache)
    del top, top_bench, cache
    if v.lora:
        timed("lora", build_student(trainable_layers=None, lora=OmegaConf.to_container(v.lora)))
    compile_s = None
    if v.compile:
        student = build_student(trainable_layers=None)
        student.backbone.compile(dynamic=True)
        bench = make_bench(student)
        step = bench.step_fn("optical")
        t0 = time.perf_counter()
        step()  # the first call compiles
        compile_s = time.perf_counter() - t0
        steps["compiled"] = time_call(step, warmup, repeats, bench.device)
        steps["compiled"]["trainable_params"] = steps["full"]["trainable_params"]
    padding = _sampler_padding(full, datamodule_factory, int(v.bucket_batches), int(v.sampler_batches), warmup, repeats)
    base = steps["full"]["median_s"]
    return {
        "steps": steps,
        "speedup_vs_full": {name: base / t["median_s"] for name, t in steps.items()},
        "top_layers": k,
        "cached_loss": {"live": loss_live, "cached": loss_cached, "abs_diff": abs(loss_live - loss_cached)},
        "compile_s": compile_s,
        "padding": padding,
    }


def _sampler_padding(bench: StepBench, datamodule_factory: Callable[[int], Any], bucket: int, n_batches: int,
                     warmup: int, repeats: int) -> dict[str, Any]:
    """Random against length-bucketed batches of the real sampler: padded length and step time."""
    out: dict[str, Any] = {"bucket_batches": bucket, "batches": n_batches}
    for name, window in (("random", 0), ("bucketed", bucket)):
        datamodule = datamodule_factory(window)
        batches = _first_batches(datamodule, n_batches, len(bench.pairs))
        student = bench.student
        lengths = [int(student.tokenize([p.tgt for p in b], "query")["input_ids"].shape[1]) for b in batches]
        # every batch once per round, so the mean is the step time of this sampler's mix of lengths
        timing = time_call(bench.step_fn("optical", batches=batches), warmup, len(batches) * max(1, repeats // len(batches)),
                           bench.device)
        out[name] = {"mean_padded_tokens": sum(lengths) / len(lengths), "median_step_s": timing["median_s"],
                     "mean_step_s": timing["mean_s"]}
    out["speedup"] = out["random"]["mean_step_s"] / out["bucketed"]["mean_step_s"]
    return out


def _first_batches(datamodule: Any, n_batches: int, batch_size: int) -> list[list[BitextPair]]:
    """The first ``n_batches`` batches the training sampler serves in epoch 0."""
    datamodule.setup("fit")
    sampler = datamodule.train_sampler()
    sampler.set_epoch(0)
    pool = datamodule.train_pairs + datamodule.domain_pairs
    order = [int(i) for i in sampler.global_order().tolist()]
    return [[pool[i] for i in order[s:s + batch_size]] for s in range(0, n_batches * batch_size, batch_size)]
