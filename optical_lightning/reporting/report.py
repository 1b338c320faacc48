"""The study report: the parts of ``make report`` (multirun folders) -> tables, plots and REPORT.md.

Every number comes from a job's ``results.json`` / ``per_query.json``. Seeds of one configuration
are averaged per query first; a cell is that mean over queries with a 95% bootstrap interval over
queries (:mod:`optical_lightning.evaluation.significance`), and system comparisons are paired
randomisation tests on the same queries. ``REPORT.template.md`` holds the prose; its
``{{placeholders}}`` are filled here, so rerunning the study rewrites every table and plot.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from optical_lightning.data.alignment_check import number_agreement
from optical_lightning.data.bitext import read_bitext
from optical_lightning.evaluation.significance import mean_ci, paired_test
from optical_lightning.reporting.plots import save_png
from optical_lightning.utils.atomic import atomic_write_text

PARTS = ("zero_shot", "main", "data", "domain", "ablation", "mmlu")
TEACHERS = {"sentence-transformers/all-MiniLM-L6-v2": "(a) MiniLM", "intfloat/multilingual-e5-small": "(b) mE5"}
SYSTEMS = ("zero-shot", "mse", "optical (transport)", "optical (divergence)")
#: (set, metric) columns of the main table; AfriQA exists for Swahili only
MAIN_COLUMNS = (("afriqa", "nDCG@10"), ("afriqa", "RR@10"), ("afriqa", "R@100"), ("udhr", "P@1"),
                ("tico19-test", "P@1"), ("flores200-devtest", "P@1"))
SHORT_COLUMNS = (("afriqa", "nDCG@10"), ("udhr", "P@1"), ("tico19-test", "P@1"), ("flores200-devtest", "P@1"))
#: the "find the translation" sets of the study (bitext files, also checked for alignment)
TRANSLATION_SETS = ("tico19-test", "flores200-devtest")


@dataclass
class Job:
    part: str
    name: str  # the job folder: its command-line overrides
    results: dict[str, Any]
    per_query: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)

    def cfg(self, dotted: str) -> Any:
        node: Any = self.results.get("config", {})
        for key in dotted.split("."):
            node = node.get(key) if isinstance(node, dict) else None
        return node

    @property
    def lang(self) -> str:
        return self.cfg("lang.code")

    @property
    def teacher(self) -> str:
        name = self.cfg("teacher.model_name_or_path")
        return TEACHERS.get(name, name)

    @property
    def system(self) -> str:
        distill = self.cfg("distill.name")
        if distill == "none":
            return "zero-shot"
        return f"optical ({self.cfg('ot.loss')})" if distill == "optical" else distill

    @property
    def stage(self) -> str:
        return "zero_shot" if self.system == "zero-shot" else "trained"

    def queries(self, eval_set: str, metric: str, stage: str | None = None, scoring: str = "") -> dict[str, float]:
        """Per-query values of one metric, ``{qid: value}`` (empty when the set was not evaluated)."""
        key = f"{eval_set}-{self.lang}-en{scoring}/{stage or self.stage}"
        return {q: v[metric] for q, v in self.per_query.get(key, {}).items()}


def load_part(root: Path, part: str) -> tuple[list[Job], list[str]]:
    """Complete jobs of one part, and the names of incomplete ones (never silently dropped)."""
    folder = root / part
    jobs, incomplete = [], []
    for job_dir in sorted(p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []:
        results = job_dir / "results.json"
        if not results.is_file():
            incomplete.append(job_dir.name)
            continue
        per_query = job_dir / "per_query.json"
        jobs.append(Job(part, job_dir.name, json.loads(results.read_text()),
                        json.loads(per_query.read_text()) if per_query.is_file() else {}))
    return jobs, incomplete


def seed_mean(jobs: Iterable[Job], eval_set: str, metric: str, stage: str | None = None,
              scoring: str = "") -> dict[str, float]:
    """Per-query values averaged over the seeds (jobs), on the queries every seed has."""
    tables = [j.queries(eval_set, metric, stage, scoring) for j in jobs]
    tables = [t for t in tables if t]
    if not tables:
        return {}
    common = set.intersection(*(set(t) for t in tables))
    return {q: float(np.mean([t[q] for t in tables])) for q in sorted(common)}


def cell(values: dict[str, float]) -> str:
    if not values:
        return "–"
    mean, low, high = mean_ci(list(values.values()))
    return f"{mean:.3f} [{low:.3f}, {high:.3f}]"


def _table(header: list[str], rows: list[list[str]]) -> str:
    return "\n".join(["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
                      *("| " + " | ".join(r) + " |" for r in rows)])


def _p(p: float) -> str:
    return "<0.001" if p < 0.001 else f"{p:.3f}"


# ---------------------------------------------------------------------------------------------- parts
def by_system(jobs: Iterable[Job]) -> dict[tuple[str, str, str], list[Job]]:
    """``(lang, teacher, system) -> jobs``: the seeds of one configuration together."""
    groups: dict[tuple[str, str, str], list[Job]] = defaultdict(list)
    for j in jobs:
        groups[(j.lang, j.teacher, j.system)].append(j)
    return groups


def main_table(zero: list[Job], main: list[Job]) -> str:
    groups = by_system(zero + main)
    header = ["lang", "teacher", "system", "seeds"] + [f"{s} {m}" for s, m in MAIN_COLUMNS]
    rows = []
    for lang in ("sw", "so"):
        for teacher in sorted({k[1] for k in groups}):
            for system in SYSTEMS:
                jobs = groups.get((lang, teacher, system))
                if jobs:
                    rows.append([lang, teacher, system, str(len(jobs))] +
                                [cell(seed_mean(jobs, s, m)) for s, m in MAIN_COLUMNS])
            upper = groups.get((lang, teacher, "zero-shot"), [])
            if upper and any(j.queries("afriqa", "nDCG@10", "teacher_en") for j in upper):
                rows.append([lang, teacher, "teacher, English queries", str(len(upper))] +
                            [cell(seed_mean(upper, s, m, "teacher_en")) if s == "afriqa" else "–" for s, m in MAIN_COLUMNS])
    return _table(header, rows)


def paired_table(zero: list[Job], main: list[Job]) -> tuple[str, list[dict]]:
    """OPTICAL (both losses) against MSE, and each trained system against zero-shot, per query."""
    groups = by_system(zero + main)
    comparisons = [("optical (transport)", "mse"), ("optical (divergence)", "mse"),
                   ("optical (transport)", "optical (divergence)"), ("optical (transport)", "zero-shot"),
                   ("mse", "zero-shot")]
    rows, records = [], []
    for lang, teacher in sorted({(k[0], k[1]) for k in groups}, key=lambda k: (k[0] != "sw", k[1])):
        for a, b in comparisons:
            ja, jb = groups.get((lang, teacher, a)), groups.get((lang, teacher, b))
            if not ja or not jb:
                continue
            for s, m in SHORT_COLUMNS:
                va, vb = seed_mean(ja, s, m), seed_mean(jb, s, m)
                common = sorted(set(va) & set(vb))
                if not common:
                    continue
                t = paired_test([va[q] for q in common], [vb[q] for q in common])
                records.append({"lang": lang, "teacher": teacher, "a": a, "b": b, "set": s, "metric": m, **t})
                rows.append([lang, teacher, f"{a} − {b}", f"{s} {m}", f"{t['diff']:+.3f} [{t['low']:+.3f}, {t['high']:+.3f}]",
                             _p(t["p"]), str(t["n"])])
    return _table(["lang", "teacher", "comparison", "metric", "difference [95% CI]", "p (paired)", "queries"], rows), records


def data_table(jobs: list[Job], out: Path) -> tuple[str, Path | None]:
    def size(j: Job) -> int:
        return j.cfg("data.max_pairs") or j.results.get("data", {}).get("train_pairs") or 0

    jobs = sorted(jobs, key=size)
    rows = [[str(size(j)) + ("" if j.cfg("data.max_pairs") else " (all)"), j.lang] +
            [cell(j.queries(s, m)) for s, m in SHORT_COLUMNS] for j in jobs]
    series = {(f"{s} {m}", ""): [(size(j), float(np.mean(list(j.queries(s, m).values())))) for j in jobs if j.queries(s, m)]
              for s, m in SHORT_COLUMNS}
    plot = _line_plot(out / "data_efficiency.png", "training pairs (log scale)", {"": series}, log_x=True)
    return _table(["pairs", "lang"] + [f"{s} {m}" for s, m in SHORT_COLUMNS], rows), plot


def domain_table(jobs: list[Job], out: Path) -> tuple[str, Path | None]:
    cols = (("tico19-test", "P@1", "in-domain"), ("afriqa", "nDCG@10", "general"), ("flores200-devtest", "P@1", "general"),
            ("udhr", "P@1", "general"))
    jobs = sorted(jobs, key=lambda j: (j.lang != "sw", j.cfg("domain.schedule"), j.cfg("domain.ratio")))
    rows = [[j.lang, j.cfg("domain.schedule"), f"{j.cfg('domain.ratio'):g}"] + [cell(j.queries(s, m)) for s, m, _ in cols]
            for j in jobs]
    # one panel per language; colour = evaluation set, line style = schedule
    panels: dict[str, dict[tuple[str, str], list[tuple[float, float]]]] = defaultdict(lambda: defaultdict(list))
    for j in jobs:
        for s, m, kind in cols:
            if j.queries(s, m):
                panels[j.lang][(f"{s} {m} ({kind})", j.cfg("domain.schedule"))].append(
                    (j.cfg("domain.ratio"), float(np.mean(list(j.queries(s, m).values())))))
    plot = _line_plot(out / "domain_ratio.png", "medical share of the training pairs", panels)
    return _table(["lang", "schedule", "medical ratio"] + [f"{s} {m} ({k})" for s, m, k in cols], rows), plot


def ablation_label(job: Job, jobs: list[Job]) -> str:
    """The overrides that set this job apart from the part's other jobs (``ot.blur=0.05``)."""
    def own(j: Job) -> list[str]:
        return [o for o in (j.results.get("run") or {}).get("overrides") or [j.name]
                if not o.startswith(("experiment=", "paths.", "report.part=", "hydra."))]
    shared = set.intersection(*(set(own(j)) for j in jobs)) if len(jobs) > 1 else set()
    return ", ".join(o for o in own(job) if o not in shared) or job.name


