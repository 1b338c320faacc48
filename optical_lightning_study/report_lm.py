"""The language-model parts of the study (third edition): AfriMMLU answered by letter likelihood.

The jobs are ``experiment=report_lm`` multiruns (``make report``), written to ``experiments/report/<part>/``:

* ``lm_zero_shot``: the base model (``distill=none``) on the English questions (the teacher row and agreement's
  reference), on the Swahili ones (zero-shot) and on their word-by-word translation (translate-test);
* ``lm_main``: OPTICAL, pooled MSE, the contrastive term alone and OPTICAL + MSE, seeds 1-3;
* ``lm_domain``: OPTICAL with medical, question or software bitext mixed in (and sequential for the best mix);
* ``lm_where``: the aligned layer and the LoRA rank;
* ``lm_somali``: OPTICAL for Somali, which has no MMLU-style set offline: hidden-state retrieval only.

Each job scores AfriMMLU test (``mcqa.json``: the student in Swahili and in English) and AfriMMLU val
(``mcqa-val.json``: dev, what the domain part chooses by). A cell is the mean over questions of seeds averaged per
question, with a 95% bootstrap interval; comparisons are paired sign-flip tests on the same questions
(:mod:`optical_lightning_study.significance`).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from optical_lightning_study.report import (
    Job,
    Row,
    _absent,
    _p,
    _table,
    ablation_label,
    cell,
    compare,
    diff_cell,
    load_part,
)

LM_PARTS = ("lm_zero_shot", "lm_main", "lm_domain", "lm_where", "lm_somali")
#: column label -> (side, metric): ``sw`` the questions in Swahili, ``en`` in English, ``bitext`` the held-out pairs
COLUMNS = (("Swahili accuracy", "sw", "accuracy"), ("agreement with English answers", "sw", "agreement"),
           ("right letter's probability", "sw", "gold_prob"), ("English accuracy", "en", "accuracy"),
           ("bitext-val P@1", "bitext", "P@1"))
PAIRED = COLUMNS[:4]
#: the domain's own set beside its held-out pairs
IN_DOMAIN = {"medical": "tico19-test", "questions": "afriqa-questions-dev"}
#: what the domain part chooses the sequential setting and the extra seeds by: dev, never test
DEV_METRIC = ("afrimmlu-val", "gold_prob")


@dataclass
class LMRow:
    """One system (its seeds) in a table: each side maps to the jobs' stage and the evaluation set read."""

    label: str
    jobs: list[Job]
    sides: dict[str, tuple[str, str]]  # side -> (stage, eval set)

    def values(self, side: str, metric: str, subject: str | None = None) -> dict[str, float]:
        if side not in self.sides:
            return {}
        stage, eval_set = self.sides[side]
        return Row(self.label, self.jobs, stage).values(eval_set, metric, subject)

    @property
    def seeds(self) -> str:
        return str(len(self.jobs)) if self.sides.get("sw", ("trained",))[0] == "trained" else "–"


def trained_row(label: str, jobs: list[Job], test: str = "afrimmlu") -> LMRow:
    return LMRow(label, jobs, {"sw": ("trained", test), "en": ("trained", f"{test}-en"), "bitext": ("trained", "bitext-val")})


def base_rows(zero: list[Job], test: str = "afrimmlu") -> list[LMRow]:
    """The base model: zero-shot in Swahili beside its English answers (the teacher), and translate-test."""
    rows = []
    for j in (j for j in zero if j.lang == "sw"):
        rows.append(LMRow("base model (zero-shot; English: the teacher)", [j],
                          {"sw": ("zero_shot", test), "en": ("teacher_en", test), "bitext": ("zero_shot", "bitext-val")}))
        if j.values(test, "accuracy", "translate_dense"):
            rows.append(LMRow("translate-test (FreeDict word by word) → base model", [j], {"sw": ("translate_dense", test)}))
    return rows


def system_rows(zero: list[Job], main: list[Job], test: str = "afrimmlu") -> list[LMRow]:
    groups: dict[str, list[Job]] = defaultdict(list)
    for j in main:
        if j.lang == "sw":
            groups[j.system].append(j)
    order = ("OPTICAL", "MSE", "contrastive alone", "OPTICAL + MSE")
    return base_rows(zero, test) + [trained_row(s, groups[s], test)
                                    for s in sorted(groups, key=lambda s: (order.index(s) if s in order else 9, s))]


