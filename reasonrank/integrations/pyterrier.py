"""A PyTerrier transformer around any reasonrank reranker (optional: ``pip install python-terrier``).

``ReasonRankTransformer(reranker)`` is a re-ranking transformer: it takes a PyTerrier results frame (``qid``,
``query``, ``docno``, ``text``, ``score``) and returns it reranked, with the reranker's ``label`` and
``explanation`` as extra columns::

    import pyterrier as pt
    from reasonrank.integrations.pyterrier import ReasonRankTransformer

    pipeline = bm25 >> pt.text.get_text(dataset, "text") >> ReasonRankTransformer("minilm-bi") % 10

PyTerrier is imported only when the transformer class is first used, so ``frame_to_requests`` and
``rankings_to_frame`` (the DataFrame ↔ Request/Ranking conversion) work with pandas alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from reasonrank.errors import UserError
from reasonrank.types import Candidate, Query, Ranking, Request

if TYPE_CHECKING:
    import pandas as pd

    from reasonrank.rerank.base import Reranker

FIRST_RANK = 0  # PyTerrier numbers ranks from 0 (pyterrier.model.FIRST_RANK)
REQUIRED_COLUMNS = ("qid", "query", "docno")
OUTPUT_COLUMNS = ("qid", "query", "docno", "text", "score", "rank", "label", "explanation")


def frame_to_requests(results: pd.DataFrame, text_column: str = "text") -> list[Request]:
    """One request per qid, in the order qids first appear; candidates by descending ``score`` (ties keep order).

    Without a ``score`` column the frame's row order is the first-stage order.
    """
    missing = [c for c in (*REQUIRED_COLUMNS, text_column) if c not in results.columns]
    if missing:
        hint = (" (add the document text first, e.g. `>> pt.text.get_text(dataset, 'text')`)"
                if text_column in missing else "")
        raise UserError(f"the results frame has no column {', '.join(missing)}{hint}")
    ranked = results.sort_values("score", ascending=False, kind="stable") if "score" in results.columns else results
    groups = dict(iter(ranked.groupby(ranked["qid"].astype(str), sort=False)))
    requests = []
    for qid in dict.fromkeys(results["qid"].astype(str)):  # the order qids first appear in the input
        rows = groups[qid]
        scores = rows["score"] if "score" in rows.columns else [0.0] * len(rows)
        candidates = tuple(
            Candidate(str(docno), str(text), float(score))
            for docno, text, score in zip(rows["docno"], rows[text_column], scores, strict=True)
        )
        requests.append(Request(Query(qid, str(rows["query"].iloc[0])), candidates))
    return requests


def rankings_to_frame(rankings: Sequence[Ranking], results: pd.DataFrame | None = None) -> pd.DataFrame:
    """The PyTerrier results frame of ``rankings``; other columns of ``results`` are carried over per document."""
    import pandas as pd

    frame = pd.DataFrame(
        [
            (r.query.qid, r.query.text, item.docid, item.text, item.score, item.rank - 1 + FIRST_RANK, item.label,
             item.explanation)
            for r in rankings
            for item in r.items
        ],
        columns=list(OUTPUT_COLUMNS),
    )
    if results is None:
        return frame
    extra = [c for c in results.columns if c not in OUTPUT_COLUMNS]
    if not extra:
        return frame
    carried = results[["qid", "docno", *extra]].astype({"qid": str, "docno": str})
    return frame.merge(carried.drop_duplicates(["qid", "docno"]), on=["qid", "docno"], how="left")


def rerank_frame(reranker: Reranker, results: pd.DataFrame, text_column: str = "text", batch_size: int = 8):
    """Rerank every query of a results frame, ``batch_size`` queries per reranker call."""
    requests = frame_to_requests(results, text_column)
    rankings: list[Ranking] = []
    for start in range(0, len(requests), batch_size):
        rankings.extend(reranker.rerank_many(requests[start : start + batch_size]))
    return rankings_to_frame(rankings, results)


def _transformer_class() -> type:
    try:
        import pyterrier as pt
    except ImportError as error:
        raise ImportError(
            "ReasonRankTransformer needs PyTerrier: pip install python-terrier (it also needs Java 11+)"
        ) from error

    class ReasonRankTransformer(pt.Transformer):
        """Rerank a PyTerrier results frame with a reasonrank reranker (an instance or a registry name)."""

        def __init__(self, reranker: Reranker | str, text_column: str = "text", batch_size: int = 8, **options: Any):
            if isinstance(reranker, str):
                from reasonrank.rerank.registry import load_reranker

                reranker = load_reranker(reranker, **options)
            elif options:
                raise TypeError("options are for a reranker given by name; pass them to load_reranker instead")
            self.reranker, self.text_column, self.batch_size = reranker, text_column, batch_size

        def transform(self, inp: pd.DataFrame) -> pd.DataFrame:
            return rerank_frame(self.reranker, inp, self.text_column, self.batch_size)

        def __repr__(self) -> str:
            return f"ReasonRankTransformer({self.reranker.name!r})"

    return ReasonRankTransformer


def __getattr__(name: str) -> Any:
    if name == "ReasonRankTransformer":
        cls = _transformer_class()
        globals()[name] = cls  # built once; later lookups find it without coming back here
        return cls
    raise AttributeError(f"module 'reasonrank.integrations.pyterrier' has no attribute {name!r}")
