"""fetch_candles through the real ccxt binance and the loopback exchange: paging, closed candles,
de-duplication, gaps, the chunk cache (no page fetched twice; the open chunk only topped up)."""

from __future__ import annotations

import io

import numpy as np
import pytest

from capandex.errors import BadRequest, UpstreamUnavailable
from capandex.exchanges import retry
from capandex.marketdata import CHUNK_CANDLES, Gap, LocalStore, fetch_candles, find_gaps, progress_bar
from capandex.marketdata.chunks import SETTLE_MS, chunk_key, decode
from tests.utils.binance_server import BinanceServer, duplicated, rate_limit, server_error, short_page, timeout

MIN = 60_000
DAY = 86_400_000
T0 = 1_704_067_200_000  # 2024-01-01T00:00:00Z
NOW = T0 + 400 * DAY + 37 * MIN + 12_345  # the loopback's and the fetcher's clock


@pytest.fixture
def server(binance_env: BinanceServer, monkeypatch: pytest.MonkeyPatch) -> BinanceServer:
    binance_env.now_ms = NOW
    monkeypatch.setattr(retry, "sleep", lambda _s: None)
    return binance_env


@pytest.fixture
def store(tmp_path) -> LocalStore:
    return LocalStore(tmp_path / "store")


def expected(server: BinanceServer, start: int, end: int, symbol: str = "BTCUSDT", tf: str = "1m") -> np.ndarray:
    return server.expected_klines(symbol, tf, start, end)


def assert_same(candles, rows: np.ndarray) -> None:
    assert candles.time.dtype == np.int64 and candles.close.dtype == np.float64
    assert candles.time.tolist() == rows[:, 0].astype(np.int64).tolist()
    for i, name in enumerate(("open", "high", "low", "close", "volume"), start=1):
        np.testing.assert_allclose(getattr(candles, name), rows[:, i], rtol=1e-8)


def test_range_fetched_page_by_page_at_max_page_size(server: BinanceServer, store: LocalStore) -> None:
    start, end = T0 + 5 * DAY, T0 + 8 * DAY
    candles = fetch_candles("binance", "BTC/USDT", "1m", start, end, store=store, now=NOW)
    assert_same(candles, expected(server, start, end))
    assert len(candles) == 3 * 1440 and candles.gaps == ()
    limits = {r.query["limit"] for r in server.requests if r.path == "/api/v3/klines"}
    assert limits == {"1000"}
    # whole chunks are fetched and stored (the fixed grid), each in ceil(12000 / 1000) pages
    assert candles.pages_fetched == server.count("/api/v3/klines") == 12 * candles.chunks_fetched
    candles.validate()


def test_a_download_cut_short_stores_its_pages_and_the_next_call_goes_on(server: BinanceServer,
                                                                          store: LocalStore) -> None:
    """``fill_seconds`` stops between pages, not chunks (a chunk is 120 requests at OKX's 100
    candles a page): what the pages brought is stored, the chunk covered up to them, and calls that
    each fetch one page end with the same candles, no page asked for twice."""
    from capandex.marketdata.candles import FillTimeUp

    start, end = T0 + 5 * DAY, T0 + 8 * DAY
    whole = fetch_candles("binance", "BTC/USDT", "1m", start, end, store=LocalStore(store.root.with_name("other")),
                          now=NOW).pages_fetched  # in one call
    asked_before, calls = server.count("/api/v3/klines"), 0
    while True:
        calls += 1
        before = server.count("/api/v3/klines")
        try:
            candles = fetch_candles("binance", "BTC/USDT", "1m", start, end, store=store, now=NOW, fill_seconds=0.0)
            break
        except FillTimeUp:
            assert server.count("/api/v3/klines") - before == 1  # the first page of each call, no more
    assert server.count("/api/v3/klines") - before <= 1
    # each page asked for once; the chunk need not be whole once it covers the range asked for
    assert calls - 1 <= server.count("/api/v3/klines") - asked_before <= whole and calls >= 5
    assert_same(candles, expected(server, start, end))
    assert candles.gaps == ()


