"""``reasonrank mcp`` through the mcp SDK's own client, over stdio and streamable HTTP on loopback: search over the
DL19 mini index agrees with the search pipeline, rerank ranks the caller's documents, bad input is one error result
and the server answers the next call."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from reasonrank.pipeline import SearchSettings, embedded_collection, run_search
from reasonrank.retrieval.index import ensure_index
from reasonrank.serve.app import free_port

HITS = 20
TIMEOUT = 120.0
QID, QUERY = "19335", "anthropological definition of environment"
ROOT = Path(__file__).resolve().parents[2]


def server_args(index: Path) -> list[str]:
    return ["-m", "reasonrank", "mcp", "--index", str(index), "--reranker", "minilm-bi", "--hits", str(HITS)]


def child_env() -> dict[str, str]:
    return {key: os.environ[key] for key in ("PYTHONPATH", "REASONRANK_CACHE", "PATH", "JAVA_HOME")
            if key in os.environ} | {"HF_HUB_OFFLINE": "1"}


def pipeline_top(tmp_path: Path, index: Path) -> list[str]:
    topics = tmp_path / "topic.tsv"
    topics.write_text(f"{QID}\t{QUERY}\n")
    result = run_search(SearchSettings(index=str(index), topics=str(topics), hits=HITS, reranker="minilm-bi",
                                       rerank_depth=HITS, evidence=False, output=str(tmp_path / "run.txt"),
                                       progress=False))
    return result.final[0].docids[:5]


async def exercise(client: Client) -> dict:
    """search, rerank, three bad calls, then search again; the answers by name."""
    tools = {tool.name for tool in (await client.list_tools()).tools}
    found = await client.call_tool("search", {"query": QUERY, "top_k": 5})
    documents = [{"docid": "tide", "text": "Tides are the rise and fall of sea levels caused by the moon."},
                 {"docid": "env", "text": "In anthropology, environment is the surroundings a culture adapts to."}]
    reranked = await client.call_tool("rerank", {"query": QUERY, "documents": documents})
    bad = [await client.call_tool("search", {"query": "  "}),
           await client.call_tool("search", {"query": QUERY, "top_k": 0}),
           await client.call_tool("rerank", {"query": QUERY, "documents": documents + documents[:1]})]
    again = await client.call_tool("search", {"query": QUERY, "top_k": 5})
    return {"tools": tools, "search": found, "rerank": reranked, "bad": bad, "again": again}


def check(answers: dict, expected_top: list[str]) -> None:
    assert answers["tools"] >= {"search", "rerank"}
    found = answers["search"]
    assert not found.is_error
    results = found.structured_content["results"]
    assert [r["docid"] for r in results] == expected_top
    assert [r["rank"] for r in results] == [1, 2, 3, 4, 5]
    for result in results:
        spans = result["evidence"]
        assert spans and all(result["text"][s["start"]:s["end"]].strip() for s in spans)  # offsets into the passage
    ranked = answers["rerank"].structured_content["results"]
    assert [r["docid"] for r in ranked] == ["env", "tide"]
    messages = [" ".join(part.text for part in result.content) for result in answers["bad"]]
    assert all(result.is_error for result in answers["bad"])
    assert "query is empty" in messages[0] and "top_k must be between 1 and" in messages[1]
    assert "duplicate docids" in messages[2]
    assert not answers["again"].is_error
    assert answers["again"].structured_content == found.structured_content


def test_stdio_server_searches_and_reranks(tmp_path):
    index = ensure_index(embedded_collection().corpus)
    expected = pipeline_top(tmp_path, index)
    parameters = StdioServerParameters(command=sys.executable, args=server_args(index), env=child_env(), cwd=ROOT)

    async def session() -> dict:
        async with Client(parameters, read_timeout_seconds=TIMEOUT) as client:
            return await exercise(client)

    check(asyncio.run(asyncio.wait_for(session(), TIMEOUT * 2)), expected)


def test_streamable_http_server_on_loopback(tmp_path):
    index = ensure_index(embedded_collection().corpus)
    expected = pipeline_top(tmp_path, index)
    port = free_port()
    url = f"http://127.0.0.1:{port}/mcp"
    log = (tmp_path / "server.log").open("w")
    child = subprocess.Popen([sys.executable, *server_args(index), "--transport", "streamable-http", "--port",
                              str(port)], env=child_env(), cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + TIMEOUT
        while True:
            assert child.poll() is None and time.monotonic() < deadline, (tmp_path / "server.log").read_text()[-2000:]
            try:
                httpx.get(url, timeout=2.0)
                break
            except httpx.TransportError:
                time.sleep(0.5)

        async def session() -> dict:
            async with Client(url, read_timeout_seconds=TIMEOUT) as client:
                return await exercise(client)

        check(asyncio.run(asyncio.wait_for(session(), TIMEOUT * 2)), expected)
    finally:
        child.terminate()
        child.wait(timeout=30)
        log.close()


def test_bad_command_lines_are_one_error_line(capsys):
    from reasonrank.cli.mcp import main

    for args, message in [(["--transport", "streamable-http", "--host", "0.0.0.0"], "listens on loopback only"),
                          (["--first-stage", "run:runs/x.txt"], "a fixed candidate set cannot search"),
                          (["--hits", "0"], "must be at least 1")]:
        assert main(args) == 2
        error = capsys.readouterr().err.strip().splitlines()
        assert len(error) == 1 and error[0].startswith("error:") and message in error[0]
