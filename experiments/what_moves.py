"""Which blocks of the student training moves (experiments/DIAGNOSIS.md, "What moves").

    python experiments/what_moves.py +trained=outputs/latest/student          # sw default student
    python experiments/what_moves.py +trained=PATH student=me5_small +name=optical_nce

Compares a saved student with the start model that ``student=`` names; writes
``outputs/diagnosis/what-moves-<name>.{json,md}`` (see :mod:`optical_lightning_study.drift`).
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from optical_lightning.models.encoder import Encoder
from optical_lightning.utils.atomic import atomic_write_json, atomic_write_text
from optical_lightning.utils.config import build, register_resolvers
from optical_lightning.utils.errors import ConfigError, user_error
from optical_lightning_study.drift import weight_drift

register_resolvers()


def table(drift: dict[str, dict[str, float]]) -> str:
    lines = ["| block | params | relative change |", "|---|---|---|"]
    lines += [f"| {g} | {row['params']:,} | {row['drift']:.2e} |" for g, row in drift.items()]
    return "\n".join(lines) + "\n"


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    trained_dir = cfg.get("trained")
    if not trained_dir or not Path(trained_dir).is_dir():
        raise ConfigError(f"+trained={trained_dir}: give a saved student directory (a run's student/)")
    teacher = build(cfg.teacher, "teacher", frozen=True)
    start = build(cfg.student, "student", target_dim=teacher.dim)
    trained = Encoder.from_pretrained(trained_dir)
    drift = weight_drift(start, trained)
    name = cfg.get("name") or cfg.lang.code
    out = Path(cfg.paths.log_dir) / "diagnosis"
    atomic_write_json(out / f"what-moves-{name}.json", {"start": cfg.student.model_name_or_path,
                                                         "trained": str(trained_dir), "groups": drift})
    atomic_write_text(out / f"what-moves-{name}.md", table(drift))
    print(table(drift))
    print(f"wrote {out / f'what-moves-{name}.json'}")


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # one line for a user error, as run.py does
        if (cause := user_error(e)) is None:
            raise
        print(f"error: {cause}", file=sys.stderr)
        sys.exit(2)