def test_a_download_cut_short_never_replaces_a_chunk_another_container_filled(server: BinanceServer,
                                                                                 store: LocalStore) -> None:
    """Two containers plan the same empty chunk; one fills it whole (a backtest's Map task), the other
    is cut short by its deadline (a live tick) and used to store its few pages over the whole chunk,
    so the backtest's Run task, reading the store alone, found it missing and failed."""
    import time

    from capandex.exchanges import get_client
    from capandex.marketdata.candles import CandleRange, _fetch_chunk, ensure_chunk, load, plan_chunk

    client = get_client("binance")
    span = CandleRange("binance", "BTC/USDT", "1m", T0 + 5 * DAY, T0 + 8 * DAY, NOW)
    first = span.start_ms // (12_000 * MIN) * (12_000 * MIN)
    stale = plan_chunk(span, first, page_size=1000, store=store)
    assert not stale.ready
    ensure_chunk(client, span, first, store=store)  # the other container, whole
    # the tick, its plan made before (in its own container, so no lock of this one is shared), cut
    # short after its first page: it keeps the whole chunk it finds stored, and stores nothing
    key = chunk_key("binance", "BTC/USDT", "1m", first)
    kept, pages = _fetch_chunk(stale, span, client, store, key, None, time.monotonic() - 1)
    assert pages == 1 and kept.covered_until_ms >= stale.target_ms
    plans = [plan_chunk(span, first, page_size=1000, store=store)]
    assert plans[0].ready
    assert_same(load(span, plans, store=store), expected(server, span.start_ms, span.end_ms))  # no client needed


def test_repeated_and_overlapping_ranges_never_fetch_a_page_twice(server: BinanceServer, store: LocalStore) -> None:
    fetch_candles("binance", "BTC/USDT", "1m", T0, T0 + 10 * DAY, store=store, now=NOW)
    first = server.count("/api/v3/klines")
    again = fetch_candles("binance", "BTC/USDT", "1m", T0, T0 + 10 * DAY, store=store, now=NOW)
    assert again.pages_fetched == 0 and server.count("/api/v3/klines") == first
    inner = fetch_candles("binance", "BTC/USDT", "1m", T0 + DAY + 7 * MIN, T0 + 3 * DAY, store=store, now=NOW)
    assert inner.pages_fetched == 0
    assert_same(inner, expected(server, T0 + DAY + 7 * MIN, T0 + 3 * DAY))
    overlap = fetch_candles("binance", "BTC/USDT", "1m", T0 + 5 * DAY, T0 + 20 * DAY, store=store, now=NOW)
    assert overlap.chunks_cached >= 1 and overlap.pages_fetched == server.count("/api/v3/klines") - first
    assert_same(overlap, expected(server, T0 + 5 * DAY, T0 + 20 * DAY))


