"""What a run costs the machine it runs on: process wall time, peak memory, and which machine it was."""

from __future__ import annotations

import os
import platform
import resource
import time


def peak_rss_mb() -> float:
    """The process's peak resident memory so far, in MiB (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if platform.system() == "Darwin" else peak / 1024


def process_age_s() -> float | None:
    """Seconds since this process started (interpreter start-up and imports included), or None
    where /proc is not available."""
    try:
        start_ticks = int(open("/proc/self/stat").read().rsplit(")", 1)[1].split()[19])
        uptime = float(open("/proc/uptime").read().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return uptime - start_ticks / os.sysconf("SC_CLK_TCK")


def machine() -> dict[str, object]:
    """A short description of the hardware numbers were measured on (they are never compared across machines)."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info: dict[str, object] = {"cpu": cpu, "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                               else os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
                               "time": time.strftime("%Y-%m-%d %H:%M:%S")}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def return_freed_memory_promptly(threshold_bytes: int = 4 << 20) -> bool:
    """Serve allocations above ``threshold_bytes`` with their own mappings (glibc ``M_MMAP_THRESHOLD``),
    so the memory of freed activations goes back to the system instead of staying in a fragmented heap.

    glibc raises this threshold dynamically up to 32 MiB; with batches of varying lengths, activations
    of a few MiB then pile up in the heap and a run's RSS creeps upwards. Measured on 30 default
    training steps: peak RSS 4.56 GB as glibc leaves it, 4.07 GB at 4 MiB with the same step time;
    1 MiB gave 3.35 GB but 27% slower steps (page faults), 128 KiB 3.31 GB and 45% slower.
    A threshold the user set (``MALLOC_MMAP_THRESHOLD_``) is left alone. Returns whether it was set.
    """
    if "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(-3, threshold_bytes))  # -3: M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        return False
