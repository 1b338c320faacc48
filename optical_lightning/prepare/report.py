"""The final summary table: pairs per source/set and language, union files, evaluation sets."""

from __future__ import annotations

from typing import Any

from rich.markup import escape
from rich.table import Table


def _cell(counts: dict[str, Any] | None) -> str:
    if not counts:
        return "-"
    return f"{counts['written']:,} [dim]/ {counts['raw']:,}[/]"


def summary_table(manifest: dict[str, Any]) -> Table:
    """A rich table built from the manifest alone (so it shows exactly what was recorded)."""
    langs: list[str] = manifest["config"]["langs"]
    table = Table(title="optical_lightning.prepare: pairs written [dim]/ raw[/]", show_lines=False)
    table.add_column("set")
    table.add_column("role")
    for lang in langs:
        table.add_column(lang, justify="right", no_wrap=True)
    table.add_column("status")
    for name, src in manifest["sources"].items():
        if src["status"] != "ok":
            table.add_row(name, "", *["-" for _ in langs], f"[yellow]skipped[/]: {escape(src['reason'])}")
            continue
        for set_name, per_lang in src["sets"].items():
            role = next(iter(per_lang.values()))["role"]
            status = "[green]ok[/]" if set_name == name else f"[green]ok[/] ({name})"
            table.add_row(set_name, role, *[_cell(per_lang.get(lang)) for lang in langs], status)
        for r in src["retrieval"]:
            info = manifest["eval"]["retrieval"].get(r, {})
            cells = [f"{info.get('queries', 0):,} q / {info.get('docs', 0):,} d" if info.get("lang") == lang
                     else "-" for lang in langs]
            table.add_row(r, "retrieval", *cells, f"[green]ok[/] ({name})")
        for d in src.get("dictionaries", []):
            info = manifest["eval"].get("dictionaries", {}).get(d, {})
            cells = [f"{info.get('headwords', 0):,} words" if d == f"{lang}-en" else "-" for lang in langs]
            table.add_row(d, "dictionary", *cells, f"[green]ok[/] ({name})")
    table.add_section()
    files = sorted({f for per in manifest["bitext"].values() for f in per})
    for f in files:
        cells = [f"{manifest['bitext'].get(lang, {}).get(f, {}).get('pairs', 0):,}" for lang in langs]
        table.add_row(f"[bold]{f}[/]", "union", *cells, "")
    removed = manifest["overlap"]["removed"]
    table.add_row("[bold]overlap removed[/]", "", *[f"{sum(removed.get(lang, {}).values()):,}"
                                                              for lang in langs], "")
    return table
