"""Summaries of a sweep: every ``results.json`` under a multirun folder -> one table and plots.

Set names carry their language (``tico19-test-sw-en``); the summary strips it (``tico19-test``)
so Swahili and Somali runs share columns. Each set is *in-domain* when the run's
``domain.in_domain_eval`` lists it and *general* otherwise, which is how the plots split the
trade-off. No job is silently dropped: a job folder without ``results.json`` is listed as ``failed``
with its one-line error (``error.json``) or as ``incomplete``, and a job of the sweep that has no folder
(the sweep stopped before it) as ``not started``.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from optical_lightning.reporting.plots import save_png
from optical_lightning.utils.atomic import atomic_write_text
from optical_lightning.utils.errors import DataError
from optical_lightning.utils.failures import read_failure

#: the config values a sweep typically varies (shown when they differ between runs)
CONFIG_KEYS = ("lang.code", "distill.name", "distill.nce_weight", "teacher.name", "domain.name", "domain.ratio", "domain.schedule",
               "ot.blur", "ot.scaling", "ot.reach", "ot.loss", "ot.marginals", "ot.special_tokens",
               "optim.optimizer.lr", "data.max_pairs", "data.bucket_batches", "student.trainable_layers", "data.student_cache",
               "trainer.max_steps", "seed")
#: the headline metric of each kind of set
HEADLINE = {"afriqa": "nDCG@10", "udhr": "nDCG@10"}
DEFAULT_HEADLINE = "P@1"  # "find the translation" sets


def _get(cfg: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(cfg, dict) or part not in cfg:
            return None
        cfg = cfg[part]
    return cfg


def base_set(name: str, lang: str) -> str:
    return re.sub(rf"-{re.escape(lang)}-en$", "", name)


def collect(sweep_dir: str | Path) -> list[dict[str, Any]]:
    """One row per job folder: config values, ``status``, and ``<set>/<stage>/<metric>`` values."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise DataError(f"sweep folder not found: {sweep_dir} (pass the multirun folder, e.g. outputs/<task>/multirun/<time>)")
    jobs = sorted({p.parent for p in sweep_dir.rglob(".hydra")} | {p.parent for p in sweep_dir.rglob("results.json")},
                  key=lambda p: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(p))])
    if not jobs:
        raise DataError(f"{sweep_dir}: no runs found (no results.json or .hydra folder below it)")
    rows = []
    for job in jobs:
        row: dict[str, Any] = {"job": str(job.relative_to(sweep_dir)) or "."}
        results_path = job / "results.json"
        if not results_path.is_file():
            failure = read_failure(job)
            rows.append(row | ({"status": "failed", "error": failure["error"]} if failure else {"status": "incomplete"}))
            continue
        results = json.loads(results_path.read_text())
        cfg = results.get("config", {})
        lang = _get(cfg, "lang.code") or ""
        in_domain = set(_get(cfg, "domain.in_domain_eval") or [])
        row |= {key: _get(cfg, key) for key in CONFIG_KEYS} | {"status": "complete"}
        for name, stages in results.get("metrics", {}).items():
            short = base_set(name.split("/")[0], lang) + name[len(name.split("/")[0]):]
            row[f"kind:{short}"] = "in-domain" if short.split("/")[0] in in_domain else "general"
            for stage, values in stages.items():
                for metric, value in values.items():
                    if isinstance(value, (int, float)):
                        row[f"{short}/{stage}/{metric}"] = value
        for key, value in results.get("training", {}).items():
            row[key] = value
        row["total_s"] = results.get("timing", {}).get("total_s")
        rows.append(row)
    found = {r["job"] for r in rows}
    rows += [{"job": job, "status": "not started", "overrides": ",".join(overrides)}
             for job, overrides in planned_jobs(sweep_dir) if job not in found]
    return rows


