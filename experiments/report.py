"""`python experiments/report.py outputs/report --out experiments` -> experiments/REPORT.md and its plots.

Reads the parts `make report` writes (see the Makefile and conf/experiment/report.yaml) and fills
experiments/REPORT.template.md. `--require-all` fails when a part has no complete job (`make report-smoke`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from optical_lightning.reporting.report import render

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", type=Path, help="the study's output folder (make report: outputs/report)")
    parser.add_argument("--out", type=Path, default=HERE, help="where REPORT.md and the plots go")
    parser.add_argument("--template", type=Path, default=HERE / "REPORT.template.md")
    parser.add_argument("--data", type=Path, default=Path("data"), help="the data the jobs read (alignment check)")
    parser.add_argument("--require-all", action="store_true", help="exit 1 if any part has no complete job")
    args = parser.parse_args(argv)
    if not args.root.is_dir():
        print(f"error: {args.root} not found: run `make report` (or `make report-smoke`) first", file=sys.stderr)
        return 2
    path, missing = render(args.root, args.out, args.template, args.data)
    print(f"wrote {path}" + (f"; parts without results: {', '.join(missing)}" if missing else ""))
    return 1 if args.require_all and missing else 0


if __name__ == "__main__":
    sys.exit(main())
