"""BM25 first stage: Anserini's searcher over a Pyserini prebuilt index, a local index or a corpus we index.

Local indexes are searched through Anserini's Java classes directly (:class:`AnseriniSearcher`), because Pyserini
2.x's Python search module downloads its prebuilt-index catalog when imported: a local index must not need the
network. Prebuilt names go through Pyserini. Java hits (``JScoredDoc``) are turned into :class:`Candidate` here and
nowhere else, so later stages only see Python values.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path

from tqdm import tqdm

from reasonrank.errors import UserError
from reasonrank.io.corpus import corpus_files, is_corpus_file
from reasonrank.retrieval.base import Closing, FirstStageSettings, check_search, is_excluded, search_depth
from reasonrank.retrieval.documents import read_raw
from reasonrank.retrieval.index import ensure_index, is_lucene_index, open_index_reader
from reasonrank.retrieval.java import (
    PyseriniCatalogUnavailable,
    anserini_class,
    import_pyserini,
    import_pyserini_search,
)
from reasonrank.types import Candidate, Query, Request

QUERIES_PER_BATCH = 256  # batch_search holds every hit of a batch in Java memory; also the progress step


class Bm25FirstStage(Closing):
    """BM25 retrieval with Pyserini's defaults (k1=0.9, b=0.4): a :class:`reasonrank.retrieval.base.FirstStage`.

    ``index`` is a Pyserini prebuilt index name (``msmarco-v1-passage``, ``bright-biology``,
    ``beir-v1.0.0-scifact.flat``), a local Lucene index folder, or a corpus file or folder, which is indexed
    once and cached (see :func:`reasonrank.retrieval.index.ensure_index`).
    """

    name = "bm25"

    def __init__(self, index: str, k1: float = 0.9, b: float = 0.4) -> None:
        self.index = str(index)
        self.k1 = k1
        self.b = b
        self._searcher = _open_searcher(self.index)
        self._searcher.set_bm25(float(k1), float(b))

    @property
    def index_dir(self) -> Path:
        """The Lucene index folder searched (for prebuilt indexes, Pyserini's download cache)."""
        return Path(self._searcher.index_dir)

    def raw_document(self, docid: str) -> str | None:
        """The raw record the index stores for ``docid`` (None: the index has no such document)."""
        document = self._searcher.object.doc(docid)  # Anserini's SimpleSearcher under either searcher class
        if document is None:
            return None
        raw = document.get("raw")
        if raw is None:
            raise UserError(f"index {self.index} stores no raw text (document {docid}): use an index built with "
                            "-storeRaw or pass the corpus")
        return raw

    def search(
        self,
        queries: Sequence[Query],
        hits: int = 100,
        threads: int = 1,
        remove_query: bool = False,
        progress: bool = True,
        text_depth: int | None = None,
    ) -> list[Request]:
        """The top ``hits`` candidates of each query in Lucene's order, text taken from the stored raw document.

        A query's ``excluded_ids`` (BRIGHT) are dropped from its hits, and with ``remove_query`` a hit whose docid
        is the qid (Pyserini's ``--remove-query``); Lucene is asked for that many more hits, so each query still
        gets ``hits`` candidates when the index has them.

        Only the first ``text_depth`` candidates of each query get their text (None: all of them, 0: none); the
        deeper ones carry ``""``. Fetching and decoding a stored document costs more than finding it, and only
        the candidates a reranker will read need their passage: pass the deepest depth any reranker reads.
        """
        check_search(queries, hits, text_depth)
        with_text = hits if text_depth is None else min(text_depth, hits)
        # Lucene's top k is not always a prefix of its top k+n when scores tie at the cut, so queries are grouped
        # by the depth they need: a query with nothing to drop is searched at exactly `hits`, as Pyserini's CLI does.
        groups: dict[int, list[Query]] = {}
        for query in queries:
            groups.setdefault(search_depth(query, hits, remove_query), []).append(query)
        found: dict[str, tuple[Candidate, ...]] = {}
        with tqdm(total=len(queries), desc="BM25", unit=" queries", disable=not progress or len(queries) < 2) as bar:
            for depth, group in groups.items():
                for start in range(0, len(group), QUERIES_PER_BATCH):
                    batch = group[start : start + QUERIES_PER_BATCH]
                    results = self._searcher.batch_search(
                        [q.text for q in batch], [q.qid for q in batch], k=depth, threads=threads
                    )
                    for query in batch:
                        found[query.qid] = self._candidates(
                            query, results.get(query.qid, []), hits, with_text, remove_query
                        )
                    bar.update(len(batch))
        return [Request(query, found[query.qid]) for query in queries]

    def _candidates(
        self, query: Query, java_hits, hits: int, with_text: int, remove_query: bool
    ) -> tuple[Candidate, ...]:
        candidates: list[Candidate] = []
        for hit in java_hits:
            docid = hit.docid.strip()  # each attribute of a Java hit is a JNI call: read each one once
            if is_excluded(query, docid, remove_query):
                continue
            raw = self._raw(hit, docid) if len(candidates) < with_text else None
            text, title = read_raw(raw) if raw is not None else ("", "")
            candidates.append(Candidate(docid, text, hit.score, title))
            if len(candidates) == hits:
                break
        return tuple(candidates)

    def _raw(self, hit, docid: str) -> str:
        document = hit.lucene_document
        raw = document.get("raw") if document is not None else None
        if raw is None:
            raise UserError(
                f"index {self.index} stores no raw text (document {docid}): rerankers need the passages; "
                "use an index built with -storeRaw (e.g. msmarco-v1-passage, not -slim) or pass the corpus"
            )
        return raw

    def text_scorer(self) -> Bm25TextScorer:
        return Bm25TextScorer(str(self.index_dir), self.k1, self.b)

    def close(self) -> None:
        self._searcher.close()


class AnseriniSearcher:
    """Anserini's ``SimpleSearcher`` on a local index folder, with the part of Pyserini's ``LuceneSearcher`` that
    reasonrank and its users call (``search``, ``batch_search``, ``set_bm25``, ``num_docs``, ``close``): the same
    Java calls and the same Java hits, without importing Pyserini's search module (which goes to the network in
    Pyserini 2.x)."""

    def __init__(self, index_dir: str) -> None:
        self.index_dir = str(index_dir)
        self.object = anserini_class("io.anserini.search.SimpleSearcher")(self.index_dir)
        self.num_docs = self.object.get_total_num_docs()

    @classmethod
    def from_prebuilt_index(cls, prebuilt_index_name: str, verbose: bool = False):
        """Pyserini's download of a prebuilt index (it needs Pyserini's catalog, so the network)."""
        return import_pyserini_search().LuceneSearcher.from_prebuilt_index(prebuilt_index_name, verbose)

    def set_bm25(self, k1: float = 0.9, b: float = 0.4) -> None:
        self.object.set_bm25(float(k1), float(b))

    def search(self, q: str, k: int = 10) -> list:
        return list(self.object.search(q, int(k)))

    def batch_search(self, queries: Sequence[str], qids: Sequence[str], k: int = 10, threads: int = 1) -> dict:
        array_list = anserini_class("java.util.ArrayList")
        query_strings, qid_strings = array_list(), array_list()
        for query, qid in zip(queries, qids, strict=True):
            query_strings.add(query)
            qid_strings.add(qid)
        results = self.object.batch_search(query_strings, qid_strings, int(k), int(threads))
        return {entry.getKey(): entry.getValue() for entry in results.entrySet().toArray()}

    def close(self) -> None:
        self.object.close()


class Bm25TextScorer:
    """BM25 of any text (a sentence, say) against a query, as a search of ``index`` would score that text were it
    indexed there: the searcher's analyzer (Pyserini's default English analyzer), each query term weighted by how
    often it occurs in the query (Anserini's bag-of-words query), and Lucene's own ``BM25Similarity`` with the
    index's collection and term statistics and the text's length, encoded as Lucene encodes document lengths.
    An indexed passage gets exactly its search score (tests/retrieval/test_first_stage.py).
    """

    name = "bm25"
    FIELD = "contents"  # Anserini's field for the indexed text

    def __init__(self, index_dir: str, k1: float = 0.9, b: float = 0.4) -> None:
        self._arguments = (index_dir, float(k1), float(b))
        analysis = import_pyserini("pyserini.analysis")  # Pyserini's analyzers need no catalog
        self._reader = open_index_reader(index_dir)
        self._analyzer = analysis.Analyzer(analysis.get_lucene_analyzer())
        self._term = anserini_class("org.apache.lucene.index.Term")
        self._length_norm = anserini_class("org.apache.lucene.util.SmallFloat").intToByte4
        self._searcher = anserini_class("org.apache.lucene.search.IndexSearcher")(self._reader)
        self._collection = self._searcher.collectionStatistics(self.FIELD)
        self._similarity = anserini_class("org.apache.lucene.search.similarities.BM25Similarity")(float(k1), float(b))

    def __reduce__(self):
        # Pickled as where it reads from (Ray actors open the same index themselves): its Java objects cannot travel.
        return Bm25TextScorer, self._arguments

    def score(self, query: str, texts: Sequence[str]) -> list[float]:
        reader = self._reader
        weights: dict[str, int] = {}
        for term in self._analyzer.analyze(query):
            weights[term] = weights.get(term, 0) + 1
        scorers = {}  # one Lucene scorer per query term the index holds (a term it lacks matches nothing)
        for term, weight in weights.items():
            lucene_term = self._term(self.FIELD, term)
            documents = reader.docFreq(lucene_term)
            if documents:
                statistics = self._searcher.termStatistics(lucene_term, documents, reader.totalTermFreq(lucene_term))
                scorers[term] = self._similarity.scorer(float(weight), self._collection, statistics)
        scores = []
        for text in texts:
            tokens = self._analyzer.analyze(text)
            norm = self._length_norm(len(tokens))
            scores.append(sum(
                scorer.score(float(count), norm)
                for term, scorer in scorers.items() if (count := tokens.count(term))
            ))
        return scores

    def close(self) -> None:
        self._reader.close()


def build(index: str, settings: FirstStageSettings) -> Bm25FirstStage:
    return Bm25FirstStage(index, k1=settings.k1, b=settings.b)


def prebuilt_index_names() -> list[str]:
    """Pyserini's prebuilt inverted (BM25) indexes (Pyserini 2.x downloads this catalog)."""
    catalog = import_pyserini("pyserini.prebuilt_index_info")
    try:
        return sorted(catalog.TF_INDEX_INFO)
    except OSError as error:  # urllib's URLError: Pyserini 2.x reads the catalog on first use
        raise PyseriniCatalogUnavailable("its prebuilt indexes", error) from None


def _open_searcher(index: str) -> AnseriniSearcher:
    path = Path(index).expanduser()
    if path.exists():
        if is_lucene_index(path):
            return AnseriniSearcher(str(path))
        corpus_files(path)  # a clear error for a folder that is neither an index nor a corpus
        return AnseriniSearcher(str(ensure_index(path)))
    if "/" in index or "\\" in index or is_corpus_file(path):
        raise UserError(f"index or corpus not found: {index}")
    try:
        prebuilt = index in prebuilt_index_names()
    except PyseriniCatalogUnavailable as error:
        raise UserError(
            f"index {index!r} is not a local Lucene index or corpus, and Pyserini's catalog of prebuilt indexes "
            f"could not be downloaded to look the name up ({error.reason}; offline?): pass a local Lucene index "
            "folder or a corpus file"
        ) from None
    if not prebuilt:
        raise UserError(
            f"unknown index {index!r}: not a local Lucene index, not a corpus file or folder, and not a Pyserini "
            "prebuilt index name (e.g. msmarco-v1-passage, bright-biology, beir-v1.0.0-scifact.flat)"
        )
    downloaded = lucene_searcher_class().from_prebuilt_index(index)
    downloaded.close()
    if hasattr(downloaded, "index_reader"):  # Pyserini's searcher holds a second reader, which close() leaves open
        downloaded.index_reader.reader.close()
    return AnseriniSearcher(downloaded.index_dir)


@functools.cache
def lucene_searcher_class() -> type:
    """Pyserini's LuceneSearcher (Java found and the JVM configured first) whose ``from_prebuilt_index`` raises one
    UserError line where Pyserini's prints and returns None (offline, or every download URL failing).

    Where Pyserini's search module cannot be imported because its catalog download fails (Pyserini 2.x offline),
    the base is :class:`AnseriniSearcher`: local indexes still search, with the same hits.
    """
    try:
        base = import_pyserini_search().LuceneSearcher
    except PyseriniCatalogUnavailable:
        base = AnseriniSearcher

    class LuceneSearcher(base):
        __doc__ = base.__doc__

        @classmethod
        def from_prebuilt_index(cls, prebuilt_index_name: str, verbose: bool = False):
            failure = "the download failed"
            try:
                parent = super().from_prebuilt_index
                searcher = parent(prebuilt_index_name, verbose) if verbose else parent(prebuilt_index_name)
            except Exception as error:  # checksum, disk and network errors all mean the same to the user
                searcher, failure = None, f"the download failed ({type(error).__name__}: {str(error)[:100]})"
            if searcher is None:
                raise UserError(
                    f"cannot open Pyserini prebuilt index {prebuilt_index_name!r}: {failure} (offline?); "
                    "pass a local Lucene index folder or a corpus file instead"
                )
            return searcher

    return LuceneSearcher
