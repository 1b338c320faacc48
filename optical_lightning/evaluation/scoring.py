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
                  query_batch: int = 128, block_tokens: int = 16384) -> Run:
    """Late interaction: score(q, d) = sum over query tokens of the max similarity to any document token.

    ``queries`` and ``docs`` hold one (L_i, D) tensor of (normalised) token vectors per text. Documents are
    sorted by length and cut into blocks of about ``block_tokens`` padded tokens, so padding stays small; each
    step is one matrix product of ``query_batch`` queries' tokens, unpadded, against a block, with the padding
    masked to -inf in place before the max, and the per-token maxima summed per query. Exact: the same sums as
    a loop over pairs, at a fraction of the memory traffic of a padded (queries, docs, Lq, Ld) tensor.
    """
    k = min(k, len(docids))
    all_scores = torch.zeros(len(queries), len(docs))
    chunks = []
    for q0 in range(0, len(queries), query_batch):
        qs = queries[q0 : q0 + query_batch]
        owner = torch.repeat_interleave(torch.arange(len(qs)), torch.tensor([len(t) for t in qs]))
        chunks.append((q0, len(qs), torch.cat(qs).float(), owner))  # (Tq, D) query tokens, no padding
    order = sorted(range(len(docs)), key=lambda j: len(docs[j]))
    d0 = 0
    while d0 < len(order):
        cols = [order[d0]]  # grow the block while its padded size (count x its longest, the last) fits
        while d0 + len(cols) < len(order) and (len(cols) + 1) * len(docs[order[d0 + len(cols)]]) <= block_tokens:
            cols.append(order[d0 + len(cols)])
        d0 += len(cols)
        block = [docs[j] for j in cols]
        d_pad = pad_sequence(block, batch_first=True).float()  # (Nd, Ld, D)
        n_docs, length, dim = d_pad.shape
        pad = torch.arange(length)[None, :] >= torch.tensor([len(t) for t in block])[:, None]  # (Nd, Ld)
        d_flat = d_pad.reshape(-1, dim).T
        for q0, n_q, q_flat, owner in chunks:
            sim = (q_flat @ d_flat).view(-1, n_docs, length)  # (Tq, Nd, Ld)
            best = sim.masked_fill_(pad[None], float("-inf")).amax(dim=-1)  # (Tq, Nd)
            all_scores[q0 : q0 + n_q, cols] = torch.zeros(n_q, n_docs).index_add_(0, owner, best)
    scores, idx = torch.topk(all_scores, k, dim=1)
    return _to_run(scores, idx, qids, docids)
