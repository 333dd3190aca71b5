"""Confirm with Supabase Auth that a session is still live, for actions that move money or secrets.

Access tokens are verified locally (:mod:`capandex.auth.tokens`), which is right for speed but
means a session the user signed out of, or an admin revoked, stays valid until its ``exp`` (an
hour). For the few actions that move money or secrets — save, validate or delete exchange keys,
save the AI key, start a live execution, rotate a webhook — :func:`confirm_session` also asks
Supabase Auth (``GET /auth/v1/user`` through the official client, ``supabase_auth``, the package
``supabase``'s ``client.auth`` is built on: ``auth.get_user(token)``):

- 200 naming the token's user: confirmed, and remembered for :data:`CONFIRM_TTL_SECONDS`
  (30 s) per token in the container, so a session ended elsewhere can act for at most that long;
- 401/403/404 (``session_not_found``, ``bad_jwt``, ``user_not_found``): the session is over →
  :class:`Unauthorized`, also remembered for 30 s so a dead token cannot make us ask again and again;
- unreachable, timed out, 429 or 5xx: :class:`UpstreamUnavailable` (503) for these actions only,
  never a silent pass; every other route keeps working on local verification.

Why ``supabase_auth`` and not the whole ``supabase`` package: ``supabase.create_client(...).auth``
is this same client, and the whole package adds PostgREST, Realtime (websockets), Storage and
Functions clients that nothing here uses: 8.7 MB instead of 1.7 MB in the layer and twice the
import time (1.0 s vs 0.5 s, measured with ``python -X importtime``). It is imported on the first
confirmation, never at cold start.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from capandex.errors import Unauthorized, UpstreamUnavailable
from capandex.ttlcache import TTLCache

if TYPE_CHECKING:
    from capandex.auth.tokens import AuthenticatedUser
    from capandex.config import Settings

logger = logging.getLogger("capandex.auth")

#: seconds a confirmation (or a refusal) of one token is reused in the container
CONFIRM_TTL_SECONDS = 30.0
#: seconds Supabase Auth may take to answer
TIMEOUT_SECONDS = 5.0
#: tokens remembered per container (expired ones, else the oldest, dropped first)
CACHE_ENTRIES = 4096
#: the verdicts' clock (a module attribute, so tests move it instead of waiting)
clock = time.monotonic
#: Auth's answers that mean the session (or the user) is gone
_ENDED = (401, 403, 404)

ENDED_MESSAGE = "This session has ended (signed out or revoked); sign in again."


#: token digest → still live? (the module's ``clock`` read at each call, so tests can move it)
_verdicts = TTLCache(CONFIRM_TTL_SECONDS, max_items=CACHE_ENTRIES, clock=lambda: clock())
_clients: dict[tuple[str, str], Any] = {}
_clients_lock = threading.Lock()


def clear_cache() -> None:
    """Forget every remembered verdict and client (tests)."""
    _verdicts.clear()
    with _clients_lock:
        _clients.clear()


def _client(settings: Settings) -> Any:
    """One ``SyncGoTrueClient`` per (project, key) per container, with our timeout."""
    import httpx
    from supabase_auth import SyncGoTrueClient

    anon_key = settings.supabase_anon_key.get_secret_value() if settings.supabase_anon_key else ""
    key = (settings.supabase_url.rstrip("/"), anon_key)
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            headers = {"apikey": anon_key} if anon_key else {}
            client = _clients[key] = SyncGoTrueClient(
                url=f"{key[0]}/auth/v1", headers=headers, auto_refresh_token=False, persist_session=False,
                http_client=httpx.Client(timeout=TIMEOUT_SECONDS))
    return client


def confirm_session(user: AuthenticatedUser, settings: Settings) -> None:
    """Check with Supabase Auth that ``user``'s session is still live (see the module docstring);
    a no-op when :attr:`Settings.sessions_confirmed` is off.

    Raises:
        Unauthorized: Auth says the session (or the user) is gone, or the token is another user's.
        UpstreamUnavailable: Auth could not be asked (unreachable, timed out, 429, 5xx).
    """
    if not settings.sessions_confirmed:
        return
    digest = hashlib.sha256(user.token.encode()).hexdigest()
    verdict = _verdicts.get(digest)
    if verdict is None:
        verdict = _ask(user, settings)
        _verdicts.put(digest, verdict)
    if not verdict:
        raise Unauthorized(ENDED_MESSAGE)


def _ask(user: AuthenticatedUser, settings: Settings) -> bool:
    """Whether Supabase Auth still knows the session of ``user.token`` as ``user``'s."""
    from supabase_auth.errors import AuthApiError, AuthError

    try:
        answer = _client(settings).get_user(user.token)
    except AuthApiError as exc:
        if exc.status in _ENDED:
            return False
        return _unavailable(exc)
    except (AuthError, OSError) as exc:  # AuthRetryableError: unreachable, timed out, 5xx
        return _unavailable(exc)
    return answer is not None and answer.user.id == str(user.id)


def _unavailable(exc: Exception) -> bool:
    logger.warning("Supabase Auth could not confirm a session: %s", type(exc).__name__)
    raise UpstreamUnavailable("Sign-in could not be confirmed with Supabase Auth (needed for this action); "
                              "try again shortly.") from None
