"""A loopback Supabase Auth (GoTrue) answering ``GET /auth/v1/user`` as the real one does, so the
real ``supabase_auth`` client runs against it.

Wire format (GoTrue, API version 2024-01-01, which the client asks for in ``X-Supabase-Api-Version``):
200 with the user object (``id``, ``aud``, ``role``, ``email``, ``app_metadata``, ``user_metadata``,
``identities``, ``created_at`` …); a signed-out or revoked session is 403 ``{"code":
"session_not_found", "message": "Session from session_id claim in JWT does not exist"}``; a
deleted user 404 ``user_not_found``; an unparseable token 401 ``bad_jwt``. Every answer carries
``X-Supabase-Api-Version: 2024-01-01``. Supabase's gateway refuses a request without the project's
``apikey`` header (401).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.utils.http_server import LoopbackServer

API_VERSION = {"X-Supabase-Api-Version": "2024-01-01"}
ANON_KEY = "sb_publishable_loopback_" + uuid.uuid4().hex[:12]


def _user(user_id: str) -> dict[str, Any]:
    created = "2026-01-02T03:04:05.678901Z"
    email = f"{user_id[:8]}@example.com"
    return {
        "id": user_id, "aud": "authenticated", "role": "authenticated", "email": email,
        "email_confirmed_at": created, "phone": "", "confirmed_at": created, "last_sign_in_at": created,
        "app_metadata": {"provider": "email", "providers": ["email"]},
        "user_metadata": {"email": email, "email_verified": True, "phone_verified": False, "sub": user_id},
        "identities": [{"identity_id": str(uuid.uuid4()), "id": user_id, "user_id": user_id,
                        "identity_data": {"email": email, "email_verified": False, "phone_verified": False,
                                          "sub": user_id},
                        "provider": "email", "last_sign_in_at": created, "created_at": created,
                        "updated_at": created, "email": email}],
        "created_at": created, "updated_at": created, "is_anonymous": False,
    }


@dataclass
class SupabaseAuth:
    """Sessions by access token: ``live`` (answers the user), ``revoked``, ``deleted``; ``status``
    overrides every answer (e.g. 503); ``delay_s`` slows each answer; ``calls`` counts them."""

    sessions: dict[str, tuple[str, str]] = field(default_factory=dict)  # token → (user id, state)
    status: int | None = None
    delay_s: float = 0.0
    calls: int = 0
    url: str = ""

    def sign_in(self, token: str, user_id: uuid.UUID) -> str:
        self.sessions[token] = (str(user_id), "live")
        return token

    def sign_out(self, token: str) -> None:
        self.sessions[token] = (self.sessions[token][0], "revoked")

    def delete_user(self, token: str) -> None:
        self.sessions[token] = (self.sessions[token][0], "deleted")

    def __call__(self, request: Any) -> tuple[int, Any, dict[str, str]]:
        self.calls += 1
        time.sleep(self.delay_s)
        if request.headers.get("apikey") != ANON_KEY:
            return 401, {"message": "No API key found in request"}, {}
        if self.status is not None:
            return self.status, {"code": "unexpected_failure", "message": "Service unavailable"}, dict(API_VERSION)
        token = (request.headers.get("Authorization") or "").removeprefix("Bearer ")
        user_id, state = self.sessions.get(token, (None, "unknown"))
        if state == "live":
            return 200, _user(user_id), dict(API_VERSION)
        if state == "revoked":
            return 403, {"code": "session_not_found",
                         "message": "Session from session_id claim in JWT does not exist"}, dict(API_VERSION)
        if state == "deleted":
            return 404, {"code": "user_not_found", "message": "User from sub claim in JWT does not exist"}, \
                dict(API_VERSION)
        return 401, {"code": "bad_jwt", "message": "invalid JWT: unable to parse or verify signature"}, \
            dict(API_VERSION)


class SupabaseAuthServer(LoopbackServer):
    """The loopback Auth server; ``.auth`` is its :class:`SupabaseAuth` state."""

    def __init__(self) -> None:
        self.auth = SupabaseAuth()
        super().__init__({("GET", "/auth/v1/user"): self.auth})


@pytest.fixture
def supabase_auth(configure) -> Iterator[SupabaseAuth]:
    """The loopback Auth server, with settings pointed at it and session confirmation on."""
    from capandex.auth import sessions

    with SupabaseAuthServer() as server:
        configure(SUPABASE_URL=server.url, SUPABASE_ANON_KEY=ANON_KEY, CAPANDEX_CONFIRM_SESSIONS="true")
        sessions.clear_cache()
        server.auth.url = server.url
        yield server.auth
    sessions.clear_cache()
