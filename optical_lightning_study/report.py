"""The study report, second edition: the job records of ``make report`` -> tables, plots and REPORT.md.

Every number comes from a job's ``results.json``, ``per_query.json`` and ``mcqa.json`` (kept in git
under ``experiments/report/<part>/<overrides>/``, so the report re-renders without rerunning). Seeds of
one configuration are averaged per query (per question for AfriMMLU) first; a cell is that mean with a
95% bootstrap interval over queries (:mod:`optical_lightning_study.significance`), and systems are
compared with paired randomisation tests on the same queries. ``REPORT.template.md`` holds the prose;
its ``{{placeholders}}`` are filled here.

AfriMMLU per question: ``accuracy`` is 1 when the predicted choice is the answer, ``agreement`` when it
is the teacher's answer to the English original. ``afrimmlu`` is the cross-lingual mode (student question,
teacher's English choices), ``afrimmlu-same`` the same-language mode.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from optical_lightning.reporting.plots import save_png
from optical_lightning.utils.atomic import atomic_write_text
from optical_lightning_study.significance import mean_ci, paired_test

#: the retrieval parts (second edition, re-rendered from their records), then the third edition's new ones: the
#: language model's (optical_lightning_study.report_lm) and max-sim scoring of the retrieval students
RETRIEVAL_PARTS = ("zero_shot", "main", "domain", "data", "data_epochs", "ablation")
PARTS = (*RETRIEVAL_PARTS, "lm_zero_shot", "lm_main", "lm_domain", "lm_where", "lm_somali", "maxsim")
#: distill.name -> the system's name in the tables
SYSTEMS = {"none": "zero-shot", "mse": "MSE", "optical": "OPTICAL", "optical_mse": "OPTICAL + MSE",
           "contrastive": "contrastive alone"}
#: the zero-shot job's extra stages: the English upper bound and the translate-test baselines
BASELINES = (("teacher_en", "teacher, English query (upper bound)"), ("translate_dense", "translate-test → teacher"),
             ("translate_bm25", "translate-test → BM25"))
RETRIEVAL = (("AfriQA nDCG@10", "afriqa", "nDCG@10"), ("AfriQA RR@10", "afriqa", "RR@10"),
             ("AfriQA R@100", "afriqa", "R@100"), ("UDHR nDCG@10", "udhr", "nDCG@10"),
             ("TICO-19 P@1", "tico19-test", "P@1"), ("FLORES P@1", "flores200-devtest", "P@1"),
             ("questions dev P@1", "afriqa-questions-dev", "P@1"))
MCQA = (("accuracy (cross)", "afrimmlu", "accuracy"), ("agreement (cross)", "afrimmlu", "agreement"),
        ("accuracy (same-language)", "afrimmlu-same", "accuracy"), ("agreement (same-language)", "afrimmlu-same", "agreement"))
#: the columns of the comparisons, the domain, data and ablation tables
SHORT = (("AfriQA nDCG@10", "afriqa", "nDCG@10"), ("TICO-19 P@1", "tico19-test", "P@1"),
         ("FLORES P@1", "flores200-devtest", "P@1"), ("AfriMMLU accuracy", "afrimmlu", "accuracy"),
         ("AfriMMLU agreement", "afrimmlu", "agreement"))
#: held-out slices (dev) and the test set each stands in for
DEV_VS_TEST = (("afriqa-passages-dev", "nDCG@10", "afriqa", "nDCG@10"), ("afriqa-questions-dev", "P@1", "afriqa", "nDCG@10"),
               ("bitext-val", "P@1", "flores200-devtest", "P@1"))
#: the domain's own test-like set, beside its held-out pairs (domain-val)
IN_DOMAIN = {"medical": "tico19-test", "questions": "afriqa-questions-dev"}
UNSUFFIXED = ("bitext-val", "domain-val")  # sets built from the run's own pairs carry no language in their key


@dataclass
class Job:
    part: str
    name: str  # the job folder: its command-line overrides
    results: dict[str, Any]
    per_query: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    mcqa: dict[str, Any] | None = None
    mcqa_val: dict[str, Any] | None = None  # a language-model job's AfriMMLU val (dev) answers: mcqa-val.json

    def cfg(self, dotted: str) -> Any:
        node: Any = self.results.get("config", {})
        for key in dotted.split("."):
            node = node.get(key) if isinstance(node, dict) else None
        return node

    @property
    def lang(self) -> str:
        return self.cfg("lang.code")

    @property
    def system(self) -> str:
        name = SYSTEMS.get(self.cfg("distill.name"), self.cfg("distill.name"))
        return name + (" (divergence)" if name.startswith("OPTICAL") and self.cfg("ot.loss") == "divergence" else "")

    @property
    def stage(self) -> str:
        return "zero_shot" if self.system == "zero-shot" else "trained"

    def values(self, eval_set: str, metric: str, stage: str | None = None, scoring: str = "",
               subject: str | None = None) -> dict[str, float]:
        """Per-query (per-question) values of one metric, ``{qid: value}``; empty when not evaluated."""
        stage = stage or self.stage
        if eval_set.startswith("afrimmlu"):
            return self._mcqa(eval_set, metric, stage, subject)
        key = eval_set if eval_set in UNSUFFIXED else f"{eval_set}-{self.lang}-en"
        return {q: v[metric] for q, v in self.per_query.get(f"{key}{scoring}/{stage}", {}).items() if metric in v}

    def _mcqa(self, eval_set: str, metric: str, stage: str, subject: str | None) -> dict[str, float]:
        """``afrimmlu`` (test) or ``afrimmlu-val`` (dev), ``-en`` for the student reading English, ``-same`` for the
        same-language mode; ``accuracy``, ``agreement`` (with the teacher's English answer) or, where the job kept
        log-likelihoods, ``gold_prob`` (the right letter's share of the four letters' probability)."""
        m, mode = (self.mcqa_val, eval_set[len("afrimmlu-val"):]) if eval_set.startswith("afrimmlu-val") else \
            (self.mcqa, eval_set[len("afrimmlu"):])
        if not m:
            return {}
        entry = m.get("stages", {}).get(stage, {}).get(m.get("name", "") + mode) or {}
        if metric == "gold_prob":
            if not entry.get("loglik"):
                return {}
            from optical_lightning.evaluation.loglik import gold_probabilities

            values = gold_probabilities(entry["loglik"], m["answers"]).tolist()
        else:
            predicted = entry.get("predicted")
            reference = m.get("answers") if metric == "accuracy" else m.get("teacher_en_predicted")
            if not predicted or not reference:
                return {}
            values = [float(p == r) for p, r in zip(predicted, reference)]
        return {q: float(v) for q, s, v in zip(m["ids"], m["subjects"], values) if subject is None or s == subject}

    @property
    def minutes(self) -> float:
        timing = self.results.get("timing", {})
        return float(timing.get("total_s") or 0) / 60  # not process_s: in a multirun it counts the earlier jobs too


def _read(path: Path) -> Any:
    return json.loads(path.read_text()) if path.is_file() else None


def load_part(root: Path, part: str) -> tuple[list[Job], list[str]]:
    """Complete jobs of one part, and the names of incomplete ones (listed, never silently dropped)."""
    folder = root / part
    jobs, incomplete = [], []
    for job_dir in sorted(p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []:
        if not (job_dir / "results.json").is_file():
            incomplete.append(job_dir.name)
            continue
        jobs.append(Job(part, job_dir.name, _read(job_dir / "results.json"), _read(job_dir / "per_query.json") or {},
                        _read(job_dir / "mcqa.json"), _read(job_dir / "mcqa-val.json")))
    return jobs, incomplete


# ------------------------------------------------------------------------------------------ statistics
@dataclass
class Row:
    """One line of a table: a system (its seeds) at one stage."""
    label: str
    jobs: list[Job]
    stage: str | None = None
    scoring: str = ""

    def values(self, eval_set: str, metric: str, subject: str | None = None) -> dict[str, float]:
        """Per-query values averaged over the seeds, where every seed has the same queries. Where they do not
        (a seed draws its own held-out pairs: bitext-val, domain-val), each seed's queries are kept, keyed
        ``seed/query``, so that two systems still pair up on the same seed's split: a query two seeds happen
        to share is not the same task in both, since the other held-out pairs are its candidates."""
        tables = [(j.cfg("seed"), t) for j in self.jobs
                  if (t := j.values(eval_set, metric, self.stage, self.scoring, subject))]
        if not tables:
            return {}
        if any(set(t) != set(tables[0][1]) for _, t in tables):
            return {f"{seed}/{q}": v for seed, t in tables for q, v in sorted(t.items())}
        return {q: float(np.mean([t[q] for _, t in tables])) for q in sorted(tables[0][1])}

    def mean(self, eval_set: str, metric: str) -> float | None:
        v = self.values(eval_set, metric)
        return float(np.mean(list(v.values()))) if v else None


def cell(values: dict[str, float]) -> str:
    if not values:
        return "–"
    mean, low, high = mean_ci(list(values.values()))
    return f"{mean:.3f} [{low:.3f}, {high:.3f}]"


def compare(a: dict[str, float], b: dict[str, float]) -> dict[str, float] | None:
    common = sorted(set(a) & set(b))
    return paired_test([a[q] for q in common], [b[q] for q in common]) if common else None


def diff_cell(t: dict[str, float] | None) -> str:
    return "–" if t is None else f"{t['diff']:+.3f} [{t['low']:+.3f}, {t['high']:+.3f}], p {_p(t['p'])}"


def _p(p: float) -> str:
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    return "\n".join(["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
                      *("| " + " | ".join(r) + " |" for r in rows)])


def _absent(root: Path, part: str) -> str:
    return f"_Not available yet: no complete job under `{root.name}/{part}` (run `make report`)._"


# ------------------------------------------------------------------------------------------------- 1
def system_rows(zero: list[Job], main: list[Job], lang: str) -> list[Row]:
    """zero-shot, the baselines of the zero-shot job, then each trained system (its seeds together)."""
    rows = []
    for j in (j for j in zero if j.lang == lang):
        rows.append(Row("zero-shot", [j]))
        rows += [Row(label, [j], stage) for stage, label in BASELINES if any(stage == k.split("/")[-1] for k in j.per_query)
                 or (j.mcqa and stage in j.mcqa.get("stages", {}))]
    groups: dict[str, list[Job]] = defaultdict(list)
    for j in main:
        if j.lang == lang:
            groups[j.system].append(j)
    return rows + [Row(s, groups[s]) for s in sorted(groups, key=lambda s: (len(s), s))]


def main_tables(zero: list[Job], main: list[Job]) -> str:
    out = []
    for lang in ("sw", "so"):
        rows = system_rows(zero, main, lang)
        if not rows:
            continue
        columns = [c for c in RETRIEVAL if any(r.values(c[1], c[2]) for r in rows)]
        out.append(f"**{lang}, retrieval** (mean [95% CI] over queries; seeds averaged per query)\n\n" + _table(
            ["system", "seeds"] + [c[0] for c in columns],
            [[r.label, str(len(r.jobs)) if r.stage is None else "–"] + [cell(r.values(s, m)) for _, s, m in columns]
             for r in rows]))
        if n := max((len(r.values("afrimmlu", "accuracy")) for r in rows), default=0):
            out.append(f"**{lang}, AfriMMLU test** ({n} questions; agreement: the teacher's answer to the English original)"
                       "\n\n" + _table(["system", "seeds"] + [c[0] for c in MCQA],
                                       [[r.label, str(len(r.jobs)) if r.stage is None else "–"] +
                                        [cell(r.values(s, m)) for _, s, m in MCQA] for r in rows
                                        if r.values("afrimmlu", "accuracy")]))
    return "\n\n".join(out)


def paired_tables(zero: list[Job], main: list[Job]) -> tuple[str, list[dict]]:
    """OPTICAL against MSE, zero-shot and translate-test; each trained system against zero-shot."""
    pairs = [("OPTICAL", "MSE"), ("OPTICAL", "zero-shot"), ("MSE", "zero-shot"), ("OPTICAL + MSE", "OPTICAL"),
             ("OPTICAL + MSE", "zero-shot"), ("OPTICAL", "translate-test → teacher")]
    rows, records = [], []
    for lang in ("sw", "so"):
        by_label = {r.label: r for r in system_rows(zero, main, lang)}
        for a, b in pairs:
            if a not in by_label or b not in by_label:
                continue
            tests = {label: compare(by_label[a].values(s, m), by_label[b].values(s, m)) for label, s, m in SHORT}
            if not any(tests.values()):
                continue
            rows.append([lang, f"{a} − {b}"] + [diff_cell(t) for t in tests.values()])
            records += [{"lang": lang, "a": a, "b": b, "metric": label, **t} for label, t in tests.items() if t]
    if not rows:
        return "_Not available yet: no two systems of one language are complete._", records
    return _table(["lang", "comparison"] + [c[0] for c in SHORT], rows), records


def subject_table(rows: list[Row]) -> str:
    """AfriMMLU per subject: accuracy / agreement of each system (Swahili)."""
    rows = [r for r in rows if r.values("afrimmlu", "accuracy")]
    subjects = sorted({s for r in rows for j in r.jobs if j.mcqa for s in j.mcqa["subjects"]})
    if not rows or not subjects:
        return ""

    def both(r: Row, subject: str) -> str:
        acc, agr = r.values("afrimmlu", "accuracy", subject), r.values("afrimmlu", "agreement", subject)
        return f"{np.mean(list(acc.values())):.2f} / {np.mean(list(agr.values())):.2f}" if acc and agr else "–"

    n = {s: sum(s == x for x in next(j.mcqa for r in rows for j in r.jobs if j.mcqa)["subjects"]) for s in subjects}
    return _table(["system"] + [f"{s.replace('_', ' ')} (n={n[s]})" for s in subjects],
                  [[r.label] + [both(r, s) for s in subjects] for r in rows])


# ------------------------------------------------------------------------------------------------- 2
def _domain_key(j: Job) -> tuple[str, str, float]:
    return (j.cfg("domain.name") or "general", j.cfg("domain.schedule") or "mixed", float(j.cfg("domain.ratio") or 0))


def domain_columns(domain: str) -> list[tuple[str, str, str]]:
    cols = list(SHORT) + [("in-domain: held-out pairs P@1", "domain-val", "P@1")]
    if domain in IN_DOMAIN:
        cols.append((f"in-domain: {IN_DOMAIN[domain]} P@1", IN_DOMAIN[domain], "P@1"))
    return cols


def domain_tables(jobs: list[Job], main: list[Job], out: Path) -> str:
    """Each domain at each ratio (mixed), sequential; the change against the same domain at ratio 0."""
    jobs = sorted(jobs, key=lambda j: (_domain_key(j)[0], _domain_key(j)[1] != "mixed", _domain_key(j)[2]))
    general = [j for j in main if j.lang == "sw" and j.system == "OPTICAL" and j.cfg("seed") == 1]
    header = ["domain", "schedule", "ratio"] + [c[0] for c in SHORT] + ["in-domain: held-out pairs P@1", "in-domain: test-like set P@1"]
    rows = [["general (main OPTICAL, seed 1)", "–", "0"] + [cell(Row("", general).values(s, m)) for _, s, m in SHORT] + ["–", "–"]
            ] if general else []
    deltas = []
    for j in jobs:
        name, schedule, ratio = _domain_key(j)
        cols = domain_columns(name)
        cells = [cell(j.values(s, m)) for _, s, m in cols]
        rows.append([name, schedule, f"{ratio:g}"] + cells + (["–"] if len(cols) == len(SHORT) + 1 else []))
        base = next((b for b in jobs if _domain_key(b) == (name, "mixed", 0.0)), None)
        if base is not None and base is not j:
            deltas.append([name, schedule, f"{ratio:g}"] + [diff_cell(compare(j.values(s, m), base.values(s, m)))
                                                            for _, s, m in cols[:len(SHORT) + 1]])
    text = _table(header, rows)
    if deltas:
        text += ("\n\nChange against the same domain at ratio 0 (paired over the same queries and questions):\n\n" +
                 _table(["domain", "schedule", "ratio"] + [c[0] for c in SHORT] + ["in-domain: held-out pairs P@1"], deltas))
    panels: dict[str, dict[tuple[str, str], list[tuple[float, float]]]] = {}
    for label, s, m in (*SHORT, ("in-domain held-out pairs P@1", "domain-val", "P@1")):
        series = defaultdict(list)
        for j in jobs:
            name, schedule, ratio = _domain_key(j)
            values = j.values(s, m)
            if schedule == "mixed" and values:
                series[(name, "")].append((ratio, float(np.mean(list(values.values())))))
        panels[label] = dict(series)
    plot = _line_plot(out / "domain_ratio.png", "share of domain pairs (mixed)", panels)
    subjects = _domain_subjects(jobs)
    return text + (f"\n\n![domain ratio]({plot.name})" if plot else "") + (
        f"\n\nAfriMMLU per subject, accuracy / agreement:\n\n{subjects}" if subjects else "")


def _domain_subjects(jobs: list[Job]) -> str:
    rows = [Row(f"{d}, {s}, {r:g}", [j]) for j in jobs for d, s, r in [_domain_key(j)]]
    return subject_table(rows)


def best_domain(root: Path) -> str:
    """The mixed (domain, ratio > 0) with the best dev score, afriqa-passages-dev nDCG@10 (the held-out
    AfriQA questions against the passages, graded by the teacher): the sequential run's setting."""
    jobs, _ = load_part(root, "domain")
    scored = [(float(np.mean(list(v.values()))), _domain_key(j)) for j in jobs
              if _domain_key(j)[1] == "mixed" and _domain_key(j)[2] > 0 and (v := j.values("afriqa-passages-dev", "nDCG@10"))]
    if not scored:
        raise ValueError(f"{root / 'domain'}: no complete mixed job with ratio > 0 evaluated afriqa-passages-dev")
    _, (name, _, ratio) = max(scored)
    return f"domain={name} domain.ratio={ratio:g}"


# ------------------------------------------------------------------------------------------------- 3
def data_table(fixed_steps: list[Job], fixed_epochs: list[Job], main: list[Job], out: Path) -> str:
    def size(j: Job) -> int:
        return j.cfg("data.max_pairs") or j.results.get("data", {}).get("train_pairs") or 0

    everything = [j for j in main if j.lang == "sw" and j.system == "OPTICAL" and j.cfg("seed") == 1]
    rows, panels = [], {}
    for regime, jobs in (("fixed steps (100 × 32 pairs)", fixed_steps + everything), ("fixed epochs (3)", fixed_epochs)):
        jobs = sorted(jobs, key=size)
        rows += [[regime, f"{size(j):,}" + (" (all)" if not j.cfg("data.max_pairs") else ""),
                  str(j.cfg("trainer.max_steps"))] + [cell(j.values(s, m)) for _, s, m in SHORT] for j in jobs]
        panels[regime] = {(label, ""): [(size(j), float(np.mean(list(j.values(s, m).values())))) for j in jobs if j.values(s, m)]
                          for label, s, m in SHORT[:3]}
    plot = _line_plot(out / "data_efficiency.png", "training pairs (log scale)", panels, log_x=True)
    return _table(["budget", "training pairs", "steps"] + [c[0] for c in SHORT], rows) + (
        f"\n\n![data efficiency]({plot.name})" if plot else "")


# ------------------------------------------------------------------------------------------------- 4
def ablation_label(job: Job) -> str:
    """The job's own overrides, settings that moved since under their current names (``eval.scoring``)."""
    from optical_lightning.training.rundir import MOVED

    own = [o for o in (job.results.get("run") or {}).get("overrides") or [job.name]
           if not o.startswith(("experiment=", "paths.", "report.", "hydra.", "trainer.enable_progress_bar"))]
    renamed = [f"{MOVED.get(key, key)}={value}" for key, _, value in (o.partition("=") for o in own)]
    return ", ".join(renamed) or job.name


def ablation_table(jobs: list[Job], main: list[Job]) -> str:
    base = next((j for j in main if j.lang == "sw" and j.system == "OPTICAL" and j.cfg("seed") == 1), None)
    if base is None:
        return "_Not available yet: the baseline, main OPTICAL sw seed 1, is not complete._"
    cols = SHORT[:3]
    rows = [["baseline: the default recipe (main OPTICAL, sw, seed 1)"] + [cell(base.values(s, m)) for _, s, m in cols]]
    for j in jobs:
        rows.append([ablation_label(j)] + [diff_cell(compare(j.values(s, m), base.values(s, m))) for _, s, m in cols])
        if any("/maxsim/" in k for k in j.per_query):
            rows.append([f"{ablation_label(j)}: max-sim against pooled scoring, same model"] +
                        [diff_cell(compare(j.values(s, m, scoring="/maxsim"), j.values(s, m))) for _, s, m in cols])
    return _table(["variant", *(f"{c[0]}: Δ against the baseline [95% CI], p" for c in cols)], rows)


# ------------------------------------------------------------------------------------------------- 5
def dev_test_table(jobs: list[Job]) -> str:
    """Do the held-out slices rank the trained Swahili jobs as the test sets do? (Spearman over jobs)."""
    from scipy.stats import spearmanr

    rows = []
    trained = [j for j in jobs if j.lang == "sw" and j.stage == "trained"]
    for dev, dev_metric, test, test_metric in DEV_VS_TEST:
        pairs = [(np.mean(list(d.values())), np.mean(list(t.values()))) for j in trained
                 if (d := j.values(dev, dev_metric)) and (t := j.values(test, test_metric))]
        if len(pairs) >= 3:
            rho, p = spearmanr([a for a, _ in pairs], [b for _, b in pairs])
            rows.append([f"{dev} {dev_metric}", f"{test} {test_metric}", str(len(pairs)), f"{rho:+.2f}", _p(float(p))])
    return _table(["held-out slice (dev)", "test set", "trained sw jobs", "Spearman ρ", "p"], rows) if rows else \
        "_Not available yet: fewer than 3 complete Swahili jobs with both a dev slice and its test set._"


# ------------------------------------------------------------------------------------- max-sim against pooled
MAXSIM_DEV = (("passages dev nDCG@10", "afriqa-passages-dev", "nDCG@10"), ("questions dev nDCG@10", "afriqa-questions-dev", "nDCG@10"))
MAXSIM_TEST = (("AfriQA nDCG@10", "afriqa", "nDCG@10"), ("TICO-19 P@1", "tico19-test", "P@1"), ("FLORES P@1", "flores200-devtest", "P@1"))


def maxsim_tables(jobs: list[Job], main: list[Job]) -> str:
    """OPTICAL and MSE (their seeds), each scored pooled and max-sim by the same model: the four cells on dev, then
    on test, the paired tests between them, and what max-sim costs at search time."""
    groups: dict[str, list[Job]] = defaultdict(list)
    for j in jobs:
        if j.lang == "sw" and any("/maxsim/" in k for k in j.per_query):
            groups[j.system].append(j)
    if not groups:
        return "_Not available yet: no complete max-sim job._"
    cells = {(system, scoring): Row(f"{system}, {scoring or 'pooled'}", group, scoring="/maxsim" if scoring else "")
             for system, group in sorted(groups.items()) for scoring in ("", "maxsim")}
    out = []
    for title, columns in (("Dev (held-out AfriQA training questions)", MAXSIM_DEV), ("Test", MAXSIM_TEST)):
        out.append(f"**{title}** (mean [95% CI] over queries; seeds averaged per query):\n\n" + _table(
            ["system, scoring", "seeds"] + [c[0] for c in columns],
            [[r.label, str(len(r.jobs))] + [cell(r.values(s, m)) for _, s, m in columns] for r in cells.values()]))
    pairs = [(("OPTICAL", "maxsim"), ("OPTICAL", "")), (("MSE", "maxsim"), ("MSE", "")),
             (("OPTICAL", "maxsim"), ("MSE", "maxsim")), (("OPTICAL", ""), ("MSE", ""))]
    rows = [[f"{cells[a].label} − {cells[b].label}"] + [diff_cell(compare(cells[a].values(s, m), cells[b].values(s, m)))
                                                       for _, s, m in MAXSIM_DEV + MAXSIM_TEST]
            for a, b in pairs if a in cells and b in cells]
    if all((system, scoring) in cells for system in ("OPTICAL", "MSE") for scoring in ("", "maxsim")):
        # the hypothesis itself: does max-sim gain more for OPTICAL's students than for MSE's, query by query?
        def gain(system: str, s: str, m: str) -> dict[str, float]:
            tokens, pooled = cells[(system, "maxsim")].values(s, m), cells[(system, "")].values(s, m)
            return {q: tokens[q] - pooled[q] for q in tokens.keys() & pooled.keys()}
        rows.append(["max-sim's gain: OPTICAL − MSE"] + [diff_cell(compare(gain("OPTICAL", s, m), gain("MSE", s, m)))
                                                         for _, s, m in MAXSIM_DEV + MAXSIM_TEST])
    if rows:
        out.append("Paired differences on the same queries ([95% CI], p):\n\n" +
                   _table(["comparison"] + [c[0] for c in MAXSIM_DEV + MAXSIM_TEST], rows))

    def machine(j: Job) -> tuple[str, str]:
        run = j.results.get("run", {})
        return run.get("machine", {}).get("cpu") or "?", run.get("cache", "?")

    def eval_minutes(group: list[Job]) -> float:
        return float(np.mean([j.results.get("timing", {}).get("eval_trained_s") or 0 for j in group])) / 60

    # job times compare only on one CPU with warm embedding caches (a cold job also encodes the collections)
    pooled = [j for j in main if j.lang == "sw" and j.system in groups]
    both = [j for g in groups.values() for j in g]
    setups = {machine(j) for j in pooled} & {machine(j) for j in both} - {("?", "?")}
    if setups:
        cpu, cache = min(setups, key=lambda m: (m[1] != "warm", m))  # warm caches where both have them
        a, b = ([j for j in g if machine(j) == (cpu, cache)] for g in (pooled, both))
        out.append(f"Search-time cost ({cpu}, {cache} caches; each job's own timing, mean over jobs): evaluating every "
                   f"set of a trained job took {eval_minutes(a):.1f} min with pooled scoring alone ({len(a)} jobs of "
                   f"the main table, the same systems) and {eval_minutes(b):.1f} min with pooled and max-sim "
                   f"({len(b)} jobs).")
    return "\n\n".join(out)


# ---------------------------------------------------------------------------------------------- render
def _line_plot(path: Path, xlabel: str, panels: dict[str, dict[tuple[str, str], list[tuple[float, float]]]],
               log_x: bool = False) -> Path | None:
    """One panel per key of ``panels`` (its title); a series is keyed ``(name, variant)``: colour = name,
    line style = variant (solid for the first or only one)."""
    panels = {title: {k: sorted(v) for k, v in series.items() if len(v) >= 2} for title, series in panels.items()}
    panels = {title: series for title, series in panels.items() if series}
    if not panels:
        return None
    import matplotlib.pyplot as plt  # headless backend set by optical_lightning.reporting.plots

    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels) + 1, 4.0), squeeze=False)
    colours: dict[str, str] = {}
    styles: dict[str, str] = {}
    for ax, (title, series) in zip(axes[0], panels.items()):
        for (name, variant), points in series.items():
            colour = colours.setdefault(name, f"C{len(colours)}")
            style = styles.setdefault(variant, ("-", "--", ":", "-.")[len(styles) % 4])
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", color=colour, linestyle=style,
                    label=f"{name}, {variant}" if variant else name)
        ax.set_title(title, fontsize=9)
        if log_x:
            ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    axes[0][0].set_ylabel("mean over queries")
    fig.tight_layout()
    return save_png(fig, path)