def ablation_table(jobs: list[Job]) -> str:
    base = next((j for j in jobs if "maxsim" in j.name), None)
    rows = []
    variants = ([("baseline (blur 0.1, balanced, uniform, no specials; pooled)", base, "")] if base else []) + \
               [(ablation_label(j, jobs), j, "") for j in jobs if j is not base] + \
               ([("scoring: max-sim (baseline model)", base, "/maxsim")] if base else [])
    for label, j, scoring in variants:
        row = [label]
        for s, m in SHORT_COLUMNS:
            values = j.queries(s, m, scoring=scoring)
            ref = base.queries(s, m) if base else {}
            common = sorted(set(values) & set(ref))
            if values and common and (j is not base or scoring):
                t = paired_test([values[q] for q in common], [ref[q] for q in common])
                row.append(f"{np.mean(list(values.values())):.3f} ({t['diff']:+.3f}, p {_p(t['p'])})")
            else:
                row.append(f"{np.mean(list(values.values())):.3f}" if values else "–")
        rows.append(row)
    return _table(["variant (change from the baseline)"] + [f"{s} {m} (Δ, p)" for s, m in SHORT_COLUMNS], rows)


def mmlu_table(jobs: list[Job]) -> str:
    from scipy.stats import binomtest

    rows = []
    for j in jobs:
        for name, stages in j.results.get("metrics", {}).items():
            for stage, label in (("teacher_en", "teacher (English mE5)"), ("zero_shot", "student, zero-shot"),
                                 ("trained", f"student, trained ({j.lang}, {j.system})")):
                if stage in stages:
                    r = stages[stage]
                    ci = binomtest(round(r["accuracy"] * r["n"]), int(r["n"])).proportion_ci()
                    rows.append([name, label, f"{r['accuracy']:.3f} [{ci.low:.3f}, {ci.high:.3f}]", f"{r['chance']:.3f}",
                                 str(int(r["n"]))])
    return _table(["set", "encoder (question side)", "accuracy [95% CI]", "chance", "questions"], rows)


