"""Fixtures every test module may use: databases, settings, users and API clients.

- ``postgres_url``: a per-session database on a real PostgreSQL with Supabase's roles and the
  committed migrations applied in order (skipped when no PostgreSQL can be had, except under
  ``CI=true``, where that fails the run).
- ``database_url``: parametrised over SQLite and Postgres, for code that must work on both.
- ``configure``: point the settings at a database and a fresh data directory.
- ``api``: a client for every function through the local gateway, plus ``user()`` credentials.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.utils import postgres

# Suite-wide: the secret guard (no secret in any log record) and the loopback exchange fixtures.
pytest_plugins = ["tests.utils.secret_guard", "tests.utils.fixtures"]

os.environ.setdefault("CAPANDEX_ENV", "local")
# tests that do not `configure` a data directory must not touch the user's own (~/.local/share/capandex)
os.environ.setdefault("CAPANDEX_DATA_DIR", tempfile.mkdtemp(prefix="capandex-tests-"))


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    try:
        server, cluster = postgres.server_url()
    except (postgres.PostgresUnavailable, OSError) as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL is required under CI=true: {exc}")
        pytest.skip(f"PostgreSQL unavailable: {exc}")
    url = postgres.create_test_database(server)
    try:
        yield url
    finally:
        postgres.drop_database(server, url)
        if cluster is not None:
            cluster.close()


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'capandex.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def configure(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """Set environment variables and reset every cached setting; returns the settings."""
    from capandex.config import get_settings

    def apply(**env: str | None):
        monkeypatch.setenv("CAPANDEX_DATA_DIR", str(tmp_path / "data"))
        for key, value in env.items():
            if value is None:
                monkeypatch.delenv(key, raising=False)
            else:
                monkeypatch.setenv(key, value)
        get_settings.cache_clear()
        return get_settings()

    yield apply
    get_settings.cache_clear()


@dataclass
class Api:
    """A test client for the whole API and a way to act as any user."""

    client: object
    users: dict[str, uuid.UUID] = field(default_factory=dict)

    def headers(self, user: uuid.UUID) -> dict[str, str]:
        from capandex.auth import issue_dev_token
        from capandex.config import DEV_JWT_SECRET

        return {"Authorization": f"Bearer {issue_dev_token(user, DEV_JWT_SECRET)}"}

    def as_user(self, user: uuid.UUID | None = None) -> UserClient:
        user = user or uuid.uuid4()
        return UserClient(self.client, self.headers(user), user)


@dataclass
class UserClient:
    """``client.get/post/...`` with one user's credentials attached."""

    client: object
    auth: dict[str, str]
    id: uuid.UUID

    def request(self, method: str, url: str, **kwargs):
        headers = {**self.auth, **kwargs.pop("headers", {})}
        return self.client.request(method, url, headers=headers, **kwargs)

    def get(self, url: str, **kw):
        return self.request("GET", url, **kw)

    def post(self, url: str, **kw):
        return self.request("POST", url, **kw)

    def put(self, url: str, **kw):
        return self.request("PUT", url, **kw)

    def delete(self, url: str, **kw):
        return self.request("DELETE", url, **kw)


@pytest.fixture(params=["postgres"])
def api_database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The database API tests run on: real Postgres (RLS on the request path)."""
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def api(configure, api_database: str) -> Iterator[Api]:
    from fastapi.testclient import TestClient

    from capandex.api.gateway import Gateway

    configure(DATABASE_URL=api_database)
    with TestClient(Gateway(), raise_server_exceptions=False) as client:
        yield Api(client)