def _cells(row: LMRow, columns: tuple[tuple[str, str, str], ...] = COLUMNS) -> list[str]:
    return [cell(row.values(side, metric)) for _, side, metric in columns]


def main_table(zero: list[Job], main: list[Job]) -> str:
    rows = [r for r in system_rows(zero, main) if r.values("sw", "accuracy")]
    if not rows:
        return _absent(Path("report"), "lm_main")
    n = len(rows[0].values("sw", "accuracy"))
    return (f"AfriMMLU test, {n} questions (mean [95% CI] over questions; seeds averaged per question; bitext-val, "
            f"whose held-out pairs each seed draws anew, over every seed's pairs):\n\n" +
            _table(["system", "seeds"] + [c[0] for c in COLUMNS], [[r.label, r.seeds] + _cells(r) for r in rows]))


def paired_table(zero: list[Job], main: list[Job]) -> tuple[str, list[dict]]:
    """OPTICAL against the base model, MSE and the contrastive term alone; the others against the base model."""
    by_label = {r.label: r for r in system_rows(zero, main)}
    base = next((label for label in by_label if label.startswith("base model")), None)
    pairs = [("OPTICAL", base), ("OPTICAL", "MSE"), ("OPTICAL", "contrastive alone"), ("OPTICAL + MSE", "OPTICAL"),
             ("MSE", base), ("contrastive alone", base), ("OPTICAL + MSE", base)]
    rows, records = [], []
    for a, b in pairs:
        if a not in by_label or b not in by_label:
            continue
        tests = {label: compare(by_label[a].values(s, m), by_label[b].values(s, m)) for label, s, m in PAIRED}
        rows.append([f"{a} − {b.split(' (')[0]}"] + [diff_cell(t) for t in tests.values()])
        records += [{"part": "lm_main", "a": a, "b": b, "metric": label, **t} for label, t in tests.items() if t]
    if not rows:
        return "_Not available yet: OPTICAL and a system to compare it with are not both complete._", records
    return _table(["comparison"] + [c[0] for c in PAIRED], rows), records


def subject_table(rows: list[LMRow]) -> str:
    """Swahili accuracy / agreement per subject."""
    rows = [r for r in rows if r.values("sw", "accuracy")]
    mcqa = next((j.mcqa for r in rows for j in r.jobs if j.mcqa), None)
    if not rows or not mcqa:
        return ""
    subjects = sorted(set(mcqa["subjects"]))

    def both(r: LMRow, subject: str) -> str:
        acc, agr = r.values("sw", "accuracy", subject), r.values("sw", "agreement", subject)
        return f"{np.mean(list(acc.values())):.2f} / {np.mean(list(agr.values())):.2f}" if acc and agr else "–"

    return _table(["system"] + [f"{s.replace('_', ' ')} (n={mcqa['subjects'].count(s)})" for s in subjects],
                  [[r.label] + [both(r, s) for s in subjects] for r in rows])


# ------------------------------------------------------------------------------------------- the seed's question
def domain_key(j: Job) -> tuple[str, str, float]:
    return (j.cfg("domain.name") or "general", j.cfg("domain.schedule") or "mixed", float(j.cfg("domain.ratio") or 0))


def _general(main: list[Job]) -> list[Job]:
    """The ratio-0 point of every domain: the main table's OPTICAL, seed 1."""
    return [j for j in main if j.lang == "sw" and j.system == "OPTICAL" and j.cfg("seed") == 1]


def domain_groups(jobs: list[Job]) -> dict[tuple[str, str, float], list[Job]]:
    """Jobs of one (domain, schedule, ratio), its seeds together."""
    groups: dict[tuple[str, str, float], list[Job]] = defaultdict(list)
    for j in jobs:
        groups[domain_key(j)].append(j)
    return dict(sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1] != "mixed", kv[0][2])))


