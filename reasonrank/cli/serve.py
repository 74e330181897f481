"""One reranker behind HTTP, for Anserini (Java) and other non-Python callers.

``python -m reasonrank.serve``.

The command around :mod:`reasonrank.serve.app`.
"""

from __future__ import annotations

import argparse
import sys

from reasonrank.errors import UserError, command
from reasonrank.io.paths import check_paths
from reasonrank.serve.app import (
    DEFAULT_MAX_CANDIDATES,
    DEFAULT_MAX_REQUEST_BYTES,
    ServiceLimits,
    create_app,
    write_openapi,
)
from reasonrank.serve.batching import (
    DEFAULT_MAX_BATCH_CANDIDATES,
    DEFAULT_MAX_BATCH_SIZE,
    DEFAULT_MAX_WAIT_MS,
    Batching,
    batch_size_for,
)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _non_negative(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m reasonrank.serve", description=__doc__.splitlines()[0])
    parser.add_argument("--reranker", help="registry name, local model folder or hub id (reasonrank.rerank.catalog)")
    parser.add_argument("--reranker-family", default=None, help="family for a hub id or an ambiguous folder")
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default: loopback only)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--max-candidates", type=_positive, default=DEFAULT_MAX_CANDIDATES)
    parser.add_argument("--max-request-bytes", type=_positive, default=DEFAULT_MAX_REQUEST_BYTES)
    parser.add_argument(
        "--max-batch-size", type=_positive, default=DEFAULT_MAX_BATCH_SIZE,
        help="requests gathered into one model call (1: one request at a time)",
    )
    parser.add_argument(
        "--max-batch-candidates", type=_positive, default=DEFAULT_MAX_BATCH_CANDIDATES,
        help="candidates (passages) one model call may hold across its requests; a larger request runs alone",
    )
    parser.add_argument(
        "--max-wait-ms", type=_non_negative, default=DEFAULT_MAX_WAIT_MS,
        help="how long a lone request waits for others to share its model call",
    )
    parser.add_argument(
        "--batch-generative", action="store_true",
        help="also batch rerankers whose scores depend on the batch mix (generative ones): more throughput, but "
        "answers may differ from one-at-a-time answers (docs/serving.md)",
    )
    parser.add_argument("--log-level", default="info", choices=("critical", "error", "warning", "info", "debug"))
    parser.add_argument(
        "--write-openapi", metavar="PATH", help="write the OpenAPI schema to PATH and exit (no model is loaded)"
    )
    return parser


def run(args: argparse.Namespace) -> int:
    if args.write_openapi:
        check_paths([("--reranker", args.reranker)], [("--write-openapi", args.write_openapi)])
        write_openapi(args.write_openapi)
        return 0
    if not args.reranker:
        raise UserError("--reranker is required: pass a registry name such as minilm-bi")
    import uvicorn

    from reasonrank.rerank.registry import load_reranker

    reranker = load_reranker(args.reranker, args.reranker_family)
    batching = Batching(args.max_batch_size, args.max_wait_ms, args.batch_generative, args.max_batch_candidates)
    if batch_size_for(reranker, batching) < args.max_batch_size:
        print(f"{reranker.name}: one request per model call, since its scores depend on which requests share a "
              "call; pass --batch-generative to batch anyway", file=sys.stderr)
    app = create_app(reranker, ServiceLimits(args.max_candidates, args.max_request_bytes), batching)
    # One process, one event loop: the model lives here once; uvicorn workers would each load a copy.
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0


main = command(build_parser, run)

if __name__ == "__main__":
    sys.exit(main())
