"""reasonrank: reasoning rerankers for Pyserini and Anserini.

Imports are lazy (PEP 562) so that ``import reasonrank`` starts no JVM and loads no model.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_MODULE_BY_SYMBOL = {
    "Query": "reasonrank.types",
    "Candidate": "reasonrank.types",
    "Request": "reasonrank.types",
    "Judgment": "reasonrank.types",
    "ExplanationFrom": "reasonrank.types",
    "RankedCandidate": "reasonrank.types",
    "Ranking": "reasonrank.types",
    "UserError": "reasonrank.errors",
    "Reranker": "reasonrank.rerank.base",
    "Cascade": "reasonrank.rerank.cascade",
    "load_reranker": "reasonrank.rerank.registry",
    "load_topics": "reasonrank.io.topics",
    "load_qrels": "reasonrank.io.topics",
    "Bm25FirstStage": "reasonrank.retrieval.bm25",
    "evaluate": "reasonrank.evaluation",
    "write_run": "reasonrank.io.runs",
    "read_run": "reasonrank.io.runs",
}

__all__ = sorted([*_MODULE_BY_SYMBOL, "LuceneSearcher"])


def __getattr__(name: str) -> Any:
    if name == "LuceneSearcher":  # Pyserini's searcher, with Java set up first and a clear error offline
        from reasonrank.retrieval.bm25 import lucene_searcher_class

        return lucene_searcher_class()
    if name not in _MODULE_BY_SYMBOL:
        raise AttributeError(f"module 'reasonrank' has no attribute {name!r}")
    return getattr(importlib.import_module(_MODULE_BY_SYMBOL[name]), name)


def __dir__() -> list[str]:
    return __all__