def planned_jobs(sweep_dir: Path) -> list[tuple[str, list[str]]]:
    """(job folder, the overrides it sweeps) of every job the sweep in ``sweep_dir`` was to run, as Hydra's basic sweeper
    expands its ``multirun.yaml``; empty for other sweepers (Optuna chooses its jobs as it goes) and for
    job folders that are not numbered."""
    import yaml

    try:
        config = yaml.safe_load((sweep_dir / "multirun.yaml").read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return []
    hydra = config.get("hydra") or {}
    sweeper = hydra.get("sweeper") or {}
    if not str(sweeper.get("_target_", "")).endswith("BasicSweeper") or \
            str((hydra.get("sweep") or {}).get("subdir")) != "${hydra.job.num}":
        return []
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    arguments = [f"{k}={v}" for k, v in (sweeper.get("params") or {}).items()]
    arguments += list((hydra.get("overrides") or {}).get("task") or [])
    try:
        parsed = OverridesParser.create().parse_overrides(arguments)
        batches = BasicSweeper.split_arguments(parsed, None)
    except Exception:  # noqa: BLE001 - a sweep we cannot expand lists only the folders it has
        return []
    swept = {o.get_key_element() for o in parsed if o.is_sweep_override()}  # what tells the jobs apart
    jobs = (job for batch in batches for job in batch)
    return [(str(i), [o for o in job if o.split("=", 1)[0] in swept]) for i, job in enumerate(jobs)]


def varying(rows: list[dict[str, Any]], keys: Iterable[str] = CONFIG_KEYS) -> list[str]:
    """Config keys whose value differs between complete runs (``lang.code`` always)."""
    done = [r for r in rows if r.get("status") == "complete"]
    return [k for k in keys if k == "lang.code" or len({json.dumps(r.get(k)) for r in done}) > 1]


def headline_columns(rows: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    """``(set, metric, kind)`` for each evaluated set: its headline metric and in-domain/general."""
    sets: dict[str, str] = {}
    for r in rows:
        for key, value in r.items():
            if key.startswith("kind:"):
                sets.setdefault(key[5:], value)
    out = []
    for name, kind in sorted(sets.items(), key=lambda kv: (kv[1] != "in-domain", kv[0])):
        if any(f"{name}/{stage}/accuracy" in r for r in rows for stage in ("trained", "zero_shot")):
            metric = "accuracy"  # multiple-choice sets
        else:
            metric = HEADLINE.get(name.split("/")[0], DEFAULT_HEADLINE)
        out.append((name, metric, kind))
    return out


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def markdown(rows: list[dict[str, Any]], title: str = "Sweep summary") -> str:
    """A table: varying config, then per set the trained headline metric and its change vs zero-shot."""
    keys = varying(rows)
    heads = headline_columns(rows)
    header = ["job", *keys] + [f"{name} {metric} ({kind})" for name, metric, kind in heads] + ["val/loss", "status"]
    lines = [f"# {title}", "", "Trained value, with the change from zero-shot in brackets.", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        cells = [r["job"], *(_fmt(r.get(k)) for k in keys)]
        for name, metric, _ in heads:
            trained, zero = r.get(f"{name}/trained/{metric}"), r.get(f"{name}/zero_shot/{metric}")
            if trained is None:
                trained, zero = r.get(f"{name}/zero_shot/{metric}"), None  # distill=none runs
            cells.append(f"{trained:.3f}" + (f" ({trained - zero:+.3f})" if zero is not None else "")
                         if trained is not None else "")
        status = r.get("status", "")
        if r.get("error"):
            status += f": {r['error']}".replace("|", "\\|")
        elif r.get("overrides"):
            status += f" ({r['overrides']})"
        cells += [_fmt(r.get("val/loss")), status]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_csv(rows: list[dict[str, Any]], path: Path) -> Path:
    columns = list(dict.fromkeys(k for r in rows for k in r if not k.startswith("kind:")))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return atomic_write_text(path, buffer.getvalue())


def plot_ratio(rows: list[dict[str, Any]], path: Path) -> Path | None:
    """Trained headline metric vs ``domain.ratio``, one panel per (language, set), a line per schedule."""
    done = [r for r in rows if r.get("status") == "complete" and r.get("domain.ratio") is not None]
    if len({r["domain.ratio"] for r in done}) < 2:
        return None
    import matplotlib.pyplot as plt  # headless backend set by optical_lightning.reporting.plots

    langs = sorted({r["lang.code"] for r in done})
    heads = headline_columns(done)
    fig, axes = plt.subplots(len(langs), len(heads), figsize=(3.6 * len(heads), 3.2 * len(langs)), squeeze=False)
    for i, lang in enumerate(langs):
        for j, (name, metric, kind) in enumerate(heads):
            ax = axes[i][j]
            for schedule in sorted({str(r.get("domain.schedule")) for r in done}):
                points = sorted((r["domain.ratio"], r.get(f"{name}/trained/{metric}"), r.get(f"{name}/zero_shot/{metric}"))
                                for r in done if r["lang.code"] == lang and str(r.get("domain.schedule")) == schedule)
                points = [p for p in points if p[1] is not None]
                if points:
                    ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=schedule)
                    if points[0][2] is not None:
                        ax.axhline(points[0][2], color="grey", linestyle=":", linewidth=1)
            ax.set_title(f"{lang}: {name} ({kind})", fontsize=9)
            ax.set_xlabel("domain ratio")
            ax.set_ylabel(metric)
            ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8, title="schedule (dotted: zero-shot)", title_fontsize=7)
    fig.tight_layout()
    return save_png(fig, path)


def plot_tradeoff(rows: list[dict[str, Any]], path: Path) -> Path | None:
    """In-domain vs general headline metric (mean over general sets), one point per run."""
    done = [r for r in rows if r.get("status") == "complete"]
    heads = headline_columns(done)
    inside = [(n, m) for n, m, k in heads if k == "in-domain" and m != "accuracy"]
    general = [(n, m) for n, m, k in heads if k == "general" and n != "bitext-val" and m != "accuracy"]
    if not inside or not general:
        return None
    import matplotlib.pyplot as plt  # headless backend set by optical_lightning.reporting.plots

    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    for lang in sorted({r["lang.code"] for r in done}):
        xs, ys, labels = [], [], []
        for r in done:
            if r["lang.code"] != lang:
                continue
            x = [r.get(f"{n}/trained/{m}") for n, m in inside]
            y = [r.get(f"{n}/trained/{m}") for n, m in general]
            if None in x or None in y:
                continue
            xs.append(sum(x) / len(x))
            ys.append(sum(y) / len(y))
            labels.append(_fmt(r.get("domain.ratio")))
        ax.scatter(xs, ys, label=lang)
        for x, y, label in zip(xs, ys, labels):
            ax.annotate(label, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel(f"in-domain ({', '.join(f'{n} {m}' for n, m in inside)})")
    ax.set_ylabel(f"general (mean of {', '.join(n for n, _ in general)})")
    ax.set_title("in-domain vs general after training (labels: domain ratio)", fontsize=9)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return save_png(fig, path)


def summarize(sweep_dir: str | Path, out_dir: str | Path | None = None) -> dict[str, Path]:
    """Write ``summary.csv``, ``summary.md`` and PNG plots into ``out_dir`` (default: the sweep folder)."""
    rows = collect(sweep_dir)
    out = Path(out_dir or sweep_dir)
    written = {"csv": write_csv(rows, out / "summary.csv"),
               "md": atomic_write_text(out / "summary.md", markdown(rows, f"Sweep summary: {Path(sweep_dir).name}"))}
    for name, plot in (("ratio_plot", plot_ratio), ("tradeoff_plot", plot_tradeoff)):
        path = plot(rows, out / f"{name.replace('_plot', '')}.png")
        if path is not None:
            written[name] = path
    return written
