"""Evidence against human rationales: SciFact's annotated sentences vs each method's top-1 / top-2 sentences.

For every (claim, abstract) pair of ``rationales.train.jsonl``, the passage is the text a reranker reads (title +
abstract, as ``documents.text_from_raw`` joins them), split into sentences by
``reasonrank.rerank.evidence.sentence_spans``; each method picks its best one or two sentences. A picked sentence
is correct when at least half of its characters lie in rationale sentences; a rationale sentence is found when
at least half of its characters lie in picked sentences (the splitter reproduces 97.9 % of SciFact's own
rationale sentences exactly; the half rule absorbs the rest, e.g. a title glued to the first sentence).
Micro-averaged precision, recall and F1 over pairs; for each model, a paired randomisation test (SciPy) of its
correct picks per pair against the lexical and the BM25-sentence baselines.

Baselines: the first sentence(s); the most claim terms (Lucene's English analyzer, as BM25 indexes them;
ties to the earlier sentence); BM25 of the sentence (``Bm25TextScorer``: Lucene's BM25 with the SciFact index's
statistics, what the default's first stage contributes to its evidence); random (mean of 20 seeds).

    .venv/bin/python benchmarks/rationales.py [--claims even|odd|all] \
        [--models minilm-bi,minilm-hybrid,fusion=runs/held-out/minilm-scifact-bi-odd --methods sentence,window]

A model is a registry name or folder, or FAMILY=MODEL (``fusion=FOLDER``: the student fused with BM25 as
``minilm-hybrid`` fuses the zero-shot bi-encoder). Each model's evidence scorer scores the sentences: for a fusion,
the same fusion of its encoder's and BM25's sentence scores (``reasonrank.rerank.fusion``).

Claims: SciFact publishes rationales only for train claims. Students trained for this benchmark see only train
claims with an odd id (docs/training.md §5c); ``--claims even`` (the default) scores the claims none of them saw.
The zero-shot ``minilm-bi`` never saw SciFact. The shipped ``minilm-scifact-bi`` was distilled on all 505 train
claims (passage-level qrels, not sentences), so its row is flagged.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DATA = Path(os.environ.get("REASONRANK_SHARED_DATA", ROOT.parent / "shared" / "data")) / "scifact"

from reasonrank.rerank.evidence import METHODS, Evidence, EvidenceFinder, best, sentence_spans  # noqa: E402
from reasonrank.rerank.fusion import ScoreFusion  # noqa: E402
from reasonrank.retrieval.base import TextScorer  # noqa: E402
from reasonrank.retrieval.bm25 import Bm25FirstStage  # noqa: E402
from reasonrank.retrieval.documents import text_from_raw  # noqa: E402
from reasonrank.types import Candidate, Query  # noqa: E402

Span = tuple[int, int]


@dataclass(frozen=True, slots=True)
class Pair:
    query: Query
    passage: Candidate
    sentences: list[Span]
    gold: list[Span]


def load_pairs(claims_kept: str = "all") -> list[Pair]:
    """The annotated pairs, sorted; ``claims_kept`` = even / odd keeps the claims with an even / odd id."""
    claims = dict(line.split("\t", 1) for line in (DATA / "topics.train.tsv").read_text().splitlines() if line)
    corpus = {}
    with (DATA / "corpus.jsonl").open(encoding="utf-8") as lines:
        for line in lines:
            record = json.loads(line)
            corpus[record["_id"]] = (record, text_from_raw(line))
    rationales: dict[tuple[str, str], set[str]] = {}
    with (DATA / "rationales.train.jsonl").open(encoding="utf-8") as lines:
        for line in lines:
            record = json.loads(line)
            rationales.setdefault((record["qid"], record["docid"]), set()).update(record["rationale"])
    pairs = []
    for (qid, docid), sentences in sorted(rationales.items()):
        if claims_kept != "all" and int(qid) % 2 != (claims_kept == "odd"):
            continue
        record, text = corpus[docid]
        abstract_at = text.index(record["text"].strip())  # the abstract follows the title in the passage
        gold = []
        for sentence in sorted(sentences):
            sentence = sentence.strip()
            at = record["text"].strip().index(sentence) + abstract_at
            gold.append((at, at + len(sentence)))
        pairs.append(Pair(Query(qid, claims[qid]), Candidate(docid, text), sentence_spans(text), sorted(gold)))
    return pairs


def covered(span: Span, others: Sequence[Span]) -> bool:
    """Whether at least half of ``span``'s characters lie in ``others``."""
    inside = sum(max(0, min(span[1], b) - max(span[0], a)) for a, b in others)
    return 2 * inside >= span[1] - span[0]


