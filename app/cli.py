"""The command line: ``cnn-visualiser serve [--host H] [--port P] [--workers N]``."""

from __future__ import annotations

import argparse
import sys

from app.core.config import get_settings


def build_parser() -> argparse.ArgumentParser:
    settings = get_settings()
    parser = argparse.ArgumentParser(prog="cnn-visualiser", description="An interactive visualiser of CNNs.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="start the web app and the REST API")
    serve.add_argument("--host", default=settings.host, help=f"address to bind (default {settings.host}; "
                                                               "0.0.0.0 to listen on every interface)")
    serve.add_argument("--port", type=int, default=settings.port, help=f"port (default {settings.port})")
    serve.add_argument("--workers", type=int, default=settings.workers,
                       help=f"worker processes (default {settings.workers})")
    serve.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    return parser


def serve(host: str, port: int, workers: int, log_level: str = "info") -> None:
    """Run uvicorn on ``app.main:create_app`` (an import string, so several workers can start it)."""
    import uvicorn

    if workers < 1:
        raise SystemExit("--workers must be at least 1")
    print(f"cnn-visualiser: http://{'127.0.0.1' if host == '0.0.0.0' else host}:{port}/  (API docs at /docs)",
          flush=True)
    uvicorn.run("app.main:create_app", factory=True, host=host, port=port, workers=workers, log_level=log_level)


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    if args.command == "serve":
        serve(args.host, args.port, args.workers, args.log_level)


if __name__ == "__main__":
    main()
