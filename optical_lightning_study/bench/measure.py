"""Timing, peak-memory and growth-rate primitives shared by the benchmarks."""

from __future__ import annotations

import contextlib
import math
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch

CPU = torch.device("cpu")


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so that a timer measures it (CPU work is synchronous)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(fn: Callable[[], Any], warmup: int, repeats: int, device: torch.device = CPU) -> dict:
    """Median and minimum wall time of ``fn`` over ``repeats`` calls, after ``warmup`` untimed ones.

    The median is the figure of merit: robust to the odd slow call (page faults, a background job)
    without flattering the way a minimum does.
    """
    for _ in range(warmup):
        fn()
    synchronize(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - t0)
    return {"median_s": statistics.median(times), "mean_s": statistics.fmean(times), "min_s": min(times),
            "repeats": repeats}


def peak_memory_mb(fn: Callable[[], Any], device: torch.device = CPU) -> float:
    """Peak of the bytes that tensors allocated *inside* ``fn`` hold at once, in MiB.

    On GPUs the caching allocator keeps this count. On CPUs there is none, so the profiler's
    allocation events are replayed in time order (allocations positive, frees negative); unlike
    process RSS this ignores memory the C allocator keeps after frees, and tensors alive before the call.
    """
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - before) / 2**20
    from torch.profiler import ProfilerActivity, profile

    with _quiet_native_stderr(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events() if e.name() == "[memory]")
    current = peak = 0
    for _, nbytes in events:
        current += nbytes
        peak = max(peak, current)
    return peak / 2**20


@contextlib.contextmanager
def _quiet_native_stderr() -> Iterator[None]:
    """The profiler's C++ layer prints start/stop lines to fd 2 on every use; hide them from the report."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def growth_exponent(sizes: list[float], values: list[float]) -> float:
    """The least-squares slope of log(value) against log(size): ``value ~ size ** exponent``."""
    if len(sizes) < 2:
        return float("nan")
    xs, ys = [math.log(s) for s in sizes], [math.log(v) for v in values]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