@dataclass
class Score:
    correct: int = 0
    picked: int = 0
    found: int = 0
    gold: int = 0

    def add(self, picked: Sequence[Span], gold: Sequence[Span]) -> None:
        self.correct += sum(covered(span, gold) for span in picked)
        self.picked += len(picked)
        self.found += sum(covered(span, picked) for span in gold)
        self.gold += len(gold)

    def prf(self) -> tuple[float, float, float]:
        precision = self.correct / self.picked if self.picked else 0.0
        recall = self.found / self.gold if self.gold else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        return precision, recall, f1


Picker = Callable[[Pair, int], list[Span]]  # the ``n`` best sentences of a pair


def evaluate(pairs: Sequence[Pair], pick: Picker, n: int) -> tuple[float, float, float]:
    score = Score()
    for pair in pairs:
        score.add(pick(pair, n), pair.gold)
    return score.prf()


def correct_picks(pairs: Sequence[Pair], pick: Picker, n: int) -> list[int]:
    """Per pair, how many of the ``n`` picked sentences are rationale sentences (for the paired test)."""
    return [sum(covered(span, pair.gold) for span in pick(pair, n)) for pair in pairs]


def paired_p(ours: Sequence[int], theirs: Sequence[int]) -> float:
    """Two-sided paired randomisation test (SciPy; the sign of each pair's difference flipped at random) on the mean
    difference in correct picks per pair: how often chance alone gives a difference as large."""
    from scipy.stats import permutation_test

    def mean_difference(first, second, axis):
        return (first - second).mean(axis=axis)

    result = permutation_test((list(ours), list(theirs)), mean_difference, permutation_type="samples",
                              vectorized=True, n_resamples=9999, alternative="two-sided", random_state=0)
    return float(result.pvalue)


def lexical_picker() -> Picker:
    from reasonrank.retrieval.java import configure_jvm

    configure_jvm()
    from pyserini.analysis import Analyzer, get_lucene_analyzer

    analyzer = Analyzer(get_lucene_analyzer())

    def pick(pair: Pair, n: int) -> list[Span]:
        claim = set(analyzer.analyze(pair.query.text))
        scored = [
            Evidence(a, b, len(claim & set(analyzer.analyze(pair.passage.text[a:b])))) for a, b in pair.sentences
        ]
        return [(e.start, e.end) for e in best(scored, n)]

    return pick


def bm25_picker(scorer: TextScorer) -> Picker:
    def pick(pair: Pair, n: int) -> list[Span]:
        texts = [pair.passage.text[a:b] for a, b in pair.sentences]
        scored = [Evidence(a, b, score) for (a, b), score in
                  zip(pair.sentences, scorer.score(pair.query.text, texts), strict=True)]
        return [(e.start, e.end) for e in best(scored, n)]

    return pick


def first_picker(pair: Pair, n: int) -> list[Span]:
    return pair.sentences[:n]


def random_score(pairs: Sequence[Pair], n: int, seeds: int = 20) -> tuple[float, float, float]:
    runs = []
    for seed in range(seeds):
        sample = random.Random(seed).sample
        runs.append(evaluate(pairs, lambda pair, k, pick=sample: pick(pair.sentences, min(k, len(pair.sentences))), n))
    return tuple(sum(values) / seeds for values in zip(*runs, strict=True))  # type: ignore[return-value]


