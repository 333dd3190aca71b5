"""``capandex serve``: every function on one local port, on the embedded defaults."""

from __future__ import annotations

import argparse
import logging
import os
import socket
import threading
import time

from capandex.errors import BadRequest


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve", help="run every function's routes on one local port",
        description="Every function's routes on one port, on the embedded defaults (SQLite, local vault key "
                    "and candle store in the data directory, which it prints), with the docs at /api/docs. "
                    "Paper executions on the real clock tick once a minute; a replay only with capandex tick --at.")
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: %(default)s; "
                                                            "0.0.0.0 for every interface)")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on (default: %(default)s)")
    parser.add_argument("--no-ticks", action="store_true",
                        help="do not run the live engine's pass once a minute")
    parser.set_defaults(handler=run)


def _tick_every_minute(stop: threading.Event) -> None:
    """Run the live engine's scheduler pass once a minute, as EventBridge does in AWS."""
    try:
        from capandex.live.ticks import run_local_pass
    except ImportError:  # the live engine is not part of this build
        return
    log = logging.getLogger("capandex.ticks")
    while not stop.wait(60.0 - (time.time() % 60.0) + 1.0):  # one second past each minute
        try:
            run_local_pass()
        except Exception:
            log.exception("tick pass failed")


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port``, or :class:`BadRequest` saying the port is taken. Bound
    before the banner and handed to uvicorn, so no other process can take the port in between."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a restart right after a stop works
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise BadRequest(f"cannot listen on {host}:{port} ({exc.strerror or exc}); another program uses the "
                         f"port? Choose another with --port, e.g. --port {port + 1}") from None
    sock.listen(2048)
    return sock


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from capandex.api.gateway import Gateway
    from capandex.config import get_settings
    from capandex.logs import configure_logging

    sock = bind(args.host, args.port)
    configure_logging()
    # a long-running server keeps its Postgres connections (Lambda opens one per transaction)
    os.environ.setdefault("CAPANDEX_DB_POOL_SIZE", "20")
    get_settings.cache_clear()
    settings = get_settings()
    gateway = Gateway()
    database = settings.sqlalchemy_url.split("@")[-1]
    print(f"Capandex on http://{args.host}:{args.port}  (functions: {', '.join(gateway.apps)}; "
          f"database: {database}; docs: /api/docs)\ndata: {settings.data_dir}", flush=True)
    stop = threading.Event()
    if not args.no_ticks:
        threading.Thread(target=_tick_every_minute, args=(stop,), daemon=True, name="ticks").start()
    server = uvicorn.Server(uvicorn.Config(gateway, log_level="warning"))
    try:
        server.run(sockets=[sock])
    finally:
        stop.set()
        sock.close()
    return 0
