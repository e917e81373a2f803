"""``promptsearch serve``: a local model behind an OpenAI-compatible HTTP API (see
:mod:`promptsearch.generators.server`, which loads only when the command runs).

The request log reaches standard error through the command line's one log handler
(:mod:`promptsearch.cli._logging`); ``--quiet`` keeps only the server's errors.
"""

from __future__ import annotations

import argparse
import sys

from promptsearch.cli._arguments import Commands

__all__ = ["add_parser", "cmd_serve"]


def add_parser(commands: Commands) -> None:
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
    serve.set_defaults(handler=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    from promptsearch.generators.server import exposed, make_server, serve_forever

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
    keyed = "an API key is required" if server.requires_key else "no API key"
    print(
        f"promptsearch: serving {server.model_name!r} at {server.base_url} ({keyed}); "
        f"{server.max_concurrency} request{'s' * (server.max_concurrency != 1)} at once, "
        f"{server.max_connections} connections, {server.read_timeout:g} s to send a request; "
        "Ctrl-C stops",
        flush=True,
    )
    if exposed(server):
        print(
            f"promptsearch: warning: {server.server_address[0]!s} may be reachable from other "
            "machines and no API key is required; consider --api-key-env",
            file=sys.stderr,
        )
    serve_forever(server)
    print("promptsearch: server stopped", file=sys.stderr)
    return 0