def test_only_closed_candles_and_the_open_chunk_is_topped_up_not_cached_as_complete(
        server: BinanceServer, store: LocalStore) -> None:
    start = NOW - 2 * DAY
    candles = fetch_candles("binance", "BTC/USDT", "1m", start, NOW + DAY, store=store, now=NOW)
    last_closed = (NOW - SETTLE_MS) // MIN * MIN - MIN
    assert candles.time[-1] == last_closed  # the loopback also served the open candle; it was dropped
    assert (candles.time + MIN <= NOW).all()
    chunk_start = (NOW // (CHUNK_CANDLES * MIN)) * CHUNK_CANDLES * MIN
    stored = decode(store.get(chunk_key("binance", "BTC/USDT", "1m", chunk_start)), "1m")
    assert not stored.complete and stored.covered_until_ms == last_closed + MIN
    # ten minutes later: only the tail of the open chunk is fetched (one page), nothing twice
    server.reset_log()
    later = NOW + 10 * MIN
    server.now_ms = later
    fresh = fetch_candles("binance", "BTC/USDT", "1m", start, later + DAY, store=store, now=later)
    assert fresh.pages_fetched == 1
    (request,) = [r for r in server.requests if r.path == "/api/v3/klines"]
    assert int(request.query["startTime"]) == last_closed + MIN
    assert fresh.time[-1] == last_closed + 10 * MIN
    assert_same(fresh, expected(server, start, last_closed + 11 * MIN))


def test_short_pages_duplicates_and_gaps(server: BinanceServer, store: LocalStore) -> None:
    start, end = T0 + 30 * DAY, T0 + 31 * DAY
    hole = (start + 3 * 3_600_000, start + 5 * 3_600_000)
    server.gaps.append(hole)
    server.inject("/api/v3/klines", short_page(7))
    server.inject("/api/v3/klines", duplicated(50))
    server.inject("/api/v3/klines", short_page(1))
    candles = fetch_candles("binance", "BTC/USDT", "1m", start, end, store=store, now=NOW)
    rows = expected(server, start, end)
    assert_same(candles, rows)
    assert np.all(np.diff(candles.time) > 0)
    assert candles.gaps == (Gap(hole[0], hole[1], 120),)
    assert candles.gaps[0].to_dict() == {"start": "2024-01-31T03:00:00Z", "end": "2024-01-31T05:00:00Z",
                                         "missing": 120}


def test_gap_before_listing_is_reported_not_invented(server: BinanceServer, store: LocalStore) -> None:
    server.listed_ms = T0 + 2 * DAY
    candles = fetch_candles("binance", "ETH/USDT", "1h", T0, T0 + 4 * DAY, store=store, now=NOW)
    assert candles.time[0] == T0 + 2 * DAY and len(candles) == 48
    assert candles.gaps == (Gap(T0, T0 + 2 * DAY, 48),)


@pytest.mark.parametrize("fault", [rate_limit(2), server_error(503), timeout(1.5)], ids=["429", "503", "timeout"])
def test_temporary_faults_are_retried(server: BinanceServer, store: LocalStore, fault) -> None:
    server.inject("/api/v3/klines", fault)
    candles = fetch_candles("binance", "BTC/USDT", "1h", T0, T0 + 3 * DAY, store=store, now=NOW)
    assert_same(candles, expected(server, T0, T0 + 3 * DAY, tf="1h"))


def test_persistent_failure_raises_and_caches_nothing(server: BinanceServer, store: LocalStore) -> None:
    server.inject("/api/v3/klines", server_error(502), times=20)
    with pytest.raises(UpstreamUnavailable):
        fetch_candles("binance", "BTC/USDT", "1h", T0, T0 + DAY, store=store, now=NOW)
    assert not list((store.root).rglob("*.cdx"))


def test_one_failing_page_costs_three_requests_on_a_request_path(server: BinanceServer, store: LocalStore) -> None:
    """Retries live in one layer (capandex.exchanges.retry): nothing above the read loops again."""
    server.inject("/api/v3/klines", server_error(503), times=100)
    with pytest.raises(UpstreamUnavailable):
        fetch_candles("binance", "BTC/USDT", "1h", T0, T0 + DAY, store=store, now=NOW)
    assert server.count("/api/v3/klines") == retry.REQUEST.retries + 1 == 3


def test_bad_symbol_and_timeframe(server: BinanceServer, store: LocalStore) -> None:
    with pytest.raises(BadRequest, match="no spot market"):
        fetch_candles("binance", "NOPE/USDT", "1h", T0, T0 + DAY, store=store, now=NOW)
    with pytest.raises(BadRequest, match="Unknown timeframe '2h'"):
        fetch_candles("binance", "BTC/USDT", "2h", T0, T0 + DAY, store=store, now=NOW)


def test_progress_reports_up_to_the_total(server: BinanceServer, store: LocalStore) -> None:
    seen: list[tuple[int, int]] = []
    fetch_candles("binance", "BTC/USDT", "1m", T0, T0 + 20 * DAY, progress=lambda d, t: seen.append((d, t)),
                  store=store, now=NOW)
    assert seen[-1] == (20 * 1440, 20 * 1440)
    done = [d for d, _ in seen]
    assert done == sorted(done) and len(seen) > 3


def test_progress_bar_summary_line() -> None:
    stream = io.StringIO()
    with progress_bar("BTC/USDT 1m", stream) as bar:
        bar(50, 100)
        bar(100, 100)
    assert "BTC/USDT 1m [" in stream.getvalue() and "100.0% 100/100" in stream.getvalue()


def test_a_failed_download_never_shows_a_finished_bar() -> None:
    stopped = "BTC/USDT 1m [" + "#" * 6 + "-" * 24 + "]  20.0% 20/100 stopped\n"
    for progressed, expected in ((False, ""), (True, stopped)):
        stream = io.StringIO()
        with pytest.raises(RuntimeError), progress_bar("BTC/USDT 1m", stream) as bar:
            if progressed:
                bar(20, 100)
            raise RuntimeError("the exchange went away")
        assert stream.getvalue() == expected


def test_find_gaps() -> None:
    t = np.array([0, 60, 120, 300, 360], dtype=np.int64) * 1000
    assert find_gaps(t, MIN, 0, 420_000) == [Gap(180_000, 300_000, 2)]
    assert find_gaps(t, MIN, -120_000, 540_000) == [Gap(-120_000, 0, 2), Gap(180_000, 300_000, 2),
                                                    Gap(420_000, 540_000, 2)]
    assert find_gaps(np.zeros(0, np.int64), MIN, 0, 180_000) == [Gap(0, 180_000, 3)]
    assert find_gaps(t, MIN, 0, 0) == []


def test_testnet_candles_are_never_served_as_the_real_markets(server: BinanceServer, store: LocalStore,
                                                             configure) -> None:
    from tests.utils.fixtures import reset_exchange_caches

    start, end = T0, T0 + DAY
    configure(CAPANDEX_EXCHANGE_URLS=server.exchange_urls_env(), CAPANDEX_EXCHANGE_SANDBOX='["binance"]')
    reset_exchange_caches()
    testnet = fetch_candles("binance", "BTC/USDT", "1m", start, end, store=store, now=NOW)
    assert store.get(chunk_key("binance", "BTC/USDT", "1m", T0 // (CHUNK_CANDLES * MIN) * CHUNK_CANDLES * MIN)
                     ).startswith(b"CDXCHK02")
    assert all("/binance.testnet/" in str(p) for p in (store.root / "candles" / "v1").rglob("*.cdx"))
    configure(CAPANDEX_EXCHANGE_URLS=server.exchange_urls_env(), CAPANDEX_EXCHANGE_SANDBOX="[]")
    reset_exchange_caches()
    real = fetch_candles("binance", "BTC/USDT", "1m", start, end, store=store, now=NOW)
    assert testnet.pages_fetched > 0 and real.pages_fetched == testnet.pages_fetched  # not reused
    assert {p.parent.parent.parent.name for p in (store.root / "candles" / "v1").rglob("*.cdx")} == {
        "binance", "binance.testnet"}


def test_concurrent_requests_for_one_chunk_fetch_it_once(server: BinanceServer, store: LocalStore,
                                                        tmp_path) -> None:
    """Single flight: 8 backtests of a new range at once asked the exchange for the same pages 8
    times, one after the other behind the client's lock; now one fetches and the others read it."""
    from concurrent.futures import ThreadPoolExecutor

    start, end = T0, T0 + 3 * DAY
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: fetch_candles("binance", "BTC/USDT", "1h", start, end, store=store,
                                                        now=NOW), range(8)))
    together = server.count("/api/v3/klines")
    for candles in results:
        assert_same(candles, expected(server, start, end, tf="1h"))
    fetch_candles("binance", "BTC/USDT", "1h", start, end, store=LocalStore(tmp_path / "alone"), now=NOW)
    assert together == server.count("/api/v3/klines") - together > 0  # 8 requests cost one request's pages