def model_picker(finder: EvidenceFinder, pairs: Sequence[Pair]) -> tuple[Picker, float]:
    """Scores every pair's sentences once (timed), then picks from the cache."""
    started = time.perf_counter()
    scored = {id(pair): finder.score(pair.query, [pair.passage])[0] for pair in pairs}
    elapsed = time.perf_counter() - started

    def pick(pair: Pair, n: int) -> list[Span]:
        return [(e.start, e.end) for e in best(scored[id(pair)], n)]

    return pick, elapsed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="minilm-bi,minilm-hybrid",
                        help="registry names, folders or FAMILY=MODEL, comma-separated")
    parser.add_argument("--methods", default="sentence", help=f"evidence methods ({', '.join(METHODS)})")
    parser.add_argument("--claims", choices=("even", "odd", "all"), default="even",
                        help="train claims with an even id (held out from the odd-id students), odd, or all")
    parser.add_argument("--weights", default="", help="also fusions' evidence at these weights (comma-separated)")
    parser.add_argument("--every", type=int, default=1, help="every N-th pair only (a quick look)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a shared CPU)")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)

    from reasonrank.rerank.registry import load_reranker

    pairs = load_pairs(args.claims)[:: args.every]
    claims = len({pair.query.qid for pair in pairs})
    sentences = sum(len(pair.sentences) for pair in pairs)
    gold = sum(len(pair.gold) for pair in pairs)
    print(f"{len(pairs)} (claim, abstract) pairs of {claims} SciFact train claims ({args.claims} ids); "
          f"{sentences} sentences, {gold} rationale sentences\n")
    first_stage = Bm25FirstStage(str(DATA / "corpus.jsonl"))
    bm25 = first_stage.text_scorer()
    first_stage.close()
    rows: list[tuple[str, tuple[float, float, float], tuple[float, float, float], str, str, str]] = []
    baselines: dict[str, tuple[list[int], list[int]]] = {}  # correct picks @1, @2 per pair
    for name, pick in (("first sentence", first_picker), ("most claim terms (lexical)", lexical_picker()),
                       ("BM25 of the sentence (SciFact index statistics)", bm25_picker(bm25))):
        rows.append((name, evaluate(pairs, pick, 1), evaluate(pairs, pick, 2), "", "", ""))
        baselines[name] = (correct_picks(pairs, pick, 1), correct_picks(pairs, pick, 2))
    rows.append(("random (mean of 20 seeds)", random_score(pairs, 1), random_score(pairs, 2), "", "", ""))
    lexical, sentence_bm25 = baselines["most claim terms (lexical)"], baselines[rows[2][0]]
    for model in filter(None, args.models.split(",")):
        family, _, name = model.rpartition("=")
        label = f"{model} (trained on these claims)" if model == "minilm-scifact-bi" else model
        reranker = load_reranker(name, family=family or None, progress=False)
        own = reranker.evidence_scorer(bm25)
        # --weights: the same fusion reweighted, to see how far its own weight is from the best one for rationales
        reweighted = [ScoreFusion(own.inner, float(w), bm25) for w in args.weights.split(",") if w] \
            if isinstance(own, ScoreFusion) else []
        for method, scorer in itertools.product(args.methods.split(","), [own, *reweighted]):
            pick, elapsed = model_picker(EvidenceFinder(scorer, method), pairs)
            correct = correct_picks(pairs, pick, 1), correct_picks(pairs, pick, 2)
            tests = [" / ".join(f"{paired_p(ours, theirs):.3f}" for ours, theirs in zip(correct, other, strict=True))
                     for other in (lexical, sentence_bm25)]
            rows.append((f"{label} · {method} · {scorer.name}", evaluate(pairs, pick, 1), evaluate(pairs, pick, 2),
                         f"{1000 * elapsed / len(pairs):.0f}", *tests))
        reranker.close()
    bm25.close()

    print("| method | P@1 | R@1 | F1@1 | P@2 | R@2 | F1@2 | ms/passage | p vs lexical @1 / @2 | p vs BM25 @1 / @2 |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, top1, top2, cost, versus_lexical, versus_bm25 in rows:
        cells = " | ".join(f"{value:.3f}" for value in (*top1, *top2))
        print(f"| {name} | {cells} | {cost} | {versus_lexical} | {versus_bm25} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
