"""A local data mirror (``--mirror DIR``, e.g. ``../shared/data``): TICO-19, FLORES-200, NTREX-128,
Tatoeba, MAFAND-MT, AfriQA and AfriMMLU, in the mirror's layout (see its README).

The mirror is optional: without it the registry sources still build. Each file has a role:

* training: MAFAND-MT train (Global Voices, sw) and NTREX-128 (sw, so - the only general en-so
  sentence bitext, so it trains rather than evaluates);
* domain training (kept out of ``train.tsv``): TICO-19 dev and the TICO-19 terminology lists
  (medical), and the AfriQA Swahili *train* questions with their human English translations
  (questions) less a seeded held-out 100, which become the ``afriqa-questions-dev`` evaluation set;
* evaluation: TICO-19 test, FLORES-200 devtest, Tatoeba, MAFAND-MT dev/test (CC BY-NC), the
  AfriQA sw->en retrieval folder, copied as is, and AfriMMLU (Swahili MMLU, parallel by id with
  its English originals; dev / val / test).

TICO-19 documents pass :func:`~optical_lightning.data.alignment_check.realign` first: in 9 of the
19 Somali test documents (and 7 of the 13 dev ones) every Somali line translates the *next*
English line; those are realigned where numbers and lengths confirm one constant offset and
dropped where nothing does. Every other file is checked the same way and only reported.

Evaluation rows are kept verbatim (whitespace collapsed); training rows get source-prefixed ids and
lose empty, untranslated and duplicate pairs. A missing file is noted, not fatal.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from optical_lightning.data import alignment_check
from optical_lightning.data.bitext import BitextPair
from optical_lightning.prepare.clean import filter_pairs
from optical_lightning.prepare.records import (
    Bitext,
    BitextRole,
    MCQASet,
    RetrievalFolder,
    SourceContext,
    SourceResult,
    SourceSkipped,
)
from optical_lightning.prepare.text import collapse
from optical_lightning.prepare.tsv import read_tsv
from optical_lightning.utils.errors import DataError
from optical_lightning.utils.textfiles import read_lines

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
    role: BitextRole
    licence: str
    upstream: str
    realign: bool = False  # documents (``DOC:line`` ids) whose lines are shifted are realigned or dropped


FILES: tuple[MirrorFile, ...] = (
    MirrorFile("general/mafand-mt.train.en-{lang}.tsv", "mafand-train", "train",
               "CC-BY-3.0 (Global Voices via OPUS)", _LAFAND),
    MirrorFile("general/ntrex128.en-{lang}.tsv", "ntrex128", "train", "CC-BY-SA-4.0", _OPUS_TESTSETS),
    MirrorFile("medical/tico19.en-{lang}.dev.tsv", "tico19-dev", "medical", "CC0-1.0", _TICO, realign=True),
    MirrorFile("medical/tico19-terminology.en-{lang}.tsv", "tico19-terms", "medical_terms", "CC0-1.0", _TICO),
    MirrorFile("medical/tico19.en-{lang}.test.tsv", "tico19-test", "eval", "CC0-1.0", _TICO, realign=True),
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


_AFRIQA = "masakhane-io/afriqa @ 5c299337"
#: AfriQA Swahili train questions: query-style bitext; QUESTIONS_DEV of them are held out (seeded)
QUESTIONS = "questions/afriqa.train.en-{lang}.tsv"
QUESTIONS_DEV, QUESTIONS_SEED = 100, 0
QUESTIONS_LICENCE = "CC-BY-4.0 (AfriQA)"
AFRIMMLU = "mcqa/afrimmlu"
AFRIMMLU_SPLITS = ("dev", "val", "test")
AFRIMMLU_LICENCE = ("Apache-2.0 as stated on the dataset card huggingface.co/datasets/masakhane/afrimmlu "
                    "(the GitHub copy read here carries no licence file); English originals: MMLU, MIT")
AFRIMMLU_UPSTREAM = "emma0925/African_LLM_Benchmark @ cd5d0c5, mmlu-swahili.csv (IrokoBench AfriMMLU)"
_MCQA_KEYS = ("id", "subject", "question", "option_a", "option_b", "option_c", "option_d", "answer")


def find(mirror: Path, pattern: str, lang: str) -> Path | None:
    """The mirror file for ``pattern`` and ``lang`` (the last in name order if a ``*`` matches several)."""
    hits = sorted(mirror.glob(pattern.format(lang=lang)))
    return hits[-1] if hits else None


def read_bitext_file(path: Path, spec: MirrorFile, lang: str, origin: str) -> Bitext:
    """One mirror file as a :class:`Bitext` of its role (see the module docstring)."""
    rows = raw_rows = read_tsv(path, ("id", "en", lang))
    alignment: dict[str, object] = {}
    if spec.realign:
        rows, checks = alignment_check.realign([BitextPair(i, en, tgt) for i, en, tgt in raw_rows])
        alignment = alignment_check.summary(checks)
    if spec.role == "eval":
        pairs = [BitextPair(i, collapse(en), collapse(tgt)) for i, en, tgt in rows if en.strip() and tgt.strip()]
        dropped = {"empty": len(rows) - len(pairs)} if len(rows) > len(pairs) else {}
    else:
        pairs, counts = filter_pairs(BitextPair(f"{spec.name}:{i}", en, tgt) for i, en, tgt in rows)
        dropped = dict(counts)
    if len(raw_rows) > len(rows):
        dropped["misaligned"] = len(raw_rows) - len(rows)  # dropped documents and the unpaired end lines of shifted ones
    return Bitext(spec.name, lang, spec.role, pairs, spec.licence, origin, raw=len(raw_rows), dropped=dropped,
                  alignment=alignment)


def split_questions(rows: list[tuple[str, str, str]], held_out: int = QUESTIONS_DEV,
                    seed: int = QUESTIONS_SEED) -> tuple[list[tuple[str, str, str]], list[tuple[str, str, str]]]:
    """(training, held-out) rows: a question is held out when the seeded hash of its id ranks among the
    lowest ``held_out`` (at most half the file), so neither the file's order nor a later row moves the
    others; both parts keep file order."""
    ids = [i for i, _, _ in rows]
    if len(set(ids)) != len(ids):
        raise DataError("question ids are not unique")
    rank = sorted(ids, key=lambda i: hashlib.sha256(f"{seed}:{i}".encode()).hexdigest())
    chosen = set(rank[:min(held_out, len(ids) // 2)])
    return [r for r in rows if r[0] not in chosen], [r for r in rows if r[0] in chosen]


def read_questions(path: Path, lang: str, origin: str) -> list[Bitext]:
    """The question bitext: domain training pairs and the held-out ``afriqa-questions-dev`` set."""
    rows = read_tsv(path, ("id", "en", lang))
    train_rows, dev_rows = split_questions(rows)
    pairs, counts = filter_pairs(BitextPair(f"afriqa-questions:{i}", en, tgt) for i, en, tgt in train_rows)
    dev = [BitextPair(i, collapse(en), collapse(tgt)) for i, en, tgt in dev_rows if en.strip() and tgt.strip()]
    return [Bitext("afriqa-questions", lang, "questions", pairs, QUESTIONS_LICENCE, origin, raw=len(train_rows),
                   dropped=dict(counts)),
            Bitext("afriqa-questions-dev", lang, "eval", dev, QUESTIONS_LICENCE, origin, raw=len(dev_rows))]


def read_mcqa_rows(path: Path) -> tuple[list[dict[str, str]], int]:
    """The rows of one AfriMMLU file (Global-MMLU columns plus ``id``), and how many were malformed."""
    rows, skipped = [], 0
    for line in read_lines(path):  # not str.splitlines: MMLU texts hold U+0085, which it breaks at
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            skipped += 1
            continue
        if not isinstance(row, dict) or any(not str(row.get(k, "")).strip() for k in _MCQA_KEYS) or \
                str(row["answer"]).strip().upper() not in ("A", "B", "C", "D"):
            skipped += 1
            continue
        rows.append({k: collapse(str(row[k])) for k in _MCQA_KEYS})
    return rows, skipped


def read_afrimmlu(folder: Path, langs: tuple[str, ...], origin: str) -> tuple[list[MCQASet], list[str]]:
    """AfriMMLU splits for each requested language that has them, with the English originals; a split
    whose two sides are not parallel by id is left out with a problem line."""
    sets, problems = [], []
    for split in AFRIMMLU_SPLITS:
        english = folder / f"en.{split}.jsonl"
        for lang in langs:
            own = folder / f"{lang}.{split}.jsonl"
            if not (own.is_file() and english.is_file()):
                continue
            (rows, skipped), (en_rows, en_skipped) = read_mcqa_rows(own), read_mcqa_rows(english)
            if [r["id"] for r in rows] != [r["id"] for r in en_rows] or \
                    [r["answer"] for r in rows] != [r["answer"] for r in en_rows]:
                problems.append(f"{own.name}/{english.name}: not parallel by id and answer; left out")
                continue
            sets.append(MCQASet("afrimmlu", lang, rows, AFRIMMLU_LICENCE, f"{origin}/{own.name} ({AFRIMMLU_UPSTREAM})",
                                skipped=skipped, split=split))
            if not any(m.lang == "en" and m.split == split for m in sets):
                sets.append(MCQASet("afrimmlu", "en", en_rows, AFRIMMLU_LICENCE,
                                    f"{origin}/{english.name} ({AFRIMMLU_UPSTREAM})", skipped=en_skipped, split=split))
    return sets, problems


def read_retrieval(folder: Path, name: str, lang: str, licence: str, origin: str) -> RetrievalFolder:
    """A retrieval folder with ``queries.tsv``, ``queries.en.tsv`` (optional), ``docs.tsv``, ``qrels.tsv``."""
    queries = read_tsv(folder / "queries.tsv", ("qid", "text"))
    en_file = folder / "queries.en.tsv"
    queries_en = read_tsv(en_file, ("qid", "text")) if en_file.is_file() else []
    docs = read_tsv(folder / "docs.tsv", ("docid", "text"))
    qrels = [(q, d, int(r)) for q, d, r in read_tsv(folder / "qrels.tsv", ("qid", "docid", "relevance"))]
    return RetrievalFolder(name, lang, [(q, collapse(t)) for q, t in queries],
                           [(q, collapse(t)) for q, t in queries_en], [(d, collapse(t)) for d, t in docs], qrels,
                           licence, origin)


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
        questions = mirror / QUESTIONS.format(lang=lang)
        if questions.is_file():
            try:
                result.bitexts += read_questions(questions, lang, f"mirror:{QUESTIONS.format(lang=lang)} ({_AFRIQA})")
            except (DataError, OSError, UnicodeDecodeError) as e:
                problems.append(f"{questions.name}: {e}")
        for folder, name, set_lang, licence, upstream in RETRIEVAL:
            if set_lang != lang or not (mirror / folder).is_dir():
                continue
            try:
                result.retrieval.append(read_retrieval(mirror / folder, name, lang, licence,
                                                       f"mirror:{folder} ({upstream})"))
            except (DataError, OSError, UnicodeDecodeError, ValueError) as e:
                problems.append(f"{folder}: {e}")
    if (mirror / AFRIMMLU).is_dir():
        try:
            result.mcqa, mcqa_problems = read_afrimmlu(mirror / AFRIMMLU, ctx.langs, f"mirror:{AFRIMMLU}")
            problems += mcqa_problems
        except (OSError, UnicodeDecodeError) as e:
            problems.append(f"{AFRIMMLU}: {e}")
    if not result.bitexts and not result.retrieval and not result.mcqa:
        raise SourceSkipped(f"no known file for {', '.join(ctx.langs)} in {mirror}" +
                            (f" ({'; '.join(problems)})" if problems else ""))
    result.reason = "; ".join(problems)
    return result
