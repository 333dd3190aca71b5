"""The HTTP side of every loopback exchange (Binance, OKX, Bybit): real sockets and real HTTP/1.1
on 127.0.0.1, routes in the exchange's own wire format, injectable faults, a request log.

An exchange module subclasses :class:`LoopbackExchange`, sets :attr:`~LoopbackExchange.exchange_id`
(the ccxt id the settings point at this server) and registers its routes in ``__post_init__``::

    @dataclass
    class OkxServer(LoopbackExchange):
        exchange_id: ClassVar[str] = "okx"

        def __post_init__(self) -> None:
            super().__post_init__()
            self.route("GET", "/api/v5/public/instruments", self._instruments)

Rate limits, as Binance enforces its own (``request_limit``): more requests than ``(count, seconds)``
in any sliding window answer 429 with ``Retry-After``; a request that comes before that Retry-After
has passed answers 418 and bans the client for ``ban_s`` (every request in the ban answers 418).
:attr:`LoopbackExchange.limited` counts the 429 and 418 answers::

    server.request_limit = (30, 0.5)
    ...
    assert server.limited == Counter()          # nothing was refused

Faults (consumed in order, per path; exchange modules add their own)::

    server.inject("/api/v5/trade/order", server_error(503), times=3)
    server.inject("/v5/order/create", timeout(1.5))       # answer after 1.5 s
    server.latency_s = 0.05                                # every request
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any, ClassVar, Self
from urllib.parse import parse_qsl, urlsplit

from tests.utils.http_server import QuietHTTPServer

Response = tuple[int, Any, dict[str, str]]


@dataclass
class Request:
    """What a route handler gets: method, path, single-valued query, lower-cased headers, body."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes = b""
    raw_query: str = ""

    @property
    def form(self) -> dict[str, str]:
        """The body as ``application/x-www-form-urlencoded`` (how ccxt sends Binance POSTs)."""
        return dict(parse_qsl(self.body.decode(), keep_blank_values=True))

    def json(self) -> Any:
        return json.loads(self.body or b"null")


Handler = Callable[[Request], Response]
#: a fault gets the request and the handler; it answers instead of (or by altering) the handler
Fault = Callable[[Request, Handler], Response]


def server_error(status: int = 503) -> Fault:
    """A bare 5xx (exchange gateways answer these in HTML/text, not JSON)."""
    return lambda _req, _h: (status, "Service Unavailable", {"Content-Type": "text/plain"})


def timeout(seconds: float) -> Fault:
    """Answer normally but only after ``seconds`` (set past the client's timeout)."""
    def fault(req: Request, handler: Handler) -> Response:
        time.sleep(seconds)
        return handler(req)
    return fault


