"""The search-time benchmark: what max-sim (late-interaction) scoring costs against pooled scoring.

Both search the same documents with the same queries, encoded once beforehand: the teacher's passages, the
student's queries, as an evaluation set is searched. Max-sim is also timed in the padded form that scores a
(queries, documents, query tokens, document tokens) tensor per block, the plain way to write it, as the reference
that :func:`~optical_lightning.evaluation.scoring.maxsim_search` is measured against.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.nn.utils.rnn import pad_sequence

from optical_lightning.evaluation.scoring import maxsim_search, pooled_search
from optical_lightning.models.encoder import Encoder
from optical_lightning_study.bench.measure import time_call


def padded_maxsim(queries: list[Tensor], docs: list[Tensor], query_batch: int = 32, doc_batch: int = 256) -> Tensor:
    """All max-sim scores through one padded (Nq, Nd, Lq, Ld) similarity tensor per block of queries and documents."""
    scores = torch.empty(len(queries), len(docs))
    for d0 in range(0, len(docs), doc_batch):
        d_pad = pad_sequence(docs[d0:d0 + doc_batch], batch_first=True)
        d_mask = torch.arange(d_pad.shape[1])[None, :] < torch.tensor([len(t) for t in docs[d0:d0 + doc_batch]])[:, None]
        for q0 in range(0, len(queries), query_batch):
            qs = queries[q0:q0 + query_batch]
            q_pad = pad_sequence(qs, batch_first=True)
            q_mask = torch.arange(q_pad.shape[1])[None, :] < torch.tensor([len(t) for t in qs])[:, None]
            sim = torch.einsum("qid,njd->qnij", q_pad, d_pad)
            sim = sim.masked_fill(~d_mask[None, :, None, :], float("-inf")).amax(dim=-1)
            scores[q0:q0 + len(qs), d0:d0 + d_pad.shape[0]] = sim.masked_fill(~q_mask[:, None, :], 0.0).sum(dim=-1)
    return scores


def bench_search(teacher: Encoder, student: Encoder, docs: list[str], queries: list[str], batch_size: int,
                 precision: str, repeats: int) -> dict[str, Any]:
    """Milliseconds per query for pooled and max-sim search over ``docs``, and max-sim in its padded form."""
    doc_pooled, doc_tokens = teacher.encode(docs, "passage", batch_size, tokens=True, precision=precision)
    q_pooled, q_tokens = student.encode(queries, "query", batch_size, tokens=True, precision=precision)
    doc_tokens, q_tokens = [t.float() for t in doc_tokens], [t.float() for t in q_tokens]
    qids, docids = [str(i) for i in range(len(queries))], [str(j) for j in range(len(docs))]
    runs = {
        "pooled": lambda: pooled_search(q_pooled, doc_pooled, qids, docids),
        "maxsim": lambda: maxsim_search(q_tokens, doc_tokens, qids, docids),
        "maxsim_padded": lambda: padded_maxsim(q_tokens, doc_tokens),
    }
    ms = {name: 1000 * time_call(fn, 1, repeats)["median_s"] / len(queries) for name, fn in runs.items()}
    return {"docs": len(docs), "queries": len(queries),
            "doc_tokens_mean": sum(len(t) for t in doc_tokens) / len(doc_tokens),
            "query_tokens_mean": sum(len(t) for t in q_tokens) / len(q_tokens),
            "ms_per_query": ms, "maxsim_vs_pooled": ms["maxsim"] / ms["pooled"],
            "maxsim_speedup_vs_padded": ms["maxsim_padded"] / ms["maxsim"]}
