"""Session confirmation with Supabase Auth (the real ``supabase_auth`` client against a loopback
GoTrue): live sessions pass and are remembered 30 s, ended ones are 401, an unreachable Auth is 503."""

from __future__ import annotations

import uuid

import pytest

from capandex.auth import issue_dev_token, sessions, verify_token
from capandex.config import DEV_JWT_SECRET, get_settings
from capandex.errors import Unauthorized, UpstreamUnavailable
from tests.utils.supabase_auth_server import supabase_auth  # noqa: F401


def signed_in(auth, user_id: uuid.UUID | None = None):
    user_id = user_id or uuid.uuid4()
    token = auth.sign_in(issue_dev_token(user_id, DEV_JWT_SECRET), user_id)
    return verify_token(token, get_settings())


def test_a_live_session_is_confirmed_once_per_30_seconds(supabase_auth, monkeypatch) -> None:  # noqa: F811
    user = signed_in(supabase_auth)
    for _ in range(5):
        sessions.confirm_session(user, get_settings())
    assert supabase_auth.calls == 1
    later = sessions.clock() + sessions.CONFIRM_TTL_SECONDS + 1
    monkeypatch.setattr(sessions, "clock", lambda: later)
    sessions.confirm_session(user, get_settings())
    assert supabase_auth.calls == 2


@pytest.mark.parametrize("end", ["sign_out", "delete_user"])
def test_an_ended_session_is_401(supabase_auth, end: str) -> None:  # noqa: F811
    user = signed_in(supabase_auth)
    getattr(supabase_auth, end)(user.token)
    for _ in range(3):
        with pytest.raises(Unauthorized, match="session has ended"):
            sessions.confirm_session(user, get_settings())
    assert supabase_auth.calls == 1  # the refusal is remembered too


def test_a_token_auth_does_not_know_is_401(supabase_auth) -> None:  # noqa: F811
    user = verify_token(issue_dev_token(uuid.uuid4(), DEV_JWT_SECRET), get_settings())
    with pytest.raises(Unauthorized):
        sessions.confirm_session(user, get_settings())


def test_another_users_session_does_not_confirm(supabase_auth) -> None:  # noqa: F811
    """Auth answers for the token's session; it must be the same user the token claims."""
    user = signed_in(supabase_auth)
    supabase_auth.sessions[user.token] = (str(uuid.uuid4()), "live")
    with pytest.raises(Unauthorized):
        sessions.confirm_session(user, get_settings())


@pytest.mark.parametrize("status", [500, 503, 429])
def test_auth_failing_is_503_never_a_pass(supabase_auth, status: int) -> None:  # noqa: F811
    user = signed_in(supabase_auth)
    supabase_auth.status = status
    with pytest.raises(UpstreamUnavailable, match="Supabase Auth"):
        sessions.confirm_session(user, get_settings())
    supabase_auth.status = None  # not remembered: the next attempt asks again
    sessions.confirm_session(user, get_settings())


def test_auth_unreachable_is_503(configure) -> None:
    configure(SUPABASE_URL="http://127.0.0.1:9", SUPABASE_ANON_KEY="k", CAPANDEX_CONFIRM_SESSIONS="true")
    sessions.clear_cache()
    user = verify_token(issue_dev_token(uuid.uuid4(), DEV_JWT_SECRET), get_settings())
    with pytest.raises(UpstreamUnavailable):
        sessions.confirm_session(user, get_settings())


def test_off_locally_unless_asked(configure) -> None:
    settings = configure(SUPABASE_URL="http://127.0.0.1:9", CAPANDEX_CONFIRM_SESSIONS=None)
    assert settings.sessions_confirmed is False
    sessions.confirm_session(verify_token(issue_dev_token(uuid.uuid4(), DEV_JWT_SECRET), settings), settings)


def test_the_token_never_shows_in_a_repr(supabase_auth) -> None:  # noqa: F811
    user = signed_in(supabase_auth)
    assert user.token not in repr(user)