def _line_plot(path: Path, xlabel: str, panels: dict[str, dict[tuple[str, str], list[tuple[float, float]]]],
               log_x: bool = False) -> Path | None:
    """One panel per key of ``panels`` (its title); a series is keyed ``(metric, variant)``: colour = metric,
    line style = variant (solid for the first or only one)."""
    panels = {title: {k: sorted(v) for k, v in series.items() if len(v) >= 2} for title, series in panels.items()}
    panels = {title: series for title, series in panels.items() if series}
    if not panels:
        return None
    import matplotlib.pyplot as plt  # headless backend set by optical_lightning.reporting.plots

    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels) + 2 * (len(panels) == 1), 4.2), sharey=True,
                             squeeze=False)
    colours: dict[str, str] = {}
    styles: dict[str, str] = {}
    for ax, (title, series) in zip(axes[0], panels.items()):
        for (metric, variant), points in series.items():
            colour = colours.setdefault(metric, f"C{len(colours)}")
            style = styles.setdefault(variant, ("-", "--", ":", "-.")[len(styles) % 4])
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", color=colour, linestyle=style,
                    label=f"{metric}, {variant}" if variant else metric)
        if title:
            ax.set_title(title)
        if log_x:
            ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    axes[0][0].set_ylabel("metric (mean over queries)")
    fig.tight_layout()
    return save_png(fig, path)


