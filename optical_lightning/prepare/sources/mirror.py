"""A local data mirror (``--mirror DIR``, e.g. ``../shared/data``): TICO-19, FLORES-200, NTREX-128,
Tatoeba, MAFAND-MT and AfriQA, in the mirror's TSV layout (see its README).

The mirror is optional: without it the registry sources still build. Each file has a role:

* training: MAFAND-MT train (Global Voices, sw) and NTREX-128 (sw, so - the only general en-so
  sentence bitext, so it trains rather than evaluates);
* medical training (kept out of ``train.tsv``): TICO-19 dev and the TICO-19 terminology lists;
* evaluation: TICO-19 test, FLORES-200 devtest, Tatoeba, MAFAND-MT dev/test (CC BY-NC), and the
  AfriQA sw->en retrieval folder, copied as is.

Evaluation rows are kept verbatim (whitespace collapsed); training rows get source-prefixed ids and
lose empty, untranslated and duplicate pairs. A missing file is noted, not fatal.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from optical_lightning.errors import DataError
from optical_lightning.prepare.clean import filter_pairs
from optical_lightning.prepare.records import (
    Bitext,
    Pair,
    RetrievalSet,
    Role,
    SourceContext,
    SourceResult,
    SourceSkipped,
)
from optical_lightning.prepare.text import collapse
from optical_lightning.prepare.tsv import read_tsv

NAME = "mirror"
LICENCE = "per set (see sets)"
ORIGIN = "local data mirror (--mirror)"

_TICO = "TICO-19 (tico-19.github.io @ d97615f9, Helsinki-NLP/OPUS-MT-testsets @ ac0f19c0)"
_OPUS_TESTSETS = "Helsinki-NLP/OPUS-MT-testsets @ ac0f19c0"
_LAFAND = "masakhane-io/lafand-mt @ d441f8b0"


@dataclass(frozen=True)
class MirrorFile:
    """One bitext file of the mirror; ``pattern`` holds ``{lang}`` and may hold a ``*``."""

    pattern: str
    name: str
    role: Role
    licence: str
    upstream: str


FILES: tuple[MirrorFile, ...] = (
    MirrorFile("general/mafand-mt.train.en-{lang}.tsv", "mafand-train", "train",
               "CC-BY-3.0 (Global Voices via OPUS)", _LAFAND),
    MirrorFile("general/ntrex128.en-{lang}.tsv", "ntrex128", "train", "CC-BY-SA-4.0", _OPUS_TESTSETS),
    MirrorFile("medical/tico19.en-{lang}.dev.tsv", "tico19-dev", "medical", "CC0-1.0", _TICO),
    MirrorFile("medical/tico19-terminology.en-{lang}.tsv", "tico19-terms", "medical_terms", "CC0-1.0", _TICO),
    MirrorFile("medical/tico19.en-{lang}.test.tsv", "tico19-test", "eval", "CC0-1.0", _TICO),
    MirrorFile("general/flores200.devtest.en-{lang}.tsv", "flores200-devtest", "eval", "CC-BY-SA-4.0",
               _OPUS_TESTSETS),
    MirrorFile("general/tatoeba-test-*.en-{lang}.tsv", "tatoeba", "eval", "CC-BY-2.0-FR (Tatoeba)",
               _OPUS_TESTSETS),
    MirrorFile("general/mafand-mt.dev.en-{lang}.tsv", "mafand-dev", "eval", "CC-BY-NC-4.0 (non-commercial)",
               _LAFAND),
    MirrorFile("general/mafand-mt.test.en-{lang}.tsv", "mafand-test", "eval", "CC-BY-NC-4.0 (non-commercial)",
               _LAFAND),
)

#: (folder, set name, language, licence, upstream)
RETRIEVAL: tuple[tuple[str, str, str, str, str], ...] = (
    ("retrieval/afriqa-sw-en", "afriqa-sw-en", "sw",
     "CC-BY-4.0 (AfriQA); passages from English Wikipedia (CC BY-SA)", "masakhane-io/afriqa @ 5c299337"),
)


def find(mirror: Path, pattern: str, lang: str) -> Path | None:
    """The mirror file for ``pattern`` and ``lang`` (the last in name order if a ``*`` matches several)."""
    hits = sorted(mirror.glob(pattern.format(lang=lang)))
    return hits[-1] if hits else None


def read_bitext_file(path: Path, spec: MirrorFile, lang: str, origin: str) -> Bitext:
    """One mirror file as a :class:`Bitext` of its role (see the module docstring)."""
    rows = read_tsv(path, ("id", "en", lang))
    if spec.role == "eval":
        pairs = [Pair(i, collapse(en), collapse(tgt)) for i, en, tgt in rows if en.strip() and tgt.strip()]
        dropped = {"empty": len(rows) - len(pairs)} if len(rows) > len(pairs) else {}
    else:
        pairs, counts = filter_pairs(Pair(f"{spec.name}:{i}", en, tgt) for i, en, tgt in rows)
        dropped = dict(counts)
    return Bitext(spec.name, lang, spec.role, pairs, spec.licence, origin, raw=len(rows), dropped=dropped)


def read_retrieval(folder: Path, name: str, lang: str, licence: str, origin: str) -> RetrievalSet:
    """A retrieval folder with ``queries.tsv``, ``queries.en.tsv`` (optional), ``docs.tsv``, ``qrels.tsv``."""
    queries = read_tsv(folder / "queries.tsv", ("qid", "text"))
    en_file = folder / "queries.en.tsv"
    queries_en = read_tsv(en_file, ("qid", "text")) if en_file.is_file() else []
    docs = read_tsv(folder / "docs.tsv", ("docid", "text"))
    qrels = [(q, d, int(r)) for q, d, r in read_tsv(folder / "qrels.tsv", ("qid", "docid", "relevance"))]
    return RetrievalSet(name, lang, [(q, collapse(t)) for q, t in queries], [(q, collapse(t)) for q, t in queries_en],
                        [(d, collapse(t)) for d, t in docs], qrels, licence, origin)


def load(ctx: SourceContext) -> SourceResult:
    if ctx.mirror is None:
        raise SourceSkipped("no --mirror DIR given")
    mirror = Path(ctx.mirror)
    if not mirror.is_dir():
        raise SourceSkipped(f"mirror {mirror} is not a directory")
    result = SourceResult(NAME, LICENCE, f"{ORIGIN}: {mirror.resolve()}")
    problems: list[str] = []
    for lang in ctx.langs:
        for spec in FILES:
            path = find(mirror, spec.pattern, lang)
            if path is None:
                continue  # e.g. no MAFAND-MT or Tatoeba for Somali: not a problem
            origin = f"mirror:{path.relative_to(mirror)} ({spec.upstream})"
            try:
                result.bitexts.append(read_bitext_file(path, spec, lang, origin))
            except (DataError, OSError, UnicodeDecodeError) as e:
                problems.append(f"{path.name}: {e}")
        for folder, name, set_lang, licence, upstream in RETRIEVAL:
            if set_lang != lang or not (mirror / folder).is_dir():
                continue
            try:
                result.retrieval.append(read_retrieval(mirror / folder, name, lang, licence,
                                                       f"mirror:{folder} ({upstream})"))
            except (DataError, OSError, UnicodeDecodeError, ValueError) as e:
                problems.append(f"{folder}: {e}")
    if not result.bitexts and not result.retrieval:
        raise SourceSkipped(f"no known file for {', '.join(ctx.langs)} in {mirror}" +
                            (f" ({'; '.join(problems)})" if problems else ""))
    result.reason = "; ".join(problems)
    return result