def domain_table(jobs: list[Job], main: list[Job], out: Path) -> str:
    """Each (domain, ratio): the reasoning columns and the domain's own sets; the paired change against general."""
    general = _general(main)
    columns = COLUMNS[:4] + (("in-domain held-out pairs P@1", "domain", "P@1"), ("in-domain set P@1", "in_domain", "P@1"))

    def row(label: str, group: list[Job], domain: str) -> LMRow:
        r = trained_row(label, group)
        r.sides["domain"] = ("trained", "domain-val")
        if domain in IN_DOMAIN:
            r.sides["in_domain"] = ("trained", IN_DOMAIN[domain])
        return r

    rows, deltas = [], []
    base = row("general (main OPTICAL, seed 1), ratio 0", general, "general") if general else None
    # the general job scores every domain's own set too, so the in-domain change pairs up as well
    general_in_domain = {d: Row("", general, "trained").values(s, "P@1") for d, s in IN_DOMAIN.items()}
    if base is not None:
        rows.append(["general", "–", "0", "1"] + _cells(base, columns))
    for (domain, schedule, ratio), group in domain_groups(jobs).items():
        r = row(domain, group, domain)
        rows.append([domain, schedule, f"{ratio:g}", str(len(group))] + _cells(r, columns))
        if base is not None:
            deltas.append([domain, schedule, f"{ratio:g}"] + [diff_cell(compare(r.values(s, m), base.values(s, m)))
                                                              for _, s, m in PAIRED]
                          + [diff_cell(compare(r.values("in_domain", "P@1"), general_in_domain.get(domain, {})))])
    text = _table(["domain", "schedule", "ratio", "seeds"] + [c[0] for c in columns], rows)
    if deltas:
        text += ("\n\nChange against general bitext alone (the main table's OPTICAL, seed 1), paired over the same "
                 "questions (and, for the in-domain set, the same queries):\n\n"
                 + _table(["domain", "schedule", "ratio"] + [c[0] for c in PAIRED] + ["in-domain set P@1"], deltas))
    plot = _ratio_plot(jobs, base, out / "lm_domain_ratio.png")
    subjects = subject_table([row(f"{d}, {s}, {r:g}", g, d) for (d, s, r), g in domain_groups(jobs).items()])
    return text + (f"\n\n![AfriMMLU against the share of domain bitext]({plot.name})" if plot else "") + (
        f"\n\nSwahili accuracy / agreement per subject:\n\n{subjects}" if subjects else "")


