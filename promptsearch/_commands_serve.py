"""Handler of ``promptsearch serve`` (see :mod:`promptsearch.generators.server`).

Kept out of :mod:`promptsearch._commands` so that the server's modules load only when
the command runs.
"""

from __future__ import annotations

import argparse
import logging
import sys

__all__ = ["add_serve_parser", "cmd_serve"]


def add_serve_parser(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    """Add the ``serve`` command to the CLI's subcommands."""
    serve = commands.add_parser(
        "serve",
        help="serve a local model over an OpenAI-compatible HTTP API (/v1/chat/completions)",
    )
    serve.add_argument(
        "--model",
        default=None,
        help="hub id or local path of a causal or seq2seq model (default: the embedded "
        "SmolLM2-135M-Instruct)",
    )
    serve.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: automatic)")
    serve.add_argument(
        "--dtype", default=None, help="float32, bfloat16, float16 (default: automatic)"
    )
    serve.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1: this machine only)",
    )
    serve.add_argument(
        "--port", type=int, default=8000, help="port to listen on (default 8000; 0: any free one)"
    )
    serve.add_argument(
        "--api-key-env",
        default=None,
        metavar="VAR",
        help="require the API key held by this environment variable "
        "(Authorization: Bearer <key>); default: no key",
    )
    serve.add_argument(
        "--served-model-name",
        default=None,
        metavar="NAME",
        help="the model name clients send (default: the model's own name)",
    )
    serve.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="seconds a client has to send each request, headers and body; a late one is "
        "dropped or answered 408 (default 30)",
    )
    serve.add_argument(
        "--max-concurrency",
        type=int,
        default=4,
        metavar="N",
        help="requests answered at once (the model generates one at a time); one more gets "
        "503 with Retry-After (default 4)",
    )
    serve.add_argument(
        "--max-connections",
        type=int,
        default=32,
        metavar="N",
        help="connections open at once, one thread each; one more is answered 503 and "
        "closed (default 32)",
    )
    serve.add_argument(
        "--quiet", action="store_true", help="do not log each request (errors are still logged)"
    )
    return serve


def cmd_serve(args: argparse.Namespace) -> int:
    from promptsearch.generators.server import make_server, serve_forever

    server = make_server(
        args.model,
        host=args.host,
        port=args.port,
        api_key_env=args.api_key_env,
        served_model_name=args.served_model_name,
        device=args.device,
        dtype=args.dtype,
        verbose=not args.quiet,
        timeout=args.timeout,
        max_concurrency=args.max_concurrency,
        max_connections=args.max_connections,
    )
    log = logging.getLogger("promptsearch.serve")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log.addHandler(handler)
    level = log.level
    log.setLevel(logging.INFO)
    try:
        serve_forever(server)
    finally:
        log.removeHandler(handler)
        log.setLevel(level)
    return 0