#: fills more placeholders from the parts' jobs (``report_lm.lm_tables``): (root, out, jobs by part, fills) -> paired records
Filler = Callable[[Path, Path, dict[str, list[Job]], dict[str, str]], list[dict]]


def render(root: Path, out: Path, template: Path, fillers: Sequence[Filler] = ()) -> tuple[Path, list[str]]:
    """Fill the template from the parts under ``root`` (and ``fillers``, e.g. the language model's tables); returns
    REPORT.md's path and the missing parts."""
    parts = {p: load_part(root, p) for p in PARTS}
    missing = [p for p, (jobs, _) in parts.items() if not jobs]
    out.mkdir(parents=True, exist_ok=True)
    jobs = {p: j for p, (j, _) in parts.items()}
    zero, main = jobs["zero_shot"], jobs["main"]
    fills: dict[str, str] = {}
    fills["main_table"] = main_tables(zero, main) if zero or main else _absent(root, "main")
    fills["paired_table"], records = paired_tables(zero, main) if main else (_absent(root, "main"), [])
    fills["subject_table"] = subject_table(system_rows(zero, main, "sw")) or _absent(root, "main")
    fills["domain_table"] = domain_tables(jobs["domain"], main, out) if jobs["domain"] else _absent(root, "domain")
    fills["data_table"] = (data_table(jobs["data"], jobs["data_epochs"], main, out)
                           if jobs["data"] or jobs["data_epochs"] else _absent(root, "data"))
    fills["ablation_table"] = ablation_table(jobs["ablation"], main) if jobs["ablation"] else _absent(root, "ablation")
    fills["dev_test_table"] = dev_test_table([j for p in RETRIEVAL_PARTS for j in jobs[p]])
    fills["maxsim_table"] = maxsim_tables(jobs["maxsim"], main) if jobs["maxsim"] else _absent(root, "maxsim")
    for filler in fillers:
        records += filler(root, out, jobs, fills)
    fills["runs"] = _table(["part", "complete jobs", "incomplete", "compute (min)"],
                           [[p, str(len(j)), ", ".join(inc) or "–", f"{sum(x.minutes for x in j):.1f}"]
                            for p, (j, inc) in parts.items()])
    fills["total_minutes"] = f"{sum(x.minutes for p in PARTS for x in jobs[p]):.0f}"
    text = template.read_text()
    for key, value in fills.items():
        text = text.replace("{{" + key + "}}", value)
    left = re.findall(r"\{\{(\w+)\}\}", text)
    if left:
        raise ValueError(f"{template}: unknown placeholders {left}")
    atomic_write_text(out / "paired_tests.json", json.dumps(records, indent=1))
    return atomic_write_text(out / "REPORT.md", text), missing


