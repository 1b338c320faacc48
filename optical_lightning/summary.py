"""The table printed at the end of a run (rich), from the same dictionary as ``results.json``."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table


def print_summary(results: dict[str, Any], console: Console | None = None) -> None:
    console = console or Console()
    cfg = results.get("config", {})
    title = (f"optical-lightning | lang={cfg.get('lang', {}).get('code')} "
             f"distill={cfg.get('distill', {}).get('name')} domain={cfg.get('domain', {}).get('name')}")
    table = Table(title=title, show_lines=False)
    table.add_column("section")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for section, values in results.get("metrics", {}).items():
        for name, value in sorted(values.items()):
            table.add_row(section, name, f"{value:.4f}" if isinstance(value, float) else str(value))
    data = results.get("data") or {}
    for key in ("read", "kept", "train_pairs", "val_pairs"):
        if key in data:
            table.add_row("data", key, str(data[key]))
    for key, value in results.get("timing", {}).items():
        table.add_row("timing", key, f"{value:.1f}")
    console.print(table)
    if results.get("student_dir"):
        console.print(f"student saved to [bold]{results['student_dir']}[/bold]")
