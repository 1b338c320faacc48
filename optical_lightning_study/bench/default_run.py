"""The default run's own record: ``make run`` writes its wall time, peak RSS and cache state into
``results.json`` (``run`` and ``timing``); the benchmark reports the latest cold and warm ones.

*Cold* means the run had to compute document embeddings (a fresh clone, or a new teacher); *warm*
means every one came from the embedding cache. A run is the default run when it was started with
no command-line overrides (``make run`` / ``python run.py``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def latest_default_runs(log_dir: str | Path) -> dict[str, dict[str, Any] | None]:
    """``{"cold": record, "warm": record}`` of the most recent complete default runs under ``log_dir``."""
    latest: dict[str, dict[str, Any] | None] = {"cold": None, "warm": None}
    for path in sorted(Path(log_dir).glob("*/runs/*/results.json"), key=lambda p: p.stat().st_mtime):
        try:
            results = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue  # a results file being written right now, or damaged: not a complete run
        run = results.get("run") or {}
        state = run.get("cache")
        if not run.get("default") or state not in latest:
            continue
        timing = results.get("timing", {})
        latest[state] = {
            "wall_s": timing.get("process_s", timing.get("total_s")),
            "peak_rss_mb": timing.get("peak_rss_mb"),
            "phases_s": {k: round(v, 1) for k, v in timing.items() if k.endswith("_s") and k != "process_s"},
            "machine": run.get("machine"),
            "results": str(path),
        }
    return latest
