"""Search with a trained student: ``python -m optical_lightning.search --run-dir DIR --queries Q.tsv --docs D.tsv --out RUN.trec``.

Queries (``qid, text``) are encoded by the run's student, documents (``docid, text``) by its
teacher (both read from the run directory: ``student/`` and the saved ``config.yaml``), or by any
two models given as ``--query-model`` / ``--doc-model`` (saved students or Hugging Face folders/ids).
Writes a TREC run file (``qid Q0 docid rank score tag``) and, with ``--qrels``, prints metrics.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import OmegaConf
from rich.console import Console
from rich.table import Table

from optical_lightning.evaluation.cache import EmbeddingCache, document_embeddings
from optical_lightning.evaluation.datasets import file_key, read_docs, read_qrels, read_queries
from optical_lightning.evaluation.metrics import DEFAULT_METRICS, check_depth, evaluate_run
from optical_lightning.evaluation.scoring import Run, maxsim_search, pooled_search
from optical_lightning.models.encoder import Encoder, load_encoder
from optical_lightning.utils.atomic import atomic_write_text
from optical_lightning.utils.errors import DataError, ModelLoadError, OpticalError, require_int, user_error


def load_models(run_dir: str | None, query_model: str | None, doc_model: str | None) -> tuple[Encoder, Encoder]:
    """(query encoder, document encoder) from a run directory, explicit models, or a mix of both."""
    if run_dir is None and not (query_model and doc_model):
        raise OpticalError("give --run-dir DIR, or both --query-model and --doc-model")
    if run_dir is not None:
        run = Path(run_dir)
        if not (run / "student").is_dir() or not (run / "config.yaml").is_file():
            raise ModelLoadError(f"{run} is not a complete run directory (needs student/ and config.yaml); "
                                 f"pass the directory printed at the end of `python run.py`")
    queries = load_encoder(query_model, setting="--query-model") if query_model else \
        Encoder.from_pretrained(Path(run_dir) / "student")
    if doc_model:
        docs = load_encoder(doc_model, frozen=True, setting="--doc-model")
    else:
        cfg = OmegaConf.load(Path(run_dir) / "config.yaml")
        docs = instantiate(cfg.teacher, frozen=True)
    return queries, docs


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


def search(args: argparse.Namespace, console: Console) -> dict[str, float] | None:
    # every argument is checked before the files are encoded (minutes) and before the run file is written
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
