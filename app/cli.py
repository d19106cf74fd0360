"""The command line: ``cnn-visualiser serve [--host H] [--port P] [--workers N]``, and ``cnn-visualiser worker``
(with ``CNN_VIS_REDIS_URL``: run the training and attention jobs queued in Redis, ``app/worker.py``)."""

from __future__ import annotations

import argparse
import os
import socket
import sys

from app.core.config import ALL_INTERFACES, ENV_PREFIX, LOOPBACK_HOSTS, Settings, get_settings


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
    worker = commands.add_parser("worker", help="run the training and attention jobs queued in Redis "
                                                "(needs CNN_VIS_REDIS_URL; one job at a time)")
    worker.add_argument("--burst", action="store_true", help="stop once the queues are empty")
    worker.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    return parser


def serve(host: str, port: int, workers: int, log_level: str = "info") -> None:
    """Run uvicorn on ``app.main:create_app`` (an import string, so several workers can start it)."""
    import uvicorn

    if workers < 1:
        raise SystemExit("--workers must be at least 1")
    # the app (in each worker) answers to the address it is bound to, and knows how many workers share the machine
    given = {ENV_PREFIX + "HOST": host, ENV_PREFIX + "WORKERS": str(workers)}
    previous = {name: os.environ.get(name) for name in given}
    os.environ.update(given)
    get_settings.cache_clear()
    try:
        hint = hosts_hint(get_settings(), port)
        if hint:
            print(hint, file=sys.stderr, flush=True)
        print(f"cnn-visualiser: http://{'127.0.0.1' if host == '0.0.0.0' else host}:{port}/  (API docs at /docs)",
              flush=True)
        uvicorn.run("app.main:create_app", factory=True, host=host, port=port, workers=workers, log_level=log_level)
    finally:  # as it was (for callers in the same process: the tests)
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        get_settings.cache_clear()


def hosts_hint(settings: Settings, port: int) -> str | None:
    """A warning when the server listens on every interface but answers only to loopback names (then every other
    machine gets 400), naming the setting and this machine's name and address as an example; else None."""
    if settings.host.strip() not in ALL_INTERFACES or not set(settings.allowed_hosts or ()) <= set(LOOPBACK_HOSTS):
        return None
    names = [socket.gethostname(), outgoing_address()]
    example = ",".join(["localhost", "127.0.0.1", *(n for n in names if n and not n.startswith("127."))])
    return (f"cnn-visualiser: listening on every interface, but answering only to {', '.join(LOOPBACK_HOSTS)}: "
            f"other machines opening http://<this machine>:{port}/ get 400 (a guard against DNS rebinding). "
            f"List the names and addresses they will type in {ENV_PREFIX}ALLOWED_HOSTS, e.g.\n"
            f"  {ENV_PREFIX}ALLOWED_HOSTS={example} cnn-visualiser serve "
            f"--host {settings.host} --port {port}")


def outgoing_address() -> str | None:
    """This machine's address on the network its default route leads to (no packet is sent), or None."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: only picks the route
            return probe.getsockname()[0]
    except OSError:
        return None


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    if args.command == "serve":
        serve(args.host, args.port, args.workers, args.log_level)
    elif args.command == "worker":
        from app.worker import run_worker

        run_worker(get_settings(), burst=args.burst, log_level=args.log_level)


if __name__ == "__main__":
    main()
