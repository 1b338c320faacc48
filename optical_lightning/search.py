"""Search with a trained student: ``python -m optical_lightning.search --run-dir DIR --queries Q.tsv --docs D.tsv --out RUN.trec``.

Queries (``qid, text``) are encoded by the run's student, documents (``docid, text``) by its
teacher (both read from the run directory: ``student/`` and the saved ``config.yaml``), or by any
two models given as ``--query-model`` / ``--doc-model`` (saved students or Hugging Face folders/ids).
Writes a TREC run file (``qid Q0 docid rank score tag``) and, with ``--qrels``, prints metrics.

Run directories are shared and downloaded: the teacher is rebuilt from the plain fields of the saved
``config.yaml`` by one of the project's own builders (see :mod:`optical_lightning.models.from_config`),
never by calling whatever the file names.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

import yaml
from rich.console import Console
from rich.table import Table

from optical_lightning.evaluation.cache import EmbeddingCache, document_embeddings
from optical_lightning.evaluation.datasets import file_key, read_docs, read_qrels, read_queries, unjudgeable
from optical_lightning.evaluation.metrics import DEFAULT_METRICS, check_depth, evaluate_run
from optical_lightning.evaluation.scoring import Run, maxsim_search, pooled_search
from optical_lightning.models.checks import check_finite
from optical_lightning.models.encoder import Encoder
from optical_lightning.models.from_config import encoder_builder
from optical_lightning.models.loading import load_encoder
from optical_lightning.utils.atomic import atomic_write_text
from optical_lightning.utils.errors import (
    ConfigError,
    DataError,
    ModelLoadError,
    OpticalError,
    require_int,
    user_error,
)


def load_models(run_dir: str | None, query_model: str | None, doc_model: str | None) -> tuple[Encoder, Encoder]:
    """(query encoder, document encoder) from a run directory, explicit models, or a mix of both.

    The saved teacher section is checked (known builder, plain values) before any model loads, and
    both encoders are refused when their weights hold NaN/inf (a diverged run), before any encoding.
    """
    if run_dir is None and not (query_model and doc_model):
        raise OpticalError("give --run-dir DIR, or both --query-model and --doc-model")
    teacher: Callable[..., Encoder] | None = None
    if run_dir is not None:
        run = Path(run_dir)
        if not (run / "student").is_dir() or not (run / "config.yaml").is_file():
            raise ModelLoadError(f"{run} is not a complete run directory (needs student/ and config.yaml); "
                                 f"pass the directory printed at the end of `python run.py`")
        if not doc_model:
            teacher = saved_teacher(run / "config.yaml")
    query_where = f"--query-model {query_model}" if query_model else f"the student in {Path(run_dir) / 'student'}"
    queries = load_encoder(query_model, setting="--query-model") if query_model else \
        Encoder.from_pretrained(Path(run_dir) / "student")
    check_finite(queries, query_where)
    if doc_model:
        docs = load_encoder(doc_model, frozen=True, setting="--doc-model")
        check_finite(docs, f"--doc-model {doc_model}")
    else:
        docs = teacher(frozen=True)
        check_finite(docs, f"the teacher of {run_dir}")
    return queries, docs


def saved_teacher(config: Path) -> Callable[..., Encoder]:
    """The ``teacher:`` section of a run's saved config as plain data (``yaml.safe_load``: no tags, no
    interpolation), checked before anything is built from it. A ``cache_dir`` (where converted models are
    kept) that only existed where the run was made, as in a downloaded run directory, is left out."""
    try:
        saved = yaml.safe_load(config.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise ModelLoadError(f"{config}: not a readable config ({' '.join(str(e).split())[:160]}); "
                             f"pass the models with --query-model / --doc-model instead") from e
    teacher = saved.get("teacher") if isinstance(saved, dict) else None
    if not isinstance(teacher, dict):
        raise ModelLoadError(f"{config} has no teacher: section; pass the document encoder with --doc-model")
    teacher = dict(teacher)
    if isinstance(teacher.get("cache_dir"), str) and not Path(teacher["cache_dir"]).is_dir():
        teacher.pop("cache_dir")  # made elsewhere: the default cache folder ($OPTICAL_CACHE_DIR) serves
    return encoder_builder(teacher, f"{config}: teacher")


def write_trec(run: Run, path: str | Path, tag: str) -> Path:
    lines = [f"{qid} Q0 {docid} {rank} {score:.6f} {tag}"
             for qid, docs in run.items()
             for rank, (docid, score) in enumerate(sorted(docs.items(), key=lambda x: -x[1]), start=1)]
    return atomic_write_text(path, "\n".join(lines) + "\n")


def judged_queries(qrels: dict[str, dict[str, int]], queries: dict[str, str], path: str) -> dict[str, dict[str, int]]:
    """The judgements of the queries that are searched; the others are left out of the metrics, with a
    warning, instead of counting as failed searches."""
    unknown = [q for q in qrels if q not in queries]
    if len(unknown) == len(qrels):
        raise DataError(f"{path}: none of its {len(qrels)} query ids is in the queries file (e.g. {unknown[0]!r}); "
                        f"are --qrels and --queries from the same set?")
    if unknown:
        print(f"warning: {len(unknown)} of {len(qrels)} queries judged in {path} are not in the queries file "
              f"(e.g. {unknown[0]!r}); the metrics leave them out", file=sys.stderr)
    return {q: docs for q, docs in qrels.items() if q in queries}


def check_out(out: str, inputs: dict[str, str | None]) -> Path:
    """``--out`` as a file that can be written and is none of the inputs (``--docs`` ...), checked before
    anything is read or encoded; the same file through a symlink, hard link or another relative path counts."""
    path = Path(out).expanduser()
    if path.is_dir():
        raise ConfigError(f"--out {out} is a directory; give the path of the TREC file to write, e.g. {path / 'run.trec'}")
    parent = path.resolve().parent
    if not parent.is_dir():
        raise ConfigError(f"--out {out}: the folder {parent} does not exist; create it first or choose another --out")
    for flag, given in inputs.items():
        if given and _same_file(path, Path(given).expanduser()):
            raise ConfigError(f"--out {out} is the same file as {flag} {given}; writing the run would overwrite "
                              f"that input: choose another --out")
    return path


def _same_file(a: Path, b: Path) -> bool:
    if a.resolve() == b.resolve():
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet)
        return False


def search(args: argparse.Namespace, console: Console) -> dict[str, float] | None:
    # every argument is checked before the files are encoded (minutes) and before the run file is written
    check_out(args.out, {"--queries": args.queries, "--docs": args.docs, "--qrels": args.qrels})
    if args.qrels:
        check_depth("--k", args.k, args.metrics)  # also parses the metric names
    else:
        require_int("--k", args.k, minimum=1)
    require_int("--batch-size", args.batch_size, minimum=1)
    queries = read_queries(Path(args.queries))
    docs = read_docs(Path(args.docs))
    qrels = judged_queries(read_qrels(Path(args.qrels)), queries, args.qrels) if args.qrels else None
    if not queries or not docs:
        raise DataError(f"nothing to search: {len(queries)} queries in {args.queries}, {len(docs)} documents in {args.docs}")
    if qrels is not None and (warning := unjudgeable(qrels, docs, args.qrels, args.docs)) is not None:
        print(f"warning: {warning}", file=sys.stderr)
    q_enc, d_enc = load_models(args.run_dir, args.query_model, args.doc_model)
    qids, docids = list(queries), list(docs)
    maxsim = args.scoring == "maxsim"
    docs_emb = document_embeddings(d_enc, [docs[d] for d in docids], file_key(Path(args.docs)),
                                   EmbeddingCache(args.cache_dir), with_tokens=maxsim, batch_size=args.batch_size,
                                   precision=args.precision)
    texts = [queries[q] for q in qids]
    if maxsim:
        _, q_tokens = q_enc.encode(texts, "query", args.batch_size, tokens=True, progress=True,
                                   precision=args.precision)
        run = maxsim_search(q_tokens, docs_emb["maxsim"], qids, docids, args.k)
    else:
        run = pooled_search(q_enc.encode(texts, "query", args.batch_size, progress=True, precision=args.precision),
                            docs_emb["pooled"], qids, docids, args.k, use_faiss=args.faiss)
    write_trec(run, args.out, args.tag)
    console.print(f"wrote {sum(len(d) for d in run.values())} lines for {len(run)} queries to [bold]{args.out}[/bold]")
    if qrels is None:
        return None
    mean, _ = evaluate_run(run, qrels, args.metrics)
    table = Table(title=f"{args.scoring} search: {len(qids)} queries, {len(docids)} documents")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in mean.items():
        table.add_row(name, f"{value:.4f}")
    console.print(table)
    return mean


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m optical_lightning.search", description=__doc__.split("\n\n")[0])
    p.add_argument("--run-dir", help="a run directory of `python run.py` (student/ + config.yaml)")
    p.add_argument("--query-model", help="query encoder: a saved student, HF folder or hub id (overrides --run-dir)")
    p.add_argument("--doc-model", help="document encoder: HF folder or hub id (overrides the run's teacher)")
    p.add_argument("--queries", required=True, help="TSV with header qid<TAB>text")
    p.add_argument("--docs", required=True, help="TSV with header docid<TAB>text")
    p.add_argument("--out", required=True, help="TREC run file to write")
    p.add_argument("--qrels", help="TSV with header qid<TAB>docid<TAB>relevance: print metrics")
    p.add_argument("--scoring", choices=["pooled", "maxsim"], default="pooled")
    p.add_argument("--k", type=int, default=100, help="documents per query")
    p.add_argument("--metrics", nargs="+", default=list(DEFAULT_METRICS))
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--faiss", action="store_true", help="pooled search through a FAISS flat index (pip install faiss-cpu)")
    p.add_argument("--precision", choices=["auto", "32", "bf16"], default="auto",
                   help="encoding precision; auto: bf16 where the hardware runs it natively")
    p.add_argument("--cache-dir", default=None, help="cache document embeddings here (reused across calls)")
    p.add_argument("--tag", default="optical-lightning", help="run tag in the TREC file")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    # the library's warnings (repeated rows, cache problems) reach the user as `warning: ...` lines
    logging.basicConfig(level=logging.WARNING, format="warning: %(message)s", stream=sys.stderr)
    console = Console(stderr=False)
    try:
        search(args, console)
    except Exception as e:
        if (cause := user_error(e)) is None:
            raise
        print(f"error: {cause}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