@pytest.mark.parametrize("timeframe", ["1m", "1h"])
def test_okx_candles_are_read_from_the_start_of_each_page(configure, tmp_path, timeframe) -> None:
    """OKX answers the newest ``limit`` candles older than ``after``: asked for a chunk with its end
    as ``after``, a page brought the chunk's last 300 candles, and the 11,700 before them were
    reported as gaps of the exchange. Each page now asks for one page's window, through the real
    ccxt ``okx`` class against OKX's candle endpoints."""
    from capandex.exchanges import get_client
    from tests.utils.fixtures import reset_exchange_caches
    from tests.utils.okx_server import OkxServer

    with OkxServer() as server:
        configure(CAPANDEX_EXCHANGE_URLS=server.exchange_urls_env(), CAPANDEX_EXCHANGE_TIMEOUT_MS="2000",
                  CAPANDEX_EXCHANGE_SANDBOX=None)
        reset_exchange_caches()
        client = get_client("okx")
        client.ccxt.enableRateLimit = False  # the loopback has no limit; 40 pages a chunk
        step = {"1m": MIN, "1h": 60 * MIN}[timeframe]
        start = (server.now() // DAY - 20) * DAY
        end = start + 3 * DAY
        candles = fetch_candles("okx", "BTC/USDT", timeframe, start, end, store=LocalStore(tmp_path), client=client)
        assert_same(candles, server.expected_candles(step, start, end))
        assert len(candles) == 3 * DAY // step and candles.gaps == ()
        reset_exchange_caches()
