"""``capandex serve``: every function on one local port, on the embedded defaults."""

from __future__ import annotations

import argparse
import logging
import threading
import time


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("serve", help="run every function's routes on one local port")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
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


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from capandex.api.gateway import Gateway
    from capandex.config import get_settings
    from capandex.logs import configure_logging

    configure_logging()
    settings = get_settings()
    gateway = Gateway()
    print(f"Capandex on http://{args.host}:{args.port}  (functions: {', '.join(gateway.apps)}; "
          f"database: {settings.sqlalchemy_url.split('@')[-1]}; docs: /api/docs)", flush=True)
    stop = threading.Event()
    if not args.no_ticks:
        threading.Thread(target=_tick_every_minute, args=(stop,), daemon=True, name="ticks").start()
    try:
        uvicorn.run(gateway, host=args.host, port=args.port, log_level="warning")
    finally:
        stop.set()
    return 0
