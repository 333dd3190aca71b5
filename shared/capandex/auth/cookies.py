"""Read the access token out of the cookie that ``@supabase/ssr`` sets.

The cookie is ``sb-<ref>-auth-token``. Its value is ``base64-`` + base64url(JSON) without padding,
or the raw JSON; values longer than 3180 characters are split into ``<name>.0``, ``<name>.1``, …
which are joined in order before decoding. The JSON is the session object (``access_token`` is
the JWT); older auth-helpers wrote a JSON array whose first item is the access token.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from urllib.parse import unquote

from capandex import safejson
from capandex.errors import Unauthorized

BASE64_PREFIX = "base64-"


def _joined_value(cookies: Mapping[str, str], name: str) -> str | None:
    if name in cookies:
        return cookies[name]
    chunks: list[str] = []
    while (chunk := cookies.get(f"{name}.{len(chunks)}")) is not None:
        chunks.append(chunk)
    return "".join(chunks) or None


def _decode(value: str) -> object:
    value = unquote(value)
    if value.startswith(BASE64_PREFIX):
        encoded = value[len(BASE64_PREFIX):]
        try:
            value = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
            raise Unauthorized("The session cookie is not valid base64; sign in again.") from exc
    try:  # strict and depth-bounded: a cookie of 3,000 "[" must not exhaust the parser's stack
        return safejson.loads(value)
    except safejson.UnsafeJson as exc:
        raise Unauthorized("The session cookie is not a valid session; sign in again.") from exc


def token_from_cookies(cookies: Mapping[str, str], name: str) -> str | None:
    """The access token in the ``name`` cookie (joining chunks), or None when there is no cookie.

    Raises :class:`Unauthorized` when a cookie is present but cannot be decoded.
    """
    value = _joined_value(cookies, name)
    if value is None:
        return None
    session = _decode(value)
    if isinstance(session, dict):
        token = session.get("access_token")
    elif isinstance(session, list) and session:
        token = session[0]
    else:
        token = None
    if not isinstance(token, str) or not token:
        raise Unauthorized("The session cookie holds no access token; sign in again.")
    return token
