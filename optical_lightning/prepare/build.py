"""The pipeline: load every source, keep evaluation text out of training data, write the files,
write ``manifest.json`` last.

What a build guarantees about ``<out>``:

* nothing is touched before the settings are checked (:func:`~.guard.check_config`: a mistyped
  ``--mirror`` is an error, not a build without the mirror);
* no set an earlier build made is removed unless ``--replace`` is given (:mod:`.guard`): a build
  that would remove one is refused, naming them, first from the earlier manifest before any
  source is loaded, then exactly on the finished tree;
* the whole of ``<out>`` is built in a temporary sibling folder and swapped in only when complete,
  ``manifest.json`` included (:mod:`.swap`): a failure or Ctrl-C mid-build leaves the earlier
  ``<out>`` exactly as it was, and a process killed mid-swap is put right by the next build;
* the download cache (``<out>/.cache`` by default) is used where it is and carried into the new
  tree by rename, as is anything else in ``<out>`` that a build does not write.

Because the new tree holds only what this build made, every evaluation file in ``<out>`` is one the
training files were checked against.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

from optical_lightning.data.alignment_check import file_report
from optical_lightning.prepare.build_records import BuildConfig, LanguageOutput
from optical_lightning.prepare.dedup import union
from optical_lightning.prepare.guard import (
    check_config,
    existing_sets,
    predicted_removals,
    read_manifest,
    refusal,
)
from optical_lightning.prepare.manifest import make_manifest, write_manifest
from optical_lightning.prepare.overlap import eval_texts, remove_overlap
from optical_lightning.prepare.records import (
    TRAINING_ROLES,
    RetrievalFolder,
    SourceContext,
    SourceResult,
    SourceSkipped,
)
from optical_lightning.prepare.sources import SOURCES
from optical_lightning.prepare.swap import new_tree, recover, swap_in
from optical_lightning.prepare.tsv import write_pairs, write_tsv
from optical_lightning.utils.atomic import atomic_dir

#: the union files of ``bitext/<lang>/`` and the role each one collects
UNION_FILES = {"train.tsv": "train", "medical.tsv": "medical", "medical_terms.tsv": "medical_terms",
               "questions.tsv": "questions"}

Log = Callable[[str], None]
Step = Callable[[str], AbstractContextManager[object]]


def readable(path: Path) -> None:
    """Give ``path`` (and everything under it) the usual umask permissions: the atomic helpers
    create 0700 folders and 0600 files (``mkdtemp``/``mkstemp``), too strict for a shared data dir."""
    umask = os.umask(0)
    os.umask(umask)
    for p in [path, *path.rglob("*")] if path.is_dir() else [path]:
        os.chmod(p, (0o777 if p.is_dir() else 0o666) & ~umask)


@contextlib.contextmanager
def _no_step(_: str) -> Iterator[None]:
    yield


def load_sources(cfg: BuildConfig, log: Log = print, step: Step = _no_step) -> list[SourceResult]:
    """Run each requested source; an unavailable one becomes a ``skipped`` result and one log line."""
    ctx = SourceContext(cfg.cache, cfg.langs, cfg.offline, cfg.mirror)
    results = []
    for name in cfg.sources:
        module = SOURCES[name]
        with step(name):
            try:
                result = module.load(ctx)
            except SourceSkipped as e:
                result = SourceResult(name, module.LICENCE, module.ORIGIN, "skipped", str(e))
            except Exception as e:  # a broken upstream file must not sink the other sources
                result = SourceResult(name, module.LICENCE, module.ORIGIN, "skipped",
                                      f"error: {type(e).__name__}: {e}")
        log(describe(result))
        results.append(result)
    return results


def describe(result: SourceResult) -> str:
    """One log line per source: its status and pair counts per language and set."""
    if result.status == "skipped":
        return f"{result.name}: skipped: {result.reason}"
    parts = [f"{b.name}[{b.lang}] {b.raw:,} -> {len(b.pairs):,}" for b in result.bitexts]
    parts += [f"{r.name} {len(r.queries):,} queries / {len(r.docs):,} docs" for r in result.retrieval]
    parts += [f"{m.name}-{m.lang} {len(m.rows):,} questions" for m in result.mcqa]
    parts += [f"{d.name} dictionary {len(d.entries):,} headwords" for d in result.dictionaries]
    note = f" (problems: {result.reason})" if result.reason else ""
    return f"{result.name}: ok ({result.origin}): {', '.join(parts)}{note}"


def write_language(out: Path, lang: str, results: list[SourceResult]) -> LanguageOutput:
    """Filter, merge and write everything of one language; return what was written."""
    bitexts = [b for r in results for b in r.bitexts if b.lang == lang]
    evals = [b for b in bitexts if b.role == "eval"]
    retrieval = [s for r in results for s in r.retrieval if s.lang == lang]
    training = [b for b in bitexts if b.role in TRAINING_ROLES]
    # multiple-choice sets count for every language: their English side could sit in any file's English column
    texts = eval_texts(evals, retrieval, [m for r in results for m in r.mcqa if m.keep_out_of_training])
    output = LanguageOutput(lang, eval_texts=len(texts))
    for b in training:
        b.pairs, b.overlap_removed = remove_overlap(b.pairs, texts)
        output.overlap_removed[b.name] = b.overlap_removed

    bitext_dir = out / "bitext" / lang
    if training:
        with atomic_dir(bitext_dir) as tmp:
            for b in training:
                if b.role == "train":
                    write_pairs(tmp / f"{b.name}.tsv", lang, b.pairs)
            for filename, role in UNION_FILES.items():
                members = [b for b in training if b.role == role]
                if not members:
                    continue
                pairs, per_source, duplicates = union(members)
                write_pairs(tmp / filename, lang, pairs, with_source=True)
                output.unions[filename] = {"pairs": len(pairs), "per_source": dict(per_source),
                                           "duplicates_removed": duplicates}
                output.alignment[f"bitext/{lang}/{filename}"] = file_report(pairs)
            readable(tmp)

    eval_dir = out / "eval" / "translation" / lang
    if evals:
        with atomic_dir(eval_dir) as tmp:
            for b in evals:
                write_pairs(tmp / f"{b.name}.tsv", lang, b.pairs)
                output.eval_sets[b.name] = b
                output.alignment[f"eval/translation/{lang}/{b.name}.tsv"] = file_report(b.pairs)
            readable(tmp)
    for s in retrieval:
        write_retrieval(out / "eval" / "retrieval" / s.name, s)
        output.retrieval[s.name] = s
    return output


def write_retrieval(folder: Path, s: RetrievalFolder) -> None:
    """``queries.tsv``, ``queries.en.tsv`` (if known), ``docs.tsv`` and ``qrels.tsv`` in one folder."""
    with atomic_dir(folder) as tmp:
        write_tsv(tmp / "queries.tsv", ("qid", "text"), s.queries)
        if s.queries_en:
            write_tsv(tmp / "queries.en.tsv", ("qid", "text"), s.queries_en)
        write_tsv(tmp / "docs.tsv", ("docid", "text"), s.docs)
        write_tsv(tmp / "qrels.tsv", ("qid", "docid", "relevance"), s.qrels)
        readable(tmp)


def _replace_folder(folder: Path, items: list, write: Callable[[Path, object], tuple[str, dict[str, object]]]
                    ) -> dict[str, dict[str, object]]:
    """Write every item into ``folder`` through ``write(tmp, item) -> (name, manifest entry)``, replacing the
    folder whole (atomically); with no items no folder is made."""
    if not items:
        return {}
    written = {}
    with atomic_dir(folder) as tmp:
        for item in items:
            name, entry = write(tmp, item)
            written[name] = entry
        readable(tmp)
    return written


def write_mcqa(out: Path, results: list[SourceResult]) -> dict[str, dict[str, object]]:
    """Each multiple-choice set as ``eval/mcqa/<name>-<lang>.jsonl`` (the folder is replaced whole)."""
    def write(tmp: Path, m) -> tuple[str, dict[str, object]]:
        (tmp / m.file).parent.mkdir(parents=True, exist_ok=True)
        (tmp / m.file).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in m.rows), encoding="utf-8")
        return m.file.removesuffix(".jsonl"), {
            "questions": len(m.rows), "subjects": len({r["subject"] for r in m.rows}), "skipped_rows": m.skipped,
            "licence": m.licence, "origin": m.origin, "file": f"eval/mcqa/{m.file}"}

    return _replace_folder(out / "eval" / "mcqa", [m for r in results for m in r.mcqa], write)


def write_dictionaries(out: Path, results: list[SourceResult]) -> dict[str, dict[str, object]]:
    """Each word list as ``eval/dictionaries/<lang>-en.tsv`` (``sw, en``; the folder is replaced whole)."""
    def write(tmp: Path, d) -> tuple[str, dict[str, object]]:
        rows = write_tsv(tmp / d.file, (d.lang, "en"), d.rows())
        return d.name, {"headwords": rows, "senses": sum(len(s) for s in d.entries.values()), "licence": d.licence,
                        "origin": d.origin, "file": f"eval/dictionaries/{d.file}"}

    return _replace_folder(out / "eval" / "dictionaries", [d for r in results for d in r.dictionaries], write)


def build(cfg: BuildConfig, log: Log = print, step: Step = _no_step) -> dict[str, object]:
    """Build everything ``cfg`` asks for and return the manifest (also written to ``<out>``); see the module
    docstring for what happens to an earlier ``<out>``. Raises :class:`ConfigError` for bad settings and for
    a build that would remove earlier sets without ``cfg.replace``, with ``<out>`` untouched."""
    started = time.monotonic()
    check_config(cfg)
    out = cfg.out.resolve()  # a symlinked data folder is rebuilt where it lives
    recover(out, log)
    old_sets, earlier = existing_sets(out), read_manifest(out)
    if not cfg.replace and (gone := predicted_removals(cfg, old_sets, earlier)):
        raise refusal(cfg, gone, earlier)
    tree = new_tree(out)
    try:
        results = load_sources(cfg, log, step)
        outputs = {lang: write_language(tree, lang, results) for lang in cfg.langs}
        mcqa = write_mcqa(tree, results)
        dictionaries = write_dictionaries(tree, results)
        if not cfg.replace and (gone := old_sets - existing_sets(tree)):
            raise refusal(cfg, gone, earlier)
        manifest = make_manifest(cfg, results, outputs, time.monotonic() - started)
        manifest["eval"]["mcqa"] = mcqa
        manifest["eval"]["dictionaries"] = dictionaries
        readable(write_manifest(tree / "manifest.json", manifest))
    except BaseException:
        shutil.rmtree(tree, ignore_errors=True)
        raise
    swap_in(tree, out, log)
    return manifest
