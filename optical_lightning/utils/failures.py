"""``<job dir>/error.json``: the one-line error of a multirun job that failed, so that the sweep can go on
and its summaries can say which jobs failed and why (see :mod:`optical_lightning.training.sweep_status`)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from optical_lightning.utils.atomic import atomic_write_json

ERROR = "error.json"


def record_failure(job_dir: Path, message: str, overrides: list[str]) -> Path:
    """Write ``<job_dir>/error.json``: the one-line error and the overrides of the job that failed."""
    return atomic_write_json(job_dir / ERROR, {"error": message, "overrides": overrides, "time": time.time()})


def clear_failure(job_dir: Path) -> None:
    """A job that runs again starts without the error of its earlier attempt."""
    (job_dir / ERROR).unlink(missing_ok=True)


def read_failure(job_dir: Path) -> dict[str, Any] | None:
    """The record of a failed job, or None (no record, or an unreadable one)."""
    try:
        record = json.loads((job_dir / ERROR).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and isinstance(record.get("error"), str) else None
