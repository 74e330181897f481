"""Hybrid first stage: BM25 and dense retrieval over the same corpus, fused by reciprocal rank fusion.

RRF (Cormack, Clarke & Büttcher, SIGIR 2009) scores a document ``Σ 1 / (k + rank)`` over the lists it appears in
(k = 60), so neither retriever's score scale matters: exact-term matches BM25 ranks high and paraphrases the
bi-encoder ranks high both come up. Each retriever contributes its top ``hits``; the fused top ``hits`` are kept.
"""

from __future__ import annotations

from collections.abc import Sequence

from reasonrank.retrieval.base import Closing, FirstStageSettings, check_search
from reasonrank.retrieval.bm25 import Bm25FirstStage
from reasonrank.retrieval.dense import DenseFirstStage
from reasonrank.types import Query, Request


def reciprocal_rank_fusion(rankings: Sequence[Sequence[str]], k: int = 60) -> list[tuple[str, float]]:
    """``(docid, Σ 1/(k + rank))`` best first; ties keep the order in which the lists first name the documents."""
    scores: dict[str, float] = {}
    for ranking in rankings:
        for rank, docid in enumerate(ranking, start=1):
            scores[docid] = scores.get(docid, 0.0) + 1.0 / (k + rank)
    return sorted(scores.items(), key=lambda item: -item[1])  # sorted() is stable: first-named wins a tie


class HybridFirstStage(Closing):
    """BM25 (Lucene over the corpus, indexed once) and dense (bi-encoder + faiss) fused with RRF."""

    name = "hybrid"

    def __init__(self, corpus_path: str, settings: FirstStageSettings) -> None:
        self.rrf_k = settings.rrf_k
        self.dense = DenseFirstStage(corpus_path, settings.encoder, progress=settings.progress)  # needs the corpus
        self.bm25 = Bm25FirstStage(corpus_path, k1=settings.k1, b=settings.b)
        self.rows = {docid: row for row, docid in enumerate(self.dense.docids)}

    def search(
        self,
        queries: Sequence[Query],
        hits: int = 100,
        threads: int = 1,
        remove_query: bool = False,
        progress: bool = True,
        text_depth: int | None = None,
    ) -> list[Request]:
        """Both lists of each query (each first stage drops excluded ids itself), fused; every candidate carries its
        text (the dense side holds the corpus in memory) and its fused score."""
        check_search(queries, hits, text_depth)
        lexical = self.bm25.search(queries, hits, threads, remove_query, progress, text_depth=0)
        semantic = self.dense.search(queries, hits, threads, remove_query, progress)
        requests = []
        for query, first, second in zip(queries, lexical, semantic, strict=True):
            lists = [[c.docid for c in request.candidates] for request in (first, second)]
            fused = reciprocal_rank_fusion(lists, self.rrf_k)[:hits]
            requests.append(Request(query, tuple(self.dense.candidate(self.rows[d], score) for d, score in fused)))
        return requests

    def close(self) -> None:
        self.bm25.close()
        self.dense.close()


def build(index: str, settings: FirstStageSettings) -> HybridFirstStage:
    return HybridFirstStage(index, settings)