# ---------------------------------------------------------------------------------------------- render
def alignment_table(data_dir: Path) -> str:
    """Number agreement (:mod:`optical_lightning.data.alignment_check`) of the bitext and translation sets."""
    files = sorted(data_dir.glob("bitext/*/*.tsv")) + [
        data_dir / "eval" / "translation" / lang / f"{s}.tsv" for lang in ("sw", "so") for s in TRANSLATION_SETS]
    rows = []
    for path in files:
        if path.is_file():
            a = number_agreement(read_bitext(path, path.parent.name))
            share = (lambda x: f"{x:.2f}") if a.with_numbers else (lambda x: "–")
            rows.append([f"`{path.relative_to(data_dir)}`", f"{a.pairs:,}", f"{a.with_numbers:,}", share(a.own),
                         share(a.next), share(a.previous)])
    if not rows:
        return f"_Not available: no bitext under `{data_dir}` (run `make data`)._"
    return _table(["file", "pairs", "with a number", "target shares its own line's number",
                   "only the next line's", "only the previous line's"], rows)


def targets(zero: list[Job], main: list[Job], paired: list[dict]) -> str:
    """The issue's targets, checked on the measured tables and the paired tests (``paired_table``'s records)."""
    def best(lang: str, s: str, m: str, stage_filter: Callable[[Job], bool]) -> tuple[str, float] | None:
        groups: dict[tuple, list[Job]] = defaultdict(list)
        for j in main:
            if j.lang == lang and stage_filter(j):
                groups[(j.teacher, j.system)].append(j)
        scored = [(f"{sys} / {t}", float(np.mean(list(seed_mean(js, s, m).values()))))
                  for (t, sys), js in groups.items() if seed_mean(js, s, m)]
        return max(scored, key=lambda x: x[1]) if scored else None

    lines = []
    sw = best("sw", "afriqa", "nDCG@10", lambda j: j.system.startswith("optical"))
    if sw:
        lines.append(f"- AfriQA sw→en nDCG@10 ≥ 0.75 with OPTICAL: best OPTICAL cell {sw[1]:.3f} ({sw[0]}): "
                     f"**{'reached' if sw[1] >= 0.75 else 'not reached'}**.")
        system, teacher = sw[0].split(" / ")
        test = next((t for t in paired if (t["lang"], t["teacher"], t["a"], t["b"], t["set"], t["metric"])
                     == ("sw", teacher, system, "mse", "afriqa", "nDCG@10")), None)
        if test:
            ahead = test["diff"] > 0 and test["p"] < 0.05
            lines.append(f"- That OPTICAL system significantly ahead of MSE on AfriQA nDCG@10 (p < 0.05): "
                         f"{test['diff']:+.3f} [{test['low']:+.3f}, {test['high']:+.3f}], p {_p(test['p'])}: "
                         f"**{'yes' if ahead else 'no'}**.")
    else:
        lines.append("- AfriQA sw→en nDCG@10 ≥ 0.75: not measured (no Swahili OPTICAL job evaluated AfriQA).")
    zero_so = [j for j in zero if j.lang == "so" and "mE5" in j.teacher]
    so = best("so", "tico19-test", "P@1", lambda j: j.system.startswith("optical"))
    if so and zero_so:
        z = float(np.mean(list(seed_mean(zero_so, "tico19-test", "P@1").values())))
        lines.append(f"- Somali TICO-19 test P@1 ≥ zero-shot + 0.10: zero-shot {z:.3f}, best OPTICAL {so[1]:.3f} ({so[0]}), "
                     f"{so[1] - z:+.3f}: **{'reached' if so[1] - z >= 0.10 else 'not reached'}**.")
    else:
        lines.append("- Somali TICO-19 test P@1 ≥ zero-shot + 0.10: not measured (no Somali OPTICAL and zero-shot jobs).")
    return "\n".join(lines)


