"""`python experiments/report.py experiments/report --out experiments` -> experiments/REPORT.md and its plots.

Reads the job records of `make report` (see the Makefile and conf/experiment/report.yaml) and fills
experiments/REPORT.template.md. `--require-all` fails when a part has no complete job (`make report-smoke`);
`--best-domain` prints the overrides of the best mixed domain job on dev (the sequential run's setting);
`--lm-dev-extremes` the same for the language model's domain part, best and worst on AfriMMLU val, as `BEST;WORST`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from optical_lightning_study.report import best_domain, render
from optical_lightning_study.report_lm import dev_extremes, lm_tables

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", type=Path, help="the study's job records (make report: experiments/report)")
    parser.add_argument("--out", type=Path, default=HERE, help="where REPORT.md and the plots go")
    parser.add_argument("--template", type=Path, default=HERE / "REPORT.template.md")
    parser.add_argument("--require-all", action="store_true", help="exit 1 if any part has no complete job")
    parser.add_argument("--best-domain", action="store_true",
                        help="print `domain=NAME domain.ratio=R`, the best mixed domain job on afriqa-passages-dev")
    parser.add_argument("--lm-dev-extremes", action="store_true",
                        help="print `BEST;WORST`: the language model's mixed domain jobs with the highest and lowest "
                             "Swahili right-letter probability on AfriMMLU val")
    args = parser.parse_args(argv)
    if not args.root.is_dir():
        print(f"error: {args.root} not found: run `make report` (or `make report-smoke`) first", file=sys.stderr)
        return 2
    if args.best_domain:
        try:
            print(best_domain(args.root))
        except ValueError as e:
            print(f"error: {e}; run the domain part first", file=sys.stderr)
            return 2
        return 0
    if args.lm_dev_extremes:
        try:
            print(";".join(dev_extremes(args.root)))
        except ValueError as e:
            print(f"error: {e}; run the lm_domain part first", file=sys.stderr)
            return 2
        return 0
    path, missing = render(args.root, args.out, args.template, fillers=[lm_tables])
    print(f"wrote {path}" + (f"; parts without results: {', '.join(missing)}" if missing else ""))
    return 1 if args.require_all and missing else 0


if __name__ == "__main__":
    sys.exit(main())