def _ratio_plot(jobs: list[Job], base: LMRow | None, path: Path) -> Path | None:
    """Each metric against the share of domain pairs (mixed), one line per domain, with 95% intervals."""
    from optical_lightning_study.significance import mean_ci

    series: dict[str, dict[str, list[tuple[float, float, float, float]]]] = defaultdict(lambda: defaultdict(list))
    for label, side, metric in PAIRED:
        for (domain, schedule, ratio), group in domain_groups(jobs).items():
            if schedule != "mixed":
                continue
            v = trained_row(domain, group).values(side, metric)
            if v:
                series[label][domain].append((ratio, *mean_ci(list(v.values()))))
        if base is not None and (v := base.values(side, metric)):
            for domain in series[label]:
                series[label][domain].append((0.0, *mean_ci(list(v.values()))))
    panels = {label: {d: sorted(p) for d, p in s.items() if len(p) >= 2} for label, s in series.items()}
    panels = {label: s for label, s in panels.items() if s}
    if not panels:
        return None
    import matplotlib.pyplot as plt  # headless backend set by optical_lightning.reporting.plots

    from optical_lightning.reporting.plots import save_png

    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels) + 1, 4.0), squeeze=False)
    for ax, (label, lines) in zip(axes[0], panels.items()):
        for k, (domain, points) in enumerate(sorted(lines.items())):
            x = np.array([p[0] for p in points]) + (k - 1) * 0.012  # dodge so that the intervals stay readable
            y, low, high = (np.array([p[i] for p in points]) for i in (1, 2, 3))
            ax.errorbar(x, y, yerr=[y - low, high - y], marker="o", capsize=3, label=domain, color=f"C{k}")
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("share of domain pairs (mixed)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    axes[0][0].set_ylabel("mean over the 500 questions [95% CI]")
    fig.tight_layout()
    return save_png(fig, path)


def dev_extremes(root: Path) -> tuple[str, str]:
    """The overrides of the mixed (domain, ratio > 0) with the highest and the lowest Swahili right-letter
    probability on AfriMMLU val (dev): the sequential run's setting and the settings that get 3 seeds."""
    jobs, _ = load_part(root, "lm_domain")
    scored = []
    for (domain, schedule, ratio), group in domain_groups(jobs).items():
        v = trained_row(domain, group, "afrimmlu-val").values("sw", DEV_METRIC[1])
        if schedule == "mixed" and ratio > 0 and v:
            scored.append((float(np.mean(list(v.values()))), domain, ratio))
    if not scored:
        raise ValueError(f"{root / 'lm_domain'}: no complete mixed job with ratio > 0 scored AfriMMLU val")
    best, worst = max(scored), min(scored)
    return tuple(f"domain={d} domain.ratio={r:g}" for _, d, r in (best, worst))  # type: ignore[return-value]


# --------------------------------------------------------------------------------------------- where to align
def where_table(jobs: list[Job], main: list[Job], zero: list[Job]) -> str:
    """The aligned layer and the LoRA rank against the default (the main table's), and token OT against pooled
    alignment at the same layer (the main table's OPTICAL and contrastive-alone jobs, seed 1); with compute."""
    general = _general(main)
    pooled = [j for j in main if j.lang == "sw" and j.system == "contrastive alone" and j.cfg("seed") == 1]
    if not general:
        return "_Not available yet: the baseline, the main table's OPTICAL seed 1, is not complete._"
    base = trained_row("default", general)

    def key(j: Job) -> tuple[int, int]:
        return int(j.cfg("teacher.align_layer") or 0), int(j.cfg("student.lora.r") or 0)

    layer, rank = general[0].cfg("teacher.align_layer"), general[0].cfg("student.lora.r")
    dev = trained_row("default", general, "afrimmlu-val")
    rows = [[f"default: layer {layer}, LoRA r {rank}, token OT + contrastive", f"{general[0].minutes:.1f}"] +
            _cells(base, PAIRED) + ["–", "–"]]
    candidates = [(f"pooled alignment at layer {layer} (contrastive alone)", pooled)] if pooled else []
    candidates += [(ablation_label(j), [j]) for j in sorted(jobs, key=key)]
    for label, group in candidates:
        r, r_dev = trained_row(label, group), trained_row(label, group, "afrimmlu-val")
        rows.append([label, f"{group[0].minutes:.1f}"] + _cells(r, PAIRED) +
                    [diff_cell(compare(r_dev.values("sw", "gold_prob"), dev.values("sw", "gold_prob"))),
                     diff_cell(compare(r.values("sw", "gold_prob"), base.values("sw", "gold_prob")))])
    return _table(["setting", "job (min)"] + [c[0] for c in PAIRED] +
                  ["Δ right letter's probability against default, dev (val)",
                   "Δ right letter's probability against default, test"], rows)


# -------------------------------------------------------------------------------------------------- Somali
#: what a Somali job measures: hidden-state "find the translation" on its held-out pairs and on TICO-19
SOMALI_SETS = (("bitext-val P@1", "bitext-val"), ("TICO-19 P@1", "tico19-test"))


def somali_table(jobs: list[Job]) -> str:
    """The base model against the OPTICAL student on the Somali sets, paired over the same queries."""
    rows = []
    for j in sorted((j for j in jobs if j.lang == "so"), key=lambda j: j.cfg("seed") or 0):
        base = [j.values(s, "P@1", "zero_shot") for _, s in SOMALI_SETS]
        trained = [j.values(s, "P@1", "trained") for _, s in SOMALI_SETS]
        rows += [[f"base model (zero-shot), seed {j.cfg('seed')}", f"{j.minutes:.1f}"] + [cell(v) for v in base],
                 [f"{j.system}, seed {j.cfg('seed')}", "–"] + [cell(v) for v in trained],
                 [f"{j.system} − base model", "–"] + [diff_cell(compare(t, b)) for t, b in zip(trained, base)]]
    if not rows:
        return "_Not available yet: no Somali job is complete._"
    return _table(["system", "job (min)"] + [label for label, _ in SOMALI_SETS], rows)


# ------------------------------------------------------------------------------------------------- summary
def answer_facts(zero: list[Job], main: list[Job], domain: list[Job]) -> str:
    """The numbers the answer paragraph rests on, generated: the largest paired changes of the domain part."""
    general = _general(main)
    if not general or not domain:
        return "_Not available yet: the domain part or its baseline (main OPTICAL, seed 1) is not complete._"
    base = trained_row("general", general)
    lines = []
    for label, side, metric in PAIRED:
        tests = [(t["diff"], t, k) for k, g in domain_groups(domain).items()
                 if (t := compare(trained_row("", g).values(side, metric), base.values(side, metric)))]
        if tests:
            _, t, (d, s, r) = max(tests, key=lambda x: abs(x[0]))
            significant = sum(x[1]["p"] < 0.05 for x in tests)
            lines.append(f"- {label}: the largest change is {d} ({s}, {r:g}), {t['diff']:+.3f} [{t['low']:+.3f}, "
                         f"{t['high']:+.3f}], p {_p(t['p'])}; {significant} of {len(tests)} settings at p < 0.05 "
                         f"(uncorrected).")
    lines += subject_facts(base, domain)
    return "\n".join(lines)


def subject_facts(base: LMRow, domain: list[Job]) -> list[str]:
    """Which subjects move: every (setting, subject) whose Swahili accuracy or agreement changes against general at
    p < 0.05, beside how many such tests were run, so that the count expected by chance is in plain sight."""
    mcqa = next((j.mcqa for j in base.jobs if j.mcqa), None)
    if not mcqa:
        return []
    subjects = sorted(set(mcqa["subjects"]))
    moved, n_tests = [], 0
    for (d, s, r), group in domain_groups(domain).items():
        row = trained_row("", group)
        for label, side, metric in PAIRED[:2]:
            for subject in subjects:
                t = compare(row.values(side, metric, subject), base.values(side, metric, subject))
                if not t:
                    continue
                n_tests += 1
                if t["p"] < 0.05:
                    moved.append(f"{d} ({s}, {r:g}) {subject.replace('_', ' ')} {label.split(' with')[0]} "
                                 f"{t['diff']:+.3f} [{t['low']:+.3f}, {t['high']:+.3f}], p {_p(t['p'])}")
    if not n_tests:
        return []
    return [f"- per subject (Swahili accuracy and agreement, {n_tests} paired tests of {len(subjects)} subjects, "
            f"{mcqa['subjects'].count(subjects[0])} questions each; about {0.05 * n_tests:.1f} at p < 0.05 expected by "
            f"chance): {len(moved)} at p < 0.05" + (": " + "; ".join(moved) + "." if moved else ".")]


def lm_tables(root: Path, out: Path, jobs: dict[str, list[Job]], fills: dict[str, str]) -> list[dict]:
    """The language model's tables (parts 1-3 of the third edition) into ``fills``; returns their paired tests'
    records (a :data:`~optical_lightning_study.report.Filler` of :func:`~optical_lightning_study.report.render`)."""
    zero, main = jobs["lm_zero_shot"], jobs["lm_main"]
    fills["lm_main_table"] = main_table(zero, main) if zero or main else _absent(root, "lm_main")
    fills["lm_paired_table"], records = paired_table(zero, main) if main else (_absent(root, "lm_main"), [])
    fills["lm_subject_table"] = subject_table(system_rows(zero, main)) or _absent(root, "lm_main")
    fills["lm_domain_table"] = domain_table(jobs["lm_domain"], main, out) if jobs["lm_domain"] else _absent(root, "lm_domain")
    fills["lm_domain_facts"] = answer_facts(zero, main, jobs["lm_domain"])
    fills["lm_where_table"] = where_table(jobs["lm_where"], main, zero) if jobs["lm_where"] else _absent(root, "lm_where")
    fills["lm_somali_table"] = somali_table(jobs["lm_somali"]) if jobs["lm_somali"] else _absent(root, "lm_somali")
    return records
