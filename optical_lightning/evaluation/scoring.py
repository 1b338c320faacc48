"""Exact search: dense dot product over pooled vectors, and ColBERT-style max-sim over token vectors.

Both return the top ``k`` documents per query as ``{qid: {docid: score}}``, the run format that
:mod:`optical_lightning.evaluation.metrics` and TREC run files share. Exact search by matrix
product is fast enough for collections of tens of thousands of documents on a CPU; FAISS
(``faiss-cpu``, optional) serves larger ones through ``use_faiss=True``.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn.utils.rnn import pad_sequence

from optical_lightning.utils.errors import ConfigError

Run = dict[str, dict[str, float]]


def _to_run(scores: Tensor, indices: Tensor, qids: list[str], docids: list[str]) -> Run:
    return {qid: {docids[j]: float(s) for s, j in zip(row_s.tolist(), row_i.tolist())}
            for qid, row_s, row_i in zip(qids, scores, indices)}


def pooled_search(queries: Tensor, docs: Tensor, qids: list[str], docids: list[str], k: int = 100,
                  chunk: int = 1024, use_faiss: bool = False) -> Run:
    """Top-``k`` by inner product of (Q, D) query and (N, D) document vectors (cosine when normalised)."""
    k = min(k, len(docids))
    if use_faiss:
        try:
            import faiss  # optional dependency
        except ImportError as e:
            raise ConfigError("FAISS search needs `pip install faiss-cpu` (or optical-lightning[search])") from e

        index = faiss.IndexFlatIP(docs.shape[1])
        index.add(docs.float().numpy())
        scores, idx = index.search(queries.float().numpy(), k)
        return _to_run(torch.from_numpy(scores), torch.from_numpy(idx), qids, docids)
    scores, idx = [], []
    for start in range(0, len(queries), chunk):
        s, i = torch.topk(queries[start : start + chunk].float() @ docs.float().T, k, dim=1)
        scores.append(s)
        idx.append(i)
    return _to_run(torch.cat(scores), torch.cat(idx), qids, docids)


def maxsim_search(queries: list[Tensor], docs: list[Tensor], qids: list[str], docids: list[str], k: int = 100,
                  query_batch: int = 32, doc_batch: int = 256) -> Run:
    """Late interaction: score(q, d) = sum over query tokens of the max similarity to any document token.

    ``queries`` and ``docs`` hold one (L_i, D) tensor of (normalised) token vectors per text.
    Documents are padded in blocks; padding is masked to -inf before the max.
    """
    k = min(k, len(docids))
    all_scores = torch.empty(len(queries), len(docs))
    for d0 in range(0, len(docs), doc_batch):
        block = docs[d0 : d0 + doc_batch]
        d_pad = pad_sequence(block, batch_first=True).float()  # (Nd, Ld, D)
        d_len = torch.tensor([len(t) for t in block])
        d_mask = torch.arange(d_pad.shape[1])[None, :] < d_len[:, None]  # (Nd, Ld)
        for q0 in range(0, len(queries), query_batch):
            qs = queries[q0 : q0 + query_batch]
            q_pad = pad_sequence(qs, batch_first=True).float()  # (Nq, Lq, D)
            q_mask = torch.arange(q_pad.shape[1])[None, :] < torch.tensor([len(t) for t in qs])[:, None]
            sim = torch.einsum("qid,njd->qnij", q_pad, d_pad)  # (Nq, Nd, Lq, Ld)
            sim = sim.masked_fill(~d_mask[None, :, None, :], float("-inf")).amax(dim=-1)  # (Nq, Nd, Lq)
            sim = sim.masked_fill(~q_mask[:, None, :], 0.0).sum(dim=-1)
            all_scores[q0 : q0 + len(qs), d0 : d0 + len(block)] = sim
    scores, idx = torch.topk(all_scores, k, dim=1)
    return _to_run(scores, idx, qids, docids)
