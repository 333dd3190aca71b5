"""Request-scoped dependencies, declared once and named as typed parameters in every route.

``CurrentUser`` decides every authentication question (cookie or bearer, signature, expiry,
audience); ``ConfirmedUser`` adds Supabase Auth's word that the session is still live (for the
routes that move money or secrets); ``Db`` is one transaction per request, scoped to that user
(see :mod:`capandex.db.session`). Routes never parse credentials or open connections themselves.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Connection

from capandex.auth import AuthenticatedUser, token_from_cookies, verify_token
from capandex.config import Settings, get_settings
from capandex.errors import Unauthorized

SettingsDep = Annotated[Settings, Depends(get_settings)]


def _bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("The Authorization header must be 'Bearer <access token>'.")
    return token.strip()


#: The two ways to sign in, declared for the OpenAPI document (its Authorize button) only: with
#: ``auto_error=False`` they never refuse a request, and the credentials are read below (the cookie
#: may be split into ``.0``, ``.1`` … chunks, which a single-name scheme cannot express). The cookie's
#: real name depends on ``SUPABASE_URL``; the document is given it when it is built.
BEARER_SCHEME = HTTPBearer(auto_error=False, scheme_name="bearerAuth", bearerFormat="JWT",
                           description="A Supabase access token (`capandex token --user <uuid>` prints one).")
COOKIE_SCHEME = APIKeyCookie(name="sb-<ref>-auth-token", auto_error=False, scheme_name="supabaseCookie",
                             description="The `@supabase/ssr` session cookie the dashboard sends.")


def get_current_user(request: Request, settings: SettingsDep,
                     _bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER_SCHEME)] = None,
                     _cookie: Annotated[str | None, Depends(COOKIE_SCHEME)] = None) -> AuthenticatedUser:
    """The signed-in user, from ``Authorization: Bearer`` or the Supabase session cookie."""
    token = _bearer_token(request) or token_from_cookies(request.cookies, settings.auth_cookie_name)
    if token is None:
        raise Unauthorized("Sign in first: no session cookie or bearer token was sent.")
    user = verify_token(token, settings)
    request.state.user_id = str(user.id)
    return user


CurrentUser = Annotated[AuthenticatedUser, Depends(get_current_user)]


def get_confirmed_user(user: CurrentUser, settings: SettingsDep) -> AuthenticatedUser:
    """The signed-in user, whose session Supabase Auth has also just confirmed is live (cached
    30 s): for actions that move money or secrets (:mod:`capandex.auth.sessions`)."""
    from capandex.auth.sessions import confirm_session

    confirm_session(user, settings)
    return user


#: ``CurrentUser`` for money- and secret-moving routes: a signed-out session cannot act (401),
#: and an unreachable Supabase Auth is a 503 for these routes only
ConfirmedUser = Annotated[AuthenticatedUser, Depends(get_confirmed_user)]


def get_db(user: CurrentUser) -> Iterator[Connection]:
    """One transaction for the request, as the signed-in user (committed when the route returns)."""
    from capandex.db.session import transaction

    with transaction(user.id) as conn:
        yield conn


# scope="function": commit before the response is sent, so a client that reads its own write sees it
# and a failed commit becomes an error response instead of a lost write.
Db = Annotated[Connection, Depends(get_db, scope="function")]
