"""The chunk format and both store backends (S3 through moto)."""

from __future__ import annotations

import boto3
import numpy as np
import pytest
from moto import mock_aws

from capandex.exchanges import retry
from capandex.marketdata import LocalStore, S3Store, fetch_candles, get_store
from capandex.marketdata.chunks import Chunk, chunk_key, chunk_starts, decode, encode
from capandex.marketdata.store import clear_stores
from tests.utils.binance_server import BinanceServer

T0 = 1_704_067_200_000


def _chunk(n: int = 5) -> Chunk:
    t = T0 + np.arange(n, dtype=np.int64) * 60_000
    return Chunk(T0, T0 + 12_000 * 60_000, T0 + n * 60_000, t, *(np.linspace(1, 2, n) + i for i in range(5)))


def test_chunk_round_trip_is_zero_copy_and_exact() -> None:
    chunk = _chunk()
    data = encode(chunk)
    assert len(data) == 40 + 48 * 5
    back = decode(data, "1m")
    assert back.start_ms == T0 and back.covered_until_ms == chunk.covered_until_ms and not back.complete
    for name in ("time", "open", "high", "low", "close", "volume"):
        assert np.array_equal(getattr(back, name), getattr(chunk, name))
    assert back.time.base is not None  # a view on the bytes, not a copy
    with pytest.raises(ValueError):
        decode(b"junk" * 20, "1m")
    with pytest.raises(ValueError):
        decode(data[:-8], "1m")


def test_chunks_record_where_their_coverage_starts_and_read_the_old_format() -> None:
    import struct

    chunk = _chunk()
    imported = Chunk(*[getattr(chunk, f) for f in ("start_ms", "end_ms", "covered_until_ms", "time", "open",
                                                   "high", "low", "close", "volume")], covered_from_ms=T0 + 60_000)
    back = decode(encode(imported), "1m")
    assert back.covered_from == T0 + 60_000 and back.covers(T0 + 60_000, T0 + 5 * 60_000)
    assert not back.covers(T0, T0 + 60_000)
    # a chunk written before covered_from existed (CDXCHK01) covers from its start
    body = encode(chunk)[40:]
    old = decode(struct.pack("<8sqqq", b"CDXCHK01", T0, T0 + 5 * 60_000, 5) + body, "1m")
    assert (old.covered_from, old.covered_until_ms) == (T0, T0 + 5 * 60_000)
    assert np.array_equal(old.close, chunk.close)


def test_chunk_grid_is_fixed() -> None:
    span = 12_000 * 60_000
    starts = chunk_starts("1m", T0 + 5, T0 + 2 * span)
    assert all(s % span == 0 for s in starts) and starts[0] <= T0 < starts[0] + span
    assert chunk_starts("1m", T0, T0) == []
    assert chunk_key("binance", "BTC/USDT", "1m", 42) == "candles/v1/binance/BTC_USDT/1m/42.cdx"


def test_local_store(tmp_path) -> None:
    store = LocalStore(tmp_path)
    assert store.get("a/b.bin") is None
    store.put("a/b.bin", b"123")
    store.put("a/b.bin", b"456")
    assert store.get("a/b.bin") == b"456"
    assert not [p for p in tmp_path.rglob(".tmp-*")]
    with pytest.raises(ValueError):
        store.put("../escape", b"x")


@mock_aws
def test_s3_store_and_fetch_through_it(binance_env: BinanceServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(retry, "sleep", lambda _s: None)
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="capandex-data")
    store = S3Store("capandex-data", s3)
    assert store.get("missing") is None
    now = T0 + 100 * 86_400_000
    binance_env.now_ms = now
    first = fetch_candles("binance", "SOL/USDT", "1h", T0, T0 + 30 * 86_400_000, store=store, now=now)
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="capandex-data")["Contents"]]
    assert keys == [chunk_key("binance", "SOL/USDT", "1h", s) for s in chunk_starts("1h", T0, T0 + 30 * 86_400_000)]
    again = fetch_candles("binance", "SOL/USDT", "1h", T0, T0 + 30 * 86_400_000, store=store, now=now)
    assert first.pages_fetched > 0 and again.pages_fetched == 0
    assert np.array_equal(first.close, again.close)


def test_get_store_follows_settings(configure, tmp_path) -> None:
    clear_stores()
    settings = configure(CAPANDEX_ENV="local", CAPANDEX_DATA_BUCKET=None)
    store = get_store()
    assert isinstance(store, LocalStore) and store.root == settings.data_dir / "store"
    configure(CAPANDEX_DATA_BUCKET="bucket-x")
    assert isinstance(get_store(), S3Store) and get_store().bucket == "bucket-x"
    clear_stores()


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_a_range_read_returns_those_bytes_or_fewer_past_the_end(backend, tmp_path, monkeypatch) -> None:
    """A page of a backtest's trades is one range read (``GET …/trades``): bytes [start, stop)."""
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        if backend == "s3":
            boto3.client("s3").create_bucket(Bucket="data")
            store = S3Store("data", client=boto3.client("s3"))
        else:
            store = LocalStore(tmp_path)
        store.put("a/trades.bin", bytes(range(100)))
        assert store.get_range("a/trades.bin", 10, 14) == bytes([10, 11, 12, 13])
        assert store.get_range("a/trades.bin", 98, 120) == bytes([98, 99])
        assert store.get_range("a/trades.bin", 100, 172) == b""
        assert store.get_range("a/trades.bin", 5, 5) == b""
        assert store.get_range("a/missing.bin", 0, 8) is None
        assert store.get_range("a/missing.bin", 0, 0) is None