@dataclass
class LoopbackExchange:
    """A loopback exchange; start it with ``with Server() as server:`` or start()/stop().

    ``latency_s`` delays every answer; ``now_ms`` fixes the server's clock (epoch ms) — None
    reads the real one. Requests to unrouted paths answer 404 and are kept in :attr:`unhandled`,
    so a test can assert that nothing else was called.
    """

    #: the ccxt id whose API this server speaks (the key of ``CAPANDEX_EXCHANGE_URLS``)
    exchange_id: ClassVar[str] = ""

    latency_s: float = 0.0
    now_ms: int | None = None
    request_limit: tuple[int, float] | None = None
    retry_after_s: int = 1
    ban_s: float = 2.0

    def __post_init__(self) -> None:
        self.routes: dict[tuple[str, str], Handler] = {}
        self.faults: dict[str, deque[Fault]] = {}
        self.requests: list[Request] = []
        self.unhandled: list[Request] = []
        self.limited: Counter[int] = Counter()
        self._window: deque[float] = deque()
        self._limited_until = self._banned_until = 0.0
        self._lock = threading.Lock()
        self._httpd: QuietHTTPServer | None = None

    def limit_answer(self, status: int, retry_after: float) -> Response:
        """The exchange's answer to a client over its request limit (429) or banned (418)."""
        return status, "Too Many Requests", {"Content-Type": "text/plain", "Retry-After": str(int(retry_after))}

    # -- extension API ---------------------------------------------------------------------------
    def route(self, method: str, path: str, handler: Handler) -> None:
        """Serve ``method path`` with ``handler(request) -> (status, json_obj, headers)``; replaces
        an existing route. A ``str`` body is sent as text instead of JSON."""
        self.routes[(method.upper(), path)] = handler

    def inject(self, path: str, fault: Fault, times: int = 1) -> None:
        """Answer the next ``times`` requests to ``path`` through ``fault``."""
        with self._lock:
            self.faults.setdefault(path, deque()).extend([fault] * times)

    def count(self, path: str | None = None) -> int:
        """Requests received (for ``path`` only when given), including faulted ones."""
        with self._lock:
            return sum(1 for r in self.requests if path is None or r.path == path)

    def paths(self) -> Counter[str]:
        with self._lock:
            return Counter(r.path for r in self.requests)

    def reset_log(self) -> None:
        with self._lock:
            self.requests.clear()
            self.unhandled.clear()

    @property
    def url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("the server is not running")
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def exchange_urls_env(self) -> str:
        """The value of ``CAPANDEX_EXCHANGE_URLS`` that points ccxt's class at this server."""
        return json.dumps({self.exchange_id: self.url})

    def now(self) -> int:
        return self.now_ms if self.now_ms is not None else int(time.time() * 1000)

    # -- life cycle ------------------------------------------------------------------------------
    def start(self) -> Self:
        server = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # headers and body go out in two writes: with Nagle's algorithm on, the body waits for
            # the client's delayed ACK (~40 ms per request on Linux)
            disable_nagle_algorithm = True

            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                parts = urlsplit(self.path)
                request = Request(self.command, parts.path, dict(parse_qsl(parts.query, keep_blank_values=True)),
                                  {k.lower(): v for k, v in self.headers.items()},
                                  self.rfile.read(length) if length else b"", parts.query)
                status, body, headers = server.dispatch(request)
                payload = body.encode() if isinstance(body, str) else json.dumps(body).encode()
                self.send_response(status)
                headers = {"Content-Type": "application/json;charset=UTF-8", **headers}
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                # the client may have given up already (the timeout fault)
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(payload)

            do_GET = do_POST = do_DELETE = do_PUT = _serve

        self._httpd = QuietHTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.block_on_close = False
        threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                         name=f"{self.exchange_id}-loopback", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- dispatch --------------------------------------------------------------------------------
    def _over_limit(self) -> Response | None:
        """429/418 when this request breaks :attr:`request_limit` (the lock is held)."""
        if self.request_limit is None:
            return None
        now = time.monotonic()
        if now < self._banned_until or now < self._limited_until:
            self._banned_until = max(self._banned_until, now + self.ban_s)
            self.limited[418] += 1
            return self.limit_answer(418, self._banned_until - now)
        count, seconds = self.request_limit
        while self._window and self._window[0] <= now - seconds:
            self._window.popleft()
        if len(self._window) >= count:
            self._limited_until = now + self.retry_after_s
            self.limited[429] += 1
            return self.limit_answer(429, self.retry_after_s)
        self._window.append(now)
        return None

    def dispatch(self, request: Request) -> Response:
        with self._lock:
            self.requests.append(request)
            refused = self._over_limit()
            if refused is not None:
                return refused
            queue = self.faults.get(request.path)
            fault = queue.popleft() if queue else None
        if self.latency_s:
            time.sleep(self.latency_s)
        handler = self.routes.get((request.method, request.path))
        if handler is None:
            with self._lock:
                self.unhandled.append(request)
            return 404, "<html><body><h1>404 Not Found</h1></body></html>", {"Content-Type": "text/html"}
        return fault(request, handler) if fault else handler(request)
