"""Ceilings and role pairings of every evaluation set (experiments/DIAGNOSIS.md).

    python experiments/ceilings.py                                  # sw, the zero-shot student
    python experiments/ceilings.py lang=so
    python experiments/ceilings.py student.model_name_or_path=outputs/latest/student   # a trained student

Hydra overrides of the run's own config choose the language, teacher, student and sets. Writes
``outputs/diagnosis/ceilings-<lang>.{json,md}`` and prints the table (see
:mod:`optical_lightning_study.ceilings` for what each row means).
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from optical_lightning.evaluation.retrieval_sets import RETRIEVAL_DIRS
from optical_lightning.utils.atomic import atomic_write_json, atomic_write_text
from optical_lightning.utils.config import build, register_resolvers
from optical_lightning.utils.errors import user_error
from optical_lightning_study.ceilings import role_pairings

register_resolvers()


def table(results: dict[str, dict[str, dict[str, float]]], metrics: list[str]) -> str:
    lines = ["| set | row | " + " | ".join(metrics) + " |", "|---|---|" + "---|" * len(metrics)]
    for name, rows in results.items():
        for row, values in rows.items():
            lines.append(f"| {name} | {row} | " + " | ".join(f"{values.get(m, float('nan')):.3f}" for m in metrics) + " |")
    return "\n".join(lines) + "\n"


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    retrieval = build(cfg.retrieval, "retrieval")
    retrieval.load()
    sets, metrics, batch_size = retrieval.sets.sets, retrieval.metrics, retrieval.encoding.batch_size
    teacher = build(cfg.teacher, "teacher", frozen=True)
    student = build(cfg.student, "student", target_dim=teacher.dim)
    translation = {rs.name: not any(rs.name.startswith(f"{d}-") for d in RETRIEVAL_DIRS) for rs in sets.values()}
    results = {}
    for rs in sets.values():
        results[rs.name] = role_pairings(student, teacher, rs, metrics, translation[rs.name],
                                         batch_size=batch_size, top_k=retrieval.top_k, cache=retrieval.cache)
        print(table({rs.name: results[rs.name]}, metrics), flush=True)
    out = Path(cfg.paths.log_dir) / "diagnosis"
    lang = cfg.lang.code
    atomic_write_json(out / f"ceilings-{lang}.json", {"student": cfg.student.model_name_or_path,
                                                       "teacher": cfg.teacher.model_name_or_path, "sets": results})
    atomic_write_text(out / f"ceilings-{lang}.md", table(results, metrics))
    print(table(results, metrics))
    print(f"wrote {out / f'ceilings-{lang}.json'}")


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # one line for a user error, as run.py does
        if (cause := user_error(e)) is None:
            raise
        print(f"error: {cause}", file=sys.stderr)
        sys.exit(2)
