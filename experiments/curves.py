"""Several runs' learning curves on the same panels: `python experiments/curves.py RUN_DIR... --out curves.png`.

Reads each run's ``curves.json`` (written by ``callbacks.learning_curve``) and draws one line per run in
every panel (:func:`optical_lightning.reporting.plots.learning_curves`), e.g. OPTICAL against MSE over
1,000 steps. ``--labels`` names the lines (default: each run's ``distill.name``, else its folder).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from paired import run_label  # experiments/: the script's own folder is on sys.path

from optical_lightning.reporting.plots import learning_curves


def curve(run: Path) -> list[dict[str, float]]:
    path = run / "curves.json"
    if not path.is_file():
        sys.exit(f"{path}: no learning curve; run with callbacks.learning_curve.every_n_steps=N")
    return json.loads(path.read_text())["rows"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--labels", nargs="+")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.labels and len(args.labels) != len(args.runs):
        sys.exit(f"--labels: {len(args.labels)} names for {len(args.runs)} runs")
    names = args.labels or [run_label(r) for r in args.runs]
    if len(set(names)) != len(names):
        sys.exit(f"two runs share the label {names}: name them with --labels")
    print(learning_curves({n: curve(r) for n, r in zip(names, args.runs)}, args.out))


if __name__ == "__main__":
    main()