def render(root: Path, out: Path, template: Path, data_dir: Path = Path("data")) -> tuple[Path, list[str]]:
    """Fill the template from the parts under ``root``; returns REPORT.md's path and the missing parts."""
    parts = {p: load_part(root, p) for p in PARTS}
    missing = [p for p, (jobs, _) in parts.items() if not jobs]
    out.mkdir(parents=True, exist_ok=True)

    def absent(part: str) -> str:
        return f"_Not available: no complete job under `{root / part}` (run `make report`)._"

    zero, main = parts["zero_shot"][0], parts["main"][0]
    fills: dict[str, str] = {}
    fills["main_table"] = main_table(zero, main) if zero or main else absent("main")
    paired, records = paired_table(zero, main) if main else (absent("main"), [])
    fills["paired_table"] = paired
    fills["targets"] = targets(zero, main, records) if main else absent("main")
    for name, fn in (("data", data_table), ("domain", domain_table)):
        if parts[name][0]:
            table, plot = fn(parts[name][0], out)
            fills[f"{name}_table"] = table + (f"\n\n![{name}]({plot.name})" if plot else "")
        else:
            fills[f"{name}_table"] = absent(name)
    fills["ablation_table"] = ablation_table(parts["ablation"][0]) if parts["ablation"][0] else absent("ablation")
    fills["alignment_table"] = alignment_table(data_dir)
    fills["mmlu_table"] = mmlu_table(parts["mmlu"][0]) if parts["mmlu"][0] else absent("mmlu")
    fills["runs"] = _table(["part", "complete jobs", "incomplete", "compute (min)"],
                           [[p, str(len(j)), ", ".join(inc) or "–",
                             f"{sum(x.results.get('timing', {}).get('total_s', 0) for x in j) / 60:.1f}"]
                            for p, (j, inc) in parts.items()])
    text = template.read_text()
    for key, value in fills.items():
        text = text.replace("{{" + key + "}}", value)
    left = re.findall(r"\{\{(\w+)\}\}", text)
    if left:
        raise ValueError(f"{template}: unknown placeholders {left}")
    atomic_write_text(out / "paired_tests.json", json.dumps(records, indent=1))
    return atomic_write_text(out / "REPORT.md", text), missing
