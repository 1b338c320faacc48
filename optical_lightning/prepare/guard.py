"""What a build may not do to ``<out>``: checks that run before it touches anything.

A build replaces ``<out>`` whole (:mod:`.swap`), so a set that an earlier build made and this one
does not make again - a language or source left out, a mirror path mistyped, a source skipped
today - would silently disappear, and with it the evaluation sets a study's numbers rest on.
A *set* is a file under ``bitext/``, ``eval/translation/``, ``eval/mcqa/`` or ``eval/dictionaries/``,
or a folder in ``eval/retrieval/``. A build that would remove one is refused (:class:`ConfigError`,
nothing changed) unless ``--replace`` is given; adding sets or rebuilding the same ones is fine.

The refusal is checked twice: :func:`predicted_removals` before any source is loaded (from the
earlier ``manifest.json``: sets of a language or source this build leaves out, or of the mirror
when no ``--mirror`` is given), so the common mistakes cost no download; and, exactly, on the
finished temporary tree before it is swapped in (a source that is skipped today).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from optical_lightning.prepare.build_records import BuildConfig
from optical_lightning.utils.errors import ConfigError

#: every file under these folders of ``<out>`` is one set
SET_FOLDERS = ("bitext", "eval/translation", "eval/mcqa", "eval/dictionaries")
#: every folder in this one is one set
RETRIEVAL = "eval/retrieval"
#: what a build writes; anything else in ``<out>`` (the download cache, a user's notes) is carried over
MANAGED_TOP = ("bitext", "eval", "manifest.json")
MANAGED_EVAL = ("translation", "retrieval", "mcqa", "dictionaries")


def _visible(rel: Path) -> bool:
    return not any(part.startswith(".") for part in rel.parts)  # skips leftovers such as ``.sw.tmp-x``


def existing_sets(root: Path) -> set[str]:
    """The sets under ``root`` as ``/``-separated paths relative to it (empty if ``root`` is absent)."""
    sets = set()
    for folder in SET_FOLDERS:
        for p in (root / folder).rglob("*") if (root / folder).is_dir() else ():
            rel = p.relative_to(root)
            if p.is_file() and _visible(rel):
                sets.add(rel.as_posix())
    retrieval = root / RETRIEVAL
    if retrieval.is_dir():
        sets |= {f"{RETRIEVAL}/{p.name}" for p in retrieval.iterdir() if not p.name.startswith(".")}
    return sets


def read_manifest(root: Path) -> dict[str, Any] | None:
    """The earlier build's ``manifest.json``, or None if it is missing or unreadable."""
    try:
        manifest = json.loads((root / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None


def set_language(rel: str) -> str | None:
    """The language a set belongs to, from its path (``en`` for the English side of MCQA sets)."""
    parts = rel.split("/")
    if parts[0] == "bitext" or parts[:2] == ["eval", "translation"]:
        return parts[-2] if len(parts) >= 3 else None
    stem = parts[-1].split(".")[0]  # afrimmlu/sw.test.jsonl -> sw, mmlu-en.jsonl -> mmlu-en, sw-en.tsv -> sw-en
    if parts[:2] == ["eval", "retrieval"] or parts[:2] == ["eval", "dictionaries"]:
        words = stem.split("-")  # afriqa-sw-en, sw-en
        return words[-2] if len(words) >= 2 and words[-1] == "en" else None
    if parts[:2] == ["eval", "mcqa"]:
        return stem.split("-")[-1] if len(parts) == 3 else stem
    return None


def source_sets(name: str, earlier: dict[str, Any]) -> set[str]:
    """The sets the earlier manifest says source ``name`` made (its own files and folders, not unions)."""
    src = earlier["sources"][name]
    sets = set()
    for set_name, per_lang in (src.get("sets") or {}).items():
        for lang, counts in per_lang.items():
            folder = {"train": "bitext", "eval": "eval/translation"}.get(counts.get("role"))
            if folder:
                sets.add(f"{folder}/{lang}/{set_name}.tsv")
    sets |= {f"{RETRIEVAL}/{r}" for r in src.get("retrieval") or []}
    sets |= {f"eval/mcqa/{f}" for f in src.get("mcqa") or []}
    dictionaries = (earlier.get("eval") or {}).get("dictionaries") or {}
    sets |= {dictionaries[d]["file"] for d in src.get("dictionaries") or [] if d in dictionaries}
    return sets


def predicted_removals(cfg: BuildConfig, old_sets: set[str], earlier: dict[str, Any] | None) -> set[str]:
    """The sets of ``old_sets`` this build certainly will not make again, known before any source runs:
    those of a language it does not build, of a source it does not run, and of the mirror when it is
    given no ``--mirror``. An unreadable manifest predicts nothing (the exact check still runs)."""
    if not earlier:
        return set()
    try:
        dropped = set(earlier["config"]["langs"]) - set(cfg.langs)
        gone = {s for s in old_sets if set_language(s) in dropped}
        for name, src in earlier["sources"].items():
            if src.get("status") == "ok" and (name not in cfg.sources or (name == "mirror" and cfg.mirror is None)):
                gone |= source_sets(name, earlier) & old_sets
    except (KeyError, TypeError, AttributeError):
        return set()
    return gone


def earlier_flags(cfg: BuildConfig, earlier: dict[str, Any] | None) -> list[str]:
    """The options of the earlier build (from its manifest) that this build dropped or changed."""
    config = (earlier or {}).get("config")
    if not isinstance(config, dict):
        return []
    flags = []
    langs, sources, mirror = config.get("langs") or [], config.get("sources") or [], config.get("mirror")
    if set(langs) - set(cfg.langs):
        flags.append("--langs " + " ".join(langs))
    if set(sources) - set(cfg.sources):
        flags.append("--sources " + " ".join(sources))
    if mirror and (cfg.mirror is None or Path(mirror).resolve() != cfg.mirror.resolve()):
        flags.append(f"--mirror {mirror}")
    return flags


def refusal(cfg: BuildConfig, removed: Iterable[str], earlier: dict[str, Any] | None) -> ConfigError:
    """The one-line error of a build that would remove sets: a few names (one of each kind in turn,
    evaluation sets first), the count, and the two ways out."""
    kinds = ("eval/translation", "eval/retrieval", "eval/mcqa", "eval/dictionaries", "bitext")
    groups = [sorted(s for s in removed if s.startswith(f"{kind}/")) for kind in kinds]
    names = [s for row in itertools.zip_longest(*groups) for s in row if s]
    shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
    flags = earlier_flags(cfg, earlier)
    how = (f"rebuild with the earlier build's {' '.join(flags)} (see {cfg.out / 'manifest.json'})" if flags else
           "rebuild once the sources that made them build again (see the skipped lines above)")
    return ConfigError(f"--out {cfg.out}: this build would remove {len(names)} set(s) an earlier build made "
                       f"({shown}); nothing was changed: {how}, or pass --replace to remove them")


def check_config(cfg: BuildConfig) -> None:
    """Refuse paths that cannot work, before anything is touched: a missing or non-folder ``--mirror`` (a
    typo would otherwise build without it), an ``--out`` that is a file or holds the current folder, and a
    ``--cache`` inside what every build replaces."""
    if cfg.mirror is not None and not cfg.mirror.is_dir():
        what = "is not a folder" if cfg.mirror.exists() else "does not exist"
        raise ConfigError(f"--mirror {cfg.mirror}: {what}; give the local data mirror's folder "
                          "(e.g. ../shared/data) or leave --mirror out to build without it")
    if cfg.out.exists() and not cfg.out.is_dir():
        raise ConfigError(f"--out {cfg.out}: is a file, not a folder; give the data folder to build (e.g. data)")
    out, cache = cfg.out.resolve(), cfg.cache.resolve()
    if Path.cwd().resolve().is_relative_to(out):
        raise ConfigError(f"--out {cfg.out}: is the current folder or one above it, which a build replaces whole; "
                          "give a folder of its own (e.g. data)")
    if cache == out or any(cache.is_relative_to(out / f) for f in MANAGED_TOP):
        raise ConfigError(f"--cache {cfg.cache}: lies in what every build of --out {cfg.out} replaces; "
                          "leave --cache out (<out>/.cache) or give a folder outside bitext/ and eval/")
