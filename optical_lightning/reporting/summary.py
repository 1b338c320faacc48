"""The table printed at the end of a run (rich), from the same dictionary as ``results.json``."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from optical_lightning.evaluation.translate_test import STAGES as TRANSLATE_STAGES

STAGES = ("zero_shot", "trained", "teacher_en")


def stage_columns(metrics: dict[str, dict[str, Any]]) -> tuple[str, ...]:
    """:data:`STAGES`, then the translate-test baselines a run evaluated (``eval.translate_test``):
    tables of ordinary runs get no empty columns."""
    present = {stage for stages in metrics.values() for stage in stages}
    return STAGES + tuple(s for s in TRANSLATE_STAGES if s in present)


def flatten_results(results: dict[str, Any]) -> dict[str, float]:
    """``{"<set>/<stage>/<metric>": value, "val/loss": value, ...}``: what sweepers and summaries read."""
    flat = {f"{name}/{stage}/{metric}": value
            for name, stages in results.get("metrics", {}).items()
            for stage, values in stages.items() for metric, value in values.items()}
    flat.update(results.get("training", {}))
    return flat


def print_summary(results: dict[str, Any], console: Console | None = None) -> None:
    console = console or Console()
    cfg = results.get("config", {})
    title = (f"optical-lightning | lang={cfg.get('lang', {}).get('code')} "
             f"distill={cfg.get('distill', {}).get('name')} domain={cfg.get('domain', {}).get('name')}")
    metrics = results.get("metrics", {})
    if metrics:
        table = Table(title=title)
        table.add_column("eval set")
        table.add_column("metric")
        columns = stage_columns(metrics)
        for stage in columns:
            table.add_column(stage.replace("_", "-"), justify="right")
        table.add_column("Δ trained", justify="right")
        for name, stages in metrics.items():
            names = sorted({m for values in stages.values() for m in values})
            for metric in names:
                cells = [stages.get(s, {}).get(metric) for s in columns]
                delta = (cells[1] - cells[0]) if cells[0] is not None and cells[1] is not None else None
                table.add_row(name, metric, *("" if v is None else f"{v:.0f}" if metric == "n" else f"{v:.3f}"
                                              for v in cells),
                              f"{delta:+.3f}" if delta is not None else "")
        console.print(table)
    table = Table(title="training" if metrics else title)
    table.add_column("key")
    table.add_column("value", justify="right")
    for name, value in sorted(results.get("training", {}).items()):
        table.add_row(name, f"{value:.4f}")
    data = results.get("data") or {}
    for key in ("read", "kept", "train_pairs", "val_pairs"):
        if key in data:
            table.add_row(f"data/{key}", str(data[key]))
    domain = data.get("domain") or {}
    if domain.get("train_pairs"):
        table.add_row("data/domain_pairs", f"{domain['train_pairs']} (ratio {domain['ratio']}, {domain['schedule']})")
    for key, value in results.get("timing", {}).items():
        table.add_row(f"timing/{key}", f"{value:.1f}")
    console.print(table)
    if results.get("student_dir"):
        console.print(f"student saved to [bold]{results['student_dir']}[/bold]")
