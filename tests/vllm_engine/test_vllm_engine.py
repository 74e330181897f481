"""VLLMBackend on the real engine: greedy text and label log-probabilities against transformers on the same
weights, the pointwise, listwise and rank1 rerankers, answer tokens read from the engine's log-probabilities,
rank_llm 0.25.7's prompts against ours token for token, special tokens, and the search command end to end."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from reasonrank.backends.base import ChatPrompt, GenerationParams
from reasonrank.io.corpus import read_documents
from reasonrank.io.topics import load_topics
from reasonrank.rerank.registry import load_reranker
from reasonrank.types import Candidate, Query, Request

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
DL19 = ROOT / "reasonrank" / "data" / "msmarco-dl19-mini"


@pytest.fixture(scope="module")
def requests_dl19() -> list[Request]:
    """Two DL19 queries, each with 4 passages of the mini collection (their first judged documents)."""
    documents = {d.docid: d.contents for d in read_documents(DL19 / "corpus.jsonl")}
    judged: dict[str, list[str]] = {}
    for line in (DL19 / "qrels.dl19-passage.txt").read_text().splitlines():
        qid, _, docid, _ = line.split()
        if docid in documents:
            judged.setdefault(qid, []).append(docid)
    queries = [q for q in load_topics(str(DL19 / "topics.dl19-passage.tsv")) if len(judged.get(q.qid, [])) >= 4]
    return [
        Request(Query(q.qid, q.text), tuple(Candidate(d, documents[d]) for d in judged[q.qid][:4]))
        for q in queries[:2]
    ]


def chats(requests: list[Request]) -> list[ChatPrompt]:
    return [ChatPrompt.of(f"In one sentence: what is meant by '{r.query.text}'?") for r in requests] + [
        ChatPrompt.of(f"Summarise in five words: {c.text[:300]}") for r in requests for c in r.candidates[:1]
    ]


def test_greedy_generation_starts_like_transformers(engine, reference, requests_dl19):
    """Both in float32 (each backend's CPU default), the first tokens and their log-probabilities agree
    (benchmarks/vllm_agreement.py compares long greedy texts, in bfloat16 too)."""
    prompts = chats(requests_dl19)
    params = GenerationParams(max_new_tokens=6, top_logprobs=3)
    ours, theirs = engine.generate(prompts, params), reference.generate(prompts, params)
    assert len(ours) == len(prompts) == 4
    for a, b in zip(ours, theirs, strict=True):
        assert a.completion_tokens == len(a.tokens) >= 1
        assert a.tokens[0].token == b.tokens[0].token
        assert a.tokens[0].logprob == pytest.approx(b.tokens[0].logprob, abs=0.25)
        assert a.prompt_tokens == b.prompt_tokens


def test_top_k_reaches_the_engine(engine, requests_dl19):
    """top_k=1 sampling is greedy decoding: the engine got the filter (DeAR-L's reference samples with top_k 50)."""
    prompts = chats(requests_dl19)
    greedy = engine.generate(prompts, GenerationParams(max_new_tokens=8))
    sampled = engine.generate(prompts, GenerationParams(max_new_tokens=8, temperature=1.0, top_k=1, seed=3))
    assert [g.text for g in sampled] == [g.text for g in greedy]


def test_label_logprobs_match_transformers(engine, reference, requests_dl19):
    template_prompts = [
        ChatPrompt.of(f"Is this passage relevant to '{r.query.text}'? Answer 0, 1 or 2.\n{c.text[:400]}",
                      assistant_prefix="Relevance Label: ")
        for r in requests_dl19 for c in r.candidates[:2]
    ]
    options = ["0", "1", "2"]
    ours = engine.next_token_logprobs(template_prompts, options)
    theirs = reference.next_token_logprobs(template_prompts, options)
    for a, b in zip(ours, theirs, strict=True):
        assert all(math.isfinite(a[o]) for o in options)
        assert max(options, key=a.get) == max(options, key=b.get)
        for option in options:
            assert a[option] == pytest.approx(b[option], abs=0.3)


def test_pointwise_reranker_scores_from_label_logprobs(engine, requests_dl19):
    reranker = load_reranker("smollm2-pointwise", backend=engine, max_new_tokens=32)
    ranking = reranker.rerank_request(requests_dl19[0])
    assert sorted(item.candidate.docid for item in ranking.items) == sorted(
        c.docid for c in requests_dl19[0].candidates
    )
    assert all(0.0 <= item.score <= 2.0 for item in ranking.items)
    # Scores are expectations over the label tokens' probabilities, not parsed integers alone.
    assert any(item.score not in (0.0, 1.0, 2.0) for item in ranking.items) or ranking.stats.get("label_missing")


def test_listwise_window_through_vllm(engine, requests_dl19):
    reranker = load_reranker("smollm2-listwise", backend=engine, max_new_tokens=24, window_size=4, stride=2)
    rankings = reranker.rerank_many(requests_dl19)
    for request, ranking in zip(requests_dl19, rankings, strict=True):
        assert sorted(i.candidate.docid for i in ranking.items) == sorted(c.docid for c in request.candidates)
        assert ranking.stats["windows"] == 1


def test_rank1_forced_second_pass(engine, model_folder, requests_dl19):
    """Four new tokens never reach </think>: every candidate goes through rank1's forced second pass."""
    reranker = load_reranker(str(model_folder), family="rank1", backend=engine, max_new_tokens=4)
    ranking = reranker.rerank_request(requests_dl19[0])
    assert ranking.stats["reasoning_closed_by_force"] == len(requests_dl19[0].candidates)
    scores = [item.score for item in ranking.items]
    assert all(0.0 < s < 1.0 for s in scores) and len(set(scores)) > 1


def test_special_tokens_as_the_reference_tokenises(engine, reference):
    text = "Determine if the following passage is relevant to the query.\nQuery: bm25\nPassage: ranking\n<think>"
    plain, with_bos = ChatPrompt((), text), ChatPrompt((), text, add_special_tokens=True)
    ours = engine.generate([plain, with_bos], GenerationParams(max_new_tokens=1))
    expected = [len(reference.tokenizer(text, add_special_tokens=flag)["input_ids"]) for flag in (False, True)]
    assert [g.prompt_tokens for g in ours] == expected
    kept = engine.generate([ChatPrompt.of("Say hello.")], GenerationParams(max_new_tokens=8, skip_special_tokens=False))
    skipped = engine.generate([ChatPrompt.of("Say hello.")], GenerationParams(max_new_tokens=8))
    assert kept[0].text.replace("<|im_end|>", "") == skipped[0].text


def test_search_command_with_vllm_backend(model_folder, engine_settings, tmp_path, requests_dl19):
    engine_env, engine_options = engine_settings
    topics = tmp_path / "topics.tsv"
    topics.write_text("".join(f"{r.query.qid}\t{r.query.text}\n" for r in requests_dl19))
    run, explanations = tmp_path / "run.txt", tmp_path / "explanations.jsonl"
    options = [f"--option={k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in engine_options.items()]
    command = [
        sys.executable, "-m", "reasonrank.search", "--backend", "vllm", "--reranker", str(model_folder),
        "--reranker-family", "pointwise", "--option=template=pointwise/interank-v1", "--option=max_new_tokens=24",
        *options, "--topics", str(topics), "--hits", "3", "--rerank-depth", "2", "--output", str(run),
        "--explanations", str(explanations), "--quiet",
    ]
    env = {**os.environ, **engine_env, "VLLM_ENABLE_V1_MULTIPROCESSING": "0"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1500)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [line.split() for line in run.read_text().splitlines()]
    assert len(lines) == 3 * len(requests_dl19) and {line[5] for line in lines} == {model_folder.name}
    records = [json.loads(line) for line in explanations.read_text().splitlines()]
    assert len(records) == len(lines)
    reranked = [r for r in records if r["rank"] <= 2]
    # The reranked head carries the model's labels (read from its label tokens); the tail keeps BM25's order.
    assert any(r["label"] is not None for r in reranked)
    assert all(r["label"] is None and r["explanation"] is None for r in records if r["rank"] == 3)


def _rank_llm_compare():
    """benchmarks/rank_llm_compare.py: its rank_llm side is the one these tests hold against ours."""
    spec = importlib.util.spec_from_file_location("rank_llm_compare", ROOT / "benchmarks" / "rank_llm_compare.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_rank_llm_sends_rankzephyr_v2_token_for_token(engine, model_folder):
    """rank_llm 0.25.7's RankListwiseOSLLM (its handler, ``fix_text`` over each passage and the rendered chat, the
    string to vLLM) and our listwise reranker with ``listwise/rankzephyr-v2`` on one engine, over ten DL19-mini
    passages whose mojibake ftfy repairs: the engine receives the same token ids from both, and they are the
    repaired text's."""
    from ftfy import fix_text

    compare = _rank_llm_compare()
    texts = [d.contents for d in read_documents(DL19 / "corpus.jsonl") if fix_text(d.contents) != d.contents][:10]
    assert len(texts) == 10
    query = load_topics(str(DL19 / "topics.dl19-passage.tsv"))[0]
    request = Request(query, tuple(Candidate(f"d{i}", text, score=10.0 - i) for i, text in enumerate(texts)))
    compare.SharedEngine.engine = engine.llm
    theirs_reranker, theirs = compare.rank_llm_side(compare.import_rank_llm(), str(model_folder), 10, 5)
    ours = compare.ours_side(engine, 10, 10, 5, theirs_reranker.num_output_tokens(10))
    recorder = compare.Recorder(engine.llm)
    try:
        their_order, our_order = theirs([request]), ours([request])
    finally:
        recorder.close()
    assert [len(call) for call in recorder.calls] == [1, 1]  # one window each
    their_ids, our_ids = recorder.calls[0][0], recorder.calls[1][0]
    assert our_ids == their_ids
    text = engine.tokenizer.decode(our_ids)
    assert all(fix_text(t).split()[0] in text for t in texts) and "\u00e2\u0080" not in text
    assert their_order == our_order


def test_pointwise_label_read_at_the_digit_token(engine):
    """SmolLM2 answers "Relevance Label:" with a space token, then the digit: the score is the expected label under
    the alternatives vLLM returned for the digit's position, and the label is the digit written."""
    query = load_topics(str(DL19 / "topics.dl19-passage.tsv"))[0]
    passages = [d.contents for _, d in zip(range(6), read_documents(DL19 / "corpus.jsonl"), strict=False)]
    reranker = load_reranker(
        "smollm2-pointwise", backend=engine, template="pointwise/label-first-v1", max_new_tokens=4
    )
    prompts = [reranker.prompt(query.text, passage) for passage in passages]
    generations = engine.generate(prompts, reranker.params)
    read_after_a_space = 0
    for generation in generations:
        judgment, source = reranker.read(generation)
        written = [k for k, t in enumerate(generation.tokens) if t.token.strip()]
        first = generation.tokens[written[0]]
        if first.token.strip() not in reranker.labels:
            assert source == "label_missing" and judgment.label is None
            continue
        weights = [(int(text), math.exp(lp)) for text, lp in first.top.items() if text.strip() in reranker.labels]
        expected = sum(label * w for label, w in weights) / sum(w for _, w in weights)
        assert source == "label_from_logprobs" and judgment.label == int(first.token.strip())
        assert judgment.score == pytest.approx(expected, abs=1e-9)
        read_after_a_space += written[0] > 0
    assert read_after_a_space >= 2


def test_pointwise_forced_label_after_length_on_the_engine(engine, requests_dl19):
    """Four new tokens cut every InteRank explanation before its label: each candidate gets the forced second pass
    (the marker written after the cut text, the label read from the engine's next-token distribution)."""
    reranker = load_reranker("smollm2-pointwise", backend=engine, max_new_tokens=4)
    ranking = reranker.rerank_request(requests_dl19[0])
    assert ranking.stats["label_forced_after_length"] == len(requests_dl19[0].candidates)
    scores = [item.score for item in ranking.items]
    assert all(0.0 < s < 2.0 for s in scores) and len(set(scores)) > 1


# --- generations as they finish: every prompt queued at once, each result read the step it finishes ---------------


def test_generate_as_completed_queues_every_prompt_first_and_returns_what_generate_returns(engine, requests_dl19,
                                                                                            monkeypatch):
    prompts = [*chats(requests_dl19), ChatPrompt.of("Say yes."), ChatPrompt.of("Count from one to twenty.")]
    params = GenerationParams(max_new_tokens=16, top_logprobs=2, stop=(".",))  # answers of different lengths
    llm = engine.llm
    generate = llm.generate
    generated_ids: list[list[int]] = []

    def kept_generate(*args, **kwargs):
        outputs = generate(*args, **kwargs)
        generated_ids.extend(list(o.outputs[0].token_ids) for o in outputs)
        return outputs

    monkeypatch.setattr(llm, "generate", kept_generate)
    expected = engine.generate(prompts, params)
    monkeypatch.undo()

    added, finished_ids = [], []
    add_request, step = llm.llm_engine.add_request, llm.llm_engine.step

    def counted_add(*args, **kwargs):
        added.append(args[0])
        return add_request(*args, **kwargs)

    def kept_step():
        outputs = step()
        finished_ids.extend(list(o.outputs[0].token_ids) for o in outputs if o.finished)
        return outputs

    monkeypatch.setattr(llm.llm_engine, "add_request", counted_add)
    monkeypatch.setattr(llm.llm_engine, "step", kept_step)
    arrived, running_at_first = {}, None
    for index, generation in engine.generate_as_completed(prompts, params):
        assert len(added) == len(prompts)  # all queued before the first result is read
        if running_at_first is None:
            running_at_first = llm.llm_engine.get_num_unfinished_requests()
        arrived[index] = generation
    assert running_at_first > 0  # the first result came while others were still generating
    assert sorted(arrived) == list(range(len(prompts)))
    assert [arrived[i] for i in range(len(prompts))] == expected  # text, tokens, log-probabilities, counts
    order = list(arrived)
    assert [finished_ids[order.index(i)] for i in range(len(prompts))] == generated_ids


def test_generate_as_completed_aborts_what_the_caller_stops_reading(engine, requests_dl19):
    prompts = chats(requests_dl19)
    results = engine.generate_as_completed(prompts, GenerationParams(max_new_tokens=16, stop=(".",)))
    next(results)
    assert engine.llm.llm_engine.get_num_unfinished_requests() > 0
    results.close()
    assert not engine.llm.llm_engine.has_unfinished_requests()
    assert len(engine.generate(prompts[:1], GenerationParams(max_new_tokens=2))) == 1


def test_listwise_teacher_run_is_one_engine_call(engine, requests_dl19, tmp_path, monkeypatch):
    """Two queries, four candidates, windows of 2 by 1: six windows, queued in one ``enqueue`` and no ``generate``."""
    import reasonrank.train.teacher as teacher
    from reasonrank.rerank.generation import LazyBackend

    run = tmp_path / "run.txt"
    run.write_text("".join(f"{r.query.qid} Q0 {c.docid} {rank} {10 - rank} bm25\n"
                           for r in requests_dl19 for rank, c in enumerate(r.candidates, 1)))
    topics = tmp_path / "topics.tsv"
    topics.write_text("".join(f"{r.query.qid}\t{r.query.text}\n" for r in requests_dl19))
    calls: list[tuple[str, int]] = []
    llm = engine.llm
    enqueue, generate = llm.enqueue, llm.generate

    def counted(name, method):
        def call(prompts, *args, **kwargs):
            calls.append((name, len(prompts)))
            return method(prompts, *args, **kwargs)
        return call

    monkeypatch.setattr(llm, "enqueue", counted("enqueue", enqueue))
    monkeypatch.setattr(llm, "generate", counted("generate", generate))
    monkeypatch.setattr(teacher, "_backend", lambda config: LazyBackend(engine, "smollm2", {}))
    output = tmp_path / "windows.jsonl"
    written = teacher.generate_teacher_data(teacher.TeacherConfig(
        mode="listwise", topics=str(topics), corpus=str(DL19 / "corpus.jsonl"), candidates=str(run),
        output=str(output), hits=4, model="smollm2", window=2, stride=1, max_new_tokens=16,
    ))
    assert calls == [("enqueue", 6)]
    records = [json.loads(line) for line in output.read_text().splitlines()] if output.exists() else []
    assert written == len(records) <= 6
    assert len({(r["qid"], r["start"]) for r in records}) == len(records)


# --- answers written with decoration: the verdict and the label read at the digit, not at "[" or "**" ---------

# A worked turn before the reranker's own prompt: its answer carries the decoration, and SmolLM2 copies its form.
BRACKETED_EXAMPLE = (
    {"role": "user", "content": "Which passage is more relevant to the query? Answer 'More Relevant Passage: [1]' or "
     "'More Relevant Passage: [2]' only.\nQuery: what is a cat\nPassage 1: Dogs bark.\nPassage 2: The cat is a small "
     "domesticated carnivorous mammal."},
    {"role": "assistant", "content": "More Relevant Passage: [2]"},
)
BOLD_EXAMPLE = (
    {"role": "user", "content": "Judge whether the document is relevant to the question. Answer with 'Relevance "
     "Label: **0**', 'Relevance Label: **1**' or 'Relevance Label: **2**' only.\nQuestion: what is a cat\nDocument: "
     "The cat is a small domesticated carnivorous mammal."},
    {"role": "assistant", "content": "Relevance Label: **2**"},
)


def _after(example: tuple[dict[str, str], ...], prompt: ChatPrompt) -> ChatPrompt:
    return ChatPrompt((*example, *prompt.messages), prompt.assistant_prefix, prompt.add_special_tokens)


def _decorated_digit(tokens, decoration: str, options) -> int | None:
    """The index of the option token written right after the decoration token (``" ["``, ``" **"``), if any."""
    for k, token in enumerate(tokens[:-1]):
        if token.token.strip() == decoration and tokens[k + 1].token in options:
            return k + 1
    return None


def _by_hand(token, options) -> dict[str, float]:
    """The options' probabilities among ``token``'s alternatives as vLLM returned them, renormalised."""
    weights = {o: sum(math.exp(lp) for text, lp in token.top.items() if text.strip(" [*") == o) for o in options}
    total = sum(weights.values())
    return {o: w / total for o, w in weights.items()} if total > 0 else {}


def _dl19_texts(queries: int, passages: int) -> tuple[list[str], list[str]]:
    topics = load_topics(str(DL19 / "topics.dl19-passage.tsv"))[:queries]
    documents = read_documents(DL19 / "corpus.jsonl")
    return [q.text for q in topics], [d.contents for _, d in zip(range(passages), documents, strict=False)]


def test_pairwise_verdict_read_at_the_digit_after_a_bracket(engine):
    """SmolLM2 writes "More Relevant Passage: [1]" as " [", "1", "]": the preference is p(1) renormalised over the
    verdicts at the digit's position. For some pairs the " [" position's alternatives hold "1" at ~1e-3 (and no
    "2"); renormalised there, they would give p(1) = 1 whatever the digit's distribution says."""
    from reasonrank.prompts.readers import answer_token, option_distribution
    from reasonrank.rerank.pairwise import VERDICTS

    queries, passages = _dl19_texts(2, 6)
    reranker = load_reranker("smollm2-pairwise", backend=engine, max_new_tokens=8, top_logprobs=20)
    pairs = [(a, b) for a in range(len(passages)) for b in range(len(passages)) if a < b][:8]
    prompts = [_after(BRACKETED_EXAMPLE, reranker.prompt(query, passages[a], passages[b]))
               for query in queries for a, b in pairs]
    bracketed = decoration_differs = 0
    for generation in engine.generate(prompts, reranker.params):
        digit = _decorated_digit(generation.tokens, "[", VERDICTS)
        if digit is None:  # the verdict written without brackets
            continue
        bracketed += 1
        assert answer_token(generation.tokens, reranker.marker, VERDICTS) is generation.tokens[digit]
        expected = _by_hand(generation.tokens[digit], VERDICTS)["1"]
        assert reranker.preference(generation) == pytest.approx(expected, abs=1e-12)
        assert 0.0 < expected < 1.0  # both verdicts are among the digit's alternatives
        at_bracket = option_distribution(generation.tokens[digit - 1], VERDICTS)
        if at_bracket is not None:
            decoration_differs += 1
            assert abs(at_bracket["1"] - expected) > 0.05
    assert bracketed >= 8
    assert decoration_differs >= 3


def test_pointwise_label_read_at_the_digit_after_bold(engine):
    """SmolLM2 writes "Relevance Label: **2**" as " **", "2", "**": the score is the expected label under the label
    alternatives at the digit's position and the label is the digit written. Where the " **" position's
    alternatives hold no label (SmolLM2 spells " 2" as a space token then "2", so a label right after the colon
    needs the rare unspaced "2"), reading there gives no distribution and the score would fall back to the written
    integer."""
    from reasonrank.prompts.readers import answer_token, option_distribution

    queries, passages = _dl19_texts(1, 6)
    reranker = load_reranker("smollm2-pointwise", backend=engine, max_new_tokens=8, top_logprobs=20)
    prompts = [_after(BOLD_EXAMPLE, reranker.prompt(queries[0], passage)) for passage in passages]
    bold = 0
    for generation in engine.generate(prompts, reranker.params):
        digit = _decorated_digit(generation.tokens, "**", reranker.labels)
        if digit is None:
            continue
        bold += 1
        token = generation.tokens[digit]
        assert answer_token(generation.tokens, reranker.marker, reranker.labels) is token
        judgment, source = reranker.read(generation)
        expected = sum(int(label) * p for label, p in _by_hand(token, reranker.labels).items())
        assert source == "label_from_logprobs" and judgment.label == int(token.token)
        assert judgment.score == pytest.approx(expected, abs=1e-12)
        at_bold = option_distribution(generation.tokens[digit - 1], reranker.labels)
        if at_bold is None:
            assert judgment.score != float(judgment.label)  # the fallback would have given the integer
        else:
            assert abs(sum(int(label) * p for label, p in at_bold.items()) - expected) > 0.05
    assert bold >= 4
