"""``manifest.json``: what was built, from where, under which licence, and how many rows.

It is the record a later reader checks before trusting ``data/``: per source its status (``ok`` or
``skipped`` with the reason), licence, origin (package and version, or mirror path) and counts per
language before and after cleaning; per evaluation set its size and licence; and how many training
pairs the overlap check removed. ``"complete": true`` is only ever written by the last step of a
build (:func:`write_manifest` is atomic), so its presence marks a finished run.
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import TYPE_CHECKING, Any

from optical_lightning.prepare.records import Bitext, SourceResult
from optical_lightning.utils.atomic import atomic_write_json

if TYPE_CHECKING:
    from optical_lightning.prepare.build_records import BuildConfig, LanguageOutput

FORMAT = 1


def bitext_counts(b: Bitext) -> dict[str, Any]:
    """Counts of one set: raw rows, rows after cleaning, drop reasons, overlap removals, written."""
    return {
        "role": b.role,
        "licence": b.licence,
        "origin": b.origin,
        "raw": b.raw,
        "cleaned": len(b.pairs) + b.overlap_removed,
        "dropped": dict(sorted(b.dropped.items())),
        "overlap_removed": b.overlap_removed,
        "written": len(b.pairs),
        **({"alignment": b.alignment} if b.alignment else {}),
    }


def source_entry(result: SourceResult) -> dict[str, Any]:
    """The manifest entry of one source: metadata, per-language totals and per-set details."""
    counts: dict[str, dict[str, int]] = {}
    sets: dict[str, dict[str, Any]] = {}
    for b in result.bitexts:
        c = bitext_counts(b)
        total = counts.setdefault(b.lang, {"raw": 0, "cleaned": 0, "overlap_removed": 0, "written": 0})
        for key in total:
            total[key] += c[key]
        sets.setdefault(b.name, {})[b.lang] = c
    return {
        "status": result.status,
        "reason": result.reason,
        "licence": result.licence,
        "origin": result.origin,
        "version": result.version,
        "counts": counts,
        "sets": sets,
        "retrieval": sorted(r.name for r in result.retrieval),
        "mcqa": sorted(m.file for m in result.mcqa),
        "dictionaries": [d.name for d in result.dictionaries],
    }


def make_manifest(cfg: BuildConfig, results: list[SourceResult], outputs: dict[str, LanguageOutput],
                  elapsed_s: float) -> dict[str, Any]:
    """The whole manifest (see the module docstring)."""
    translation = {
        lang: {name: {"rows": len(b.pairs), "licence": b.licence, "origin": b.origin,
                      "file": f"eval/translation/{lang}/{name}.tsv"} for name, b in out.eval_sets.items()}
        for lang, out in outputs.items()
    }
    retrieval = {
        name: {"lang": s.lang, "queries": len(s.queries), "queries_en": len(s.queries_en), "docs": len(s.docs),
               "qrels": len(s.qrels), "licence": s.licence, "origin": s.origin, "dir": f"eval/retrieval/{name}"}
        for out in outputs.values() for name, s in out.retrieval.items()
    }
    per_lang = {lang: dict(out.overlap_removed) for lang, out in outputs.items()}
    return {
        "format": FORMAT,
        "complete": True,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "elapsed_s": round(elapsed_s, 2),
        "config": {"out": str(cfg.out), "cache": str(cfg.cache), "langs": list(cfg.langs),
                   "sources": list(cfg.sources), "mirror": str(cfg.mirror) if cfg.mirror else None,
                   "offline_only": cfg.offline, "replace": cfg.replace},
        "sources": {r.name: source_entry(r) for r in results},
        "bitext": {lang: {f: {**u, "file": f"bitext/{lang}/{f}"} for f, u in out.unions.items()}
                   for lang, out in outputs.items()},
        "eval": {"translation": translation, "retrieval": retrieval},
        "overlap": {
            "removed_total": sum(sum(v.values()) for v in per_lang.values()),
            "removed": per_lang,
            "eval_texts": {lang: out.eval_texts for lang, out in outputs.items()},
            "rule": "a training pair is removed if its normalised en or target text occurs in any "
                    "evaluation set of its language",
        },
        "alignment": {
            "files": {f: r for out in outputs.values() for f, r in out.alignment.items()},
            "rule": "number and length agreement per document (TICO-19) or per 200-row window; TICO-19 documents "
                    "shifted by a constant offset that both confirm are realigned, unconfirmed ones dropped "
                    "(see sources.mirror.sets.tico19-*.alignment); other files are only reported",
        },
        "built": {lang: out.built for lang, out in outputs.items()},
    }


def write_manifest(path: Path, manifest: dict[str, Any]) -> Path:
    """Write the manifest atomically (the last file of a build)."""
    return atomic_write_json(path, manifest)
