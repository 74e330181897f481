"""The Cohere-compatible rerank API, called by real clients (the cohere SDK, LangChain's CohereRerank) against a real
service process, and fuzzed by schemathesis against the OpenAPI document that service serves."""

from __future__ import annotations

import json

import cohere
import httpx
import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from langchain_cohere import CohereRerank
from langchain_core.documents import Document
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from reasonrank.rerank.base import ScoringReranker
from reasonrank.serve.app import create_app, running_service
from reasonrank.types import Judgment

pytestmark = pytest.mark.slow  # one real service process (minilm-bi) for the module

MAX_CANDIDATES = 12


@pytest.fixture(scope="module")
def dl19(test_data) -> tuple[list[tuple[str, str]], list[str]]:
    folder = test_data / "msmarco-dl19-mini"
    topics = [tuple(line.split("\t", 1)) for line in (folder / "topics.dl19-passage.tsv").read_text().splitlines()]
    with (folder / "corpus.jsonl").open() as lines:
        passages = [json.loads(line) for line, _ in zip(lines, range(40), strict=False)]
    return topics, [f"{p['title']} {p['text']}".strip() for p in passages]


@pytest.fixture(scope="module")
def service() -> str:
    with running_service(
        "minilm-bi", "--max-candidates", str(MAX_CANDIDATES), "--max-request-bytes", "4000000", "--max-wait-ms", "2"
    ) as url:
        yield url


def own_ranking(url: str, query: str, texts: list[str]) -> list[tuple[int, float]]:
    """The same documents through reasonrank's own /rerank, docid = position."""
    body = {"query": query, "candidates": [{"docid": str(i), "text": t} for i, t in enumerate(texts)]}
    answer = httpx.post(f"{url}/rerank", json=body, timeout=120)
    assert answer.status_code == 200
    return [(int(r["docid"]), r["score"]) for r in answer.json()["ranking"]]


def test_cohere_sdk_v1_client(service, dl19):
    topics, texts = dl19
    query = topics[0][1]
    client = cohere.Client(base_url=service, api_key="not-needed", timeout=120)
    answer = client.rerank(model="minilm-bi", query=query, documents=texts[:10], top_n=4, return_documents=True)
    expected = own_ranking(service, query, texts[:10])
    assert [(r.index, r.relevance_score) for r in answer.results] == expected[:4]
    assert [r.document.text for r in answer.results] == [texts[i] for i, _ in expected[:4]]
    assert answer.id and answer.meta.api_version.version == "1" and answer.meta.billed_units.search_units == 1

    # Structured documents (dicts with text, as v1 allows) rank like the same strings.
    structured = client.rerank(model="minilm-bi", query=query, documents=[{"text": t} for t in texts[:10]])
    assert [(r.index, r.relevance_score) for r in structured.results] == expected
    assert all(r.document is None for r in structured.results)  # return_documents defaults to false


def test_cohere_sdk_v2_client_with_truncation_and_explanations_opt_in(service, dl19):
    topics, texts = dl19
    query = topics[1][1]
    client = cohere.ClientV2(base_url=service, api_key="not-needed", timeout=120)
    answer = client.rerank(model="minilm-bi", query=query, documents=texts[:8], max_tokens_per_doc=12)
    cut = [" ".join(t.split()[:12]) for t in texts[:8]]
    assert [(r.index, r.relevance_score) for r in answer.results] == own_ranking(service, query, cut)
    assert answer.meta.api_version.version == "2"
    assert answer.meta.warnings == ["8 document(s) cut to max_tokens_per_doc=12 tokens"]

    opted_in = client.rerank(
        model="minilm-bi", query=query, documents=texts[:3],
        request_options={"additional_body_parameters": {"return_explanations": True}},
    )
    assert len(opted_in.results) == 3  # minilm-bi writes no explanations: the fields stay absent


def test_wrong_model_and_too_many_documents_are_clear_errors(service, dl19):
    topics, texts = dl19
    client = cohere.ClientV2(base_url=service, api_key="not-needed", timeout=120)
    with pytest.raises(cohere.core.api_error.ApiError) as wrong:
        client.rerank(model="rerank-v3.5", query=topics[0][1], documents=texts[:2])
    assert wrong.value.status_code == 404 and "serves 'minilm-bi'" in wrong.value.body["error"]
    with pytest.raises(cohere.core.api_error.ApiError) as many:
        client.rerank(model="minilm-bi", query=topics[0][1], documents=texts[: MAX_CANDIDATES + 1])
    assert many.value.status_code == 422 and f"at most {MAX_CANDIDATES} allowed" in many.value.body["error"]


def test_langchain_cohere_rerank(service, dl19):
    topics, texts = dl19
    query = topics[2][1]
    documents = [Document(page_content=t, metadata={"position": i}) for i, t in enumerate(texts[:9])]
    reranker = CohereRerank(
        client=cohere.ClientV2(base_url=service, api_key="not-needed", timeout=120), model="minilm-bi", top_n=3
    )
    kept = reranker.compress_documents(documents, query)
    expected = own_ranking(service, query, texts[:9])[:3]
    assert [(d.metadata["position"], d.metadata["relevance_score"]) for d in kept] == expected


def test_explanations_and_labels_reach_the_cohere_client(dl19):
    """A reranker that writes explanations: they come back only when asked for, readable from the SDK's results."""

    class Explaining(ScoringReranker):
        name = "explaining"

        def judge(self, requests):
            return [
                [Judgment(float(len(c.text)), f"{len(c.text)} characters", 2 if len(c.text) > 300 else 0)
                 for c in r.candidates]
                for r in requests
            ]

    topics, texts = dl19
    in_process = TestClient(create_app(Explaining()))
    client = cohere.ClientV2(base_url="http://testserver", api_key="x", httpx_client=in_process)
    plain = client.rerank(model="explaining", query=topics[0][1], documents=texts[:5])
    assert all(getattr(r, "explanation", None) is None for r in plain.results)
    rich = client.rerank(
        model="explaining", query=topics[0][1], documents=texts[:5],
        request_options={"additional_body_parameters": {"return_explanations": True}},
    )
    lengths = sorted((len(t) for t in texts[:5]), reverse=True)
    assert [r.explanation for r in rich.results] == [f"{n} characters" for n in lengths]
    assert [r.label for r in rich.results] == [2 if n > 300 else 0 for n in lengths]


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_served_openapi_holds_under_fuzzing(service, mode):
    """Every operation of the served schema, with requests valid (positive) or not (negative) against it: never a
    5xx, never a hang, every answer valid against the schema (documented status, matching body)."""
    served = httpx.get(f"{service}/openapi.json").json()["components"]["schemas"]
    assert served["CohereRerankIn"]["properties"]["documents"]["maxItems"] == MAX_CANDIDATES  # the service's limit
    schema = schemathesis.openapi.from_url(f"{service}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {o.path for o in operations} == {"/health", "/rerank", "/v1/rerank", "/v2/rerank"}
    for operation in operations:
        if mode is GenerationMode.NEGATIVE and operation.method.upper() == "GET":
            continue  # /health takes no input: nothing to make invalid
        # /rerank refuses duplicate docids (422), a rule JSON Schema cannot state: there, schema-valid requests may
        # be refused; every other check still applies.
        fuzz(operation, mode, [positive_data_acceptance] if operation.path == "/rerank" else [])


def fuzz(operation, mode: GenerationMode, excluded: list) -> None:
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=10, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    def holds(case):
        case.call_and_validate(timeout=60, excluded_checks=excluded)

    holds()
