"""Summarise a sweep: `python experiments/summarize.py MULTIRUN_DIR [--out DIR]`.

Reads every results.json under MULTIRUN_DIR and writes summary.csv, summary.md and PNG plots
(metric vs domain ratio per language; in-domain vs general) next to them.
"""

from __future__ import annotations

import argparse
import sys

from optical_lightning.utils.errors import user_error
from optical_lightning_study.sweeps import summarize


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir", help="a multirun folder, e.g. outputs/distill/multirun/<time>")
    parser.add_argument("--out", default=None, help="where to write (default: the sweep folder)")
    args = parser.parse_args(argv)
    try:
        written = summarize(args.sweep_dir, args.out)
    except Exception as e:
        if (cause := user_error(e)) is None:
            raise
        print(f"error: {cause}", file=sys.stderr)
        return 2
    print((written["md"]).read_text())
    for kind, path in written.items():
        print(f"{kind}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
