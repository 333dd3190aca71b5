"""Where candle chunks and backtest results live: one small byte-store protocol, two backends.

In AWS (``CAPANDEX_ENV=aws``) objects go to the S3 bucket ``CAPANDEX_DATA_BUCKET``; on the
embedded defaults they are files under ``<CAPANDEX_DATA_DIR>/store``. Keys are ``/``-separated
paths such as ``candles/v1/binance/BTC_USDT/1m/1700000000000.cdx``.
"""

from __future__ import annotations

import os
import tempfile
import threading
from pathlib import Path
from typing import Any, Protocol


class BlobStore(Protocol):
    """Bytes by key. ``get`` answers None for a missing key; ``put`` replaces atomically."""

    def get(self, key: str) -> bytes | None: ...

    def get_range(self, key: str, start: int, stop: int) -> bytes | None:
        """Bytes ``[start, stop)`` of the object (fewer past its end); None for a missing key."""
        ...

    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None: ...


class LocalStore:
    """Files under ``root`` (written to a temporary file, then renamed: readers never see half a file)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise ValueError(f"key escapes the store: {key!r}")
        return path

    def get(self, key: str) -> bytes | None:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            return None

    def get_range(self, key: str, start: int, stop: int) -> bytes | None:
        try:
            with self._path(key).open("rb") as handle:
                handle.seek(start)
                return handle.read(max(0, stop - start))
        except FileNotFoundError:
            return None

    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


class S3Store:
    """Objects in an S3 bucket. ``client`` is injected in tests (moto); created lazily otherwise."""

    def __init__(self, bucket: str, client: Any = None) -> None:
        self.bucket = bucket
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3

            self._client = boto3.client("s3")
        return self._client

    def get(self, key: str) -> bytes | None:
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=key)
        except self.client.exceptions.NoSuchKey:
            return None
        return response["Body"].read()

    def get_range(self, key: str, start: int, stop: int) -> bytes | None:
        if stop <= start:  # HTTP ranges are inclusive and never empty
            return None if self.get_range(key, 0, 1) is None else b""
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=key, Range=f"bytes={start}-{stop - 1}")
        except self.client.exceptions.NoSuchKey:
            return None
        except self.client.exceptions.ClientError as exc:  # a range starting past the end: 416
            if exc.response.get("Error", {}).get("Code") == "InvalidRange":
                return b""
            raise
        return response["Body"].read()

    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        self.client.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType=content_type)


_stores: dict[tuple[Any, ...], BlobStore] = {}
_lock = threading.Lock()


def get_store() -> BlobStore:
    """The container's store for the current settings (S3 in AWS, a directory locally)."""
    from capandex.config import get_settings

    settings = get_settings()
    use_s3 = settings.env == "aws" or settings.data_bucket is not None
    key = ("s3", settings.data_bucket) if use_s3 else ("local", str(settings.data_dir.resolve()))
    with _lock:
        store = _stores.get(key)
        if store is None:
            if use_s3 and not settings.data_bucket:
                raise RuntimeError("CAPANDEX_DATA_BUCKET must be set when CAPANDEX_ENV=aws")
            store = _stores[key] = (S3Store(settings.data_bucket) if use_s3  # type: ignore[arg-type]
                                    else LocalStore(settings.data_dir / "store"))
    return store


def clear_stores() -> None:
    """Forget the cached stores (tests switch settings between cases)."""
    with _lock:
        _stores.clear()
