"""Search and rerank as Model Context Protocol tools for agents, over stdio or streamable HTTP.

``reasonrank mcp``: the ``search`` and ``rerank`` tools of :mod:`reasonrank.serve.mcp_server` (docs/serving.md
shows an MCP client's configuration). Over stdio, stdout carries the protocol: everything else goes to stderr.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext

from reasonrank.errors import UserError, command
from reasonrank.pipeline import DEFAULT_RERANKER, embedded_collection
from reasonrank.retrieval.base import FIRST_STAGES, parse_first_stage

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="reasonrank mcp", description=__doc__.splitlines()[0])
    parser.add_argument("--index", help="Lucene index folder, Pyserini prebuilt name or corpus file/folder searched "
                        "by the search tool (default: the embedded DL19 mini collection)")
    parser.add_argument("--first-stage", default="bm25", metavar="{" + ",".join(FIRST_STAGES) + "}",
                        help="the search tool's first stage (default bm25)")
    parser.add_argument("--hits", type=int, default=100, help="first-stage candidates reranked per search (100)")
    parser.add_argument("--reranker", default=DEFAULT_RERANKER, help=f"registry name (default {DEFAULT_RERANKER})")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="reranker option")
    parser.add_argument("--explanations-depth", type=int, default=10,
                        help="evidence for the top K results of each call (default 10)")
    parser.add_argument("--no-evidence", action="store_true", help="no evidence spans (faster)")
    parser.add_argument("--transport", default="stdio", choices=["stdio", "streamable-http"],
                        help="stdio (an agent starts the server) or streamable HTTP at http://HOST:PORT/mcp")
    parser.add_argument("--host", default="127.0.0.1", help="streamable HTTP: bind address (loopback only)")
    parser.add_argument("--port", type=int, default=8765, help="streamable HTTP: port (8765)")
    return parser


def run(args: argparse.Namespace) -> int:
    from reasonrank.cli.search import parse_options
    from reasonrank.serve.mcp_server import SearchService, ServiceSettings, build_server

    if args.transport == "streamable-http" and args.host not in LOOPBACK:
        raise UserError(f"--host {args.host}: the MCP server listens on loopback only (127.0.0.1, localhost, ::1); "
                        "put an authenticating proxy in front of it to reach it from elsewhere")
    if min(args.hits, args.explanations_depth) < 1:
        raise UserError("--hits and --explanations-depth must be at least 1")
    if parse_first_stage(args.first_stage)[0] in ("run", "rank-llm"):
        raise UserError(f"--first-stage {args.first_stage}: a fixed candidate set cannot search new queries; use a "
                        "first stage over an index (bm25, dense, hybrid) and the rerank tool for your own documents")
    settings = ServiceSettings(
        index=args.index or str(embedded_collection().corpus), first_stage=args.first_stage,
        reranker=args.reranker, hits=args.hits, evidence=not args.no_evidence,
        explanations_depth=args.explanations_depth, options=parse_options(args.option),
    )
    # Over stdio the protocol owns stdout: what loading prints (the JVM, an index build) goes to stderr.
    with _stdout_to_stderr() if args.transport == "stdio" else nullcontext():
        service = SearchService(settings)
    try:
        server = build_server(service)
        print(f"reasonrank mcp: {settings.reranker} over {settings.index} ready ({args.transport})", file=sys.stderr)
        if args.transport == "stdio":
            server.run("stdio")
        else:
            server.run("streamable-http", host=args.host, port=args.port)
    finally:
        service.close()
    return 0


@contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


main = command(build_parser, run, on_interrupt="reasonrank mcp: stopped")

if __name__ == "__main__":
    sys.exit(main())
