"""Verify Supabase access tokens locally, with no network call per request.

Asymmetric projects sign with ES256 or RS256; their public keys come from the project's JWKS,
fetched once and cached (an unknown ``kid`` refreshes the set at most once a minute, so a flood of
forged tokens cannot turn into a flood of outbound requests). Legacy projects and local
development sign with HS256 and ``SUPABASE_JWT_SECRET``. The algorithm a token may use is fixed
by where its key comes from (HS256 only with the shared secret, ES256/RS256 only with a JWKS key
of the matching type), which rules out ``alg: none`` and algorithm confusion.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
import uuid
from dataclasses import dataclass
from typing import Any

import jwt

from capandex.config import Settings
from capandex.errors import Unauthorized, UpstreamUnavailable

ASYMMETRIC_KEY_TYPES = {"ES256": "EC", "RS256": "RSA"}
JWKS_REFRESH_SECONDS = 60.0
JWKS_MAX_AGE_SECONDS = 3600.0


@dataclass(frozen=True)
class AuthenticatedUser:
    """Who made the request: Supabase's user id (``sub``) and the verified claims."""

    id: uuid.UUID
    claims: dict[str, Any]


class JwksCache:
    """The project's signing keys by ``kid``, fetched lazily and refreshed rarely."""

    def __init__(self, url: str, timeout: float = 5.0) -> None:
        self.url, self.timeout = url, timeout
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at = float("-inf")
        self._lock = threading.Lock()

    def key(self, kid: str | None) -> jwt.PyJWK:
        with self._lock:
            age = time.monotonic() - self._fetched_at
            if (kid not in self._keys and age > JWKS_REFRESH_SECONDS) or age > JWKS_MAX_AGE_SECONDS:
                self._refresh()
            found = self._keys.get(kid or "")
        if found is None:
            raise Unauthorized("The token is signed with an unknown key; sign in again.")
        return found

    def _refresh(self) -> None:
        try:
            with urllib.request.urlopen(self.url, timeout=self.timeout) as response:
                document = json.load(response)
        except (OSError, ValueError) as exc:
            if self._keys:  # keep serving the keys we have; retry after the refresh interval
                self._fetched_at = time.monotonic()
                return
            raise UpstreamUnavailable("The sign-in keys (JWKS) could not be fetched; try again shortly.") from exc
        keys = {}
        for entry in document.get("keys", []):
            try:
                keys[entry.get("kid", "")] = jwt.PyJWK.from_dict(entry)
            except jwt.PyJWTError:
                continue  # a key type we do not use (e.g. an "oct" key) is not an error
        self._keys, self._fetched_at = keys, time.monotonic()


_jwks_caches: dict[str, JwksCache] = {}


def _jwks(settings: Settings) -> JwksCache:
    url = settings.jwks_url
    if url not in _jwks_caches:
        _jwks_caches[url] = JwksCache(url)
    return _jwks_caches[url]


def _signing_key(token: str, settings: Settings) -> tuple[Any, str]:
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise Unauthorized("The access token is malformed; sign in again.") from exc
    alg = header.get("alg")
    if alg == "HS256":
        secret = settings.jwt_secret()
        if secret is None:
            raise Unauthorized("HS256 tokens are not accepted by this project; sign in again.")
        return secret, alg
    if alg in ASYMMETRIC_KEY_TYPES:
        jwk = _jwks(settings).key(header.get("kid"))
        if jwk.key_type != ASYMMETRIC_KEY_TYPES[alg] or (jwk.algorithm_name not in (None, alg)):
            raise Unauthorized("The token's algorithm does not match its key; sign in again.")
        return jwk.key, alg
    raise Unauthorized("The access token uses an unsupported algorithm; sign in again.")


def verify_token(token: str, settings: Settings) -> AuthenticatedUser:
    """Verify signature, ``exp``, ``aud`` and (when configured) ``iss``; return the user.

    Raises :class:`Unauthorized` for anything short of a valid, current token.
    """
    key, alg = _signing_key(token, settings)
    try:
        claims = jwt.decode(
            token, key, algorithms=[alg], audience=settings.jwt_audience,
            issuer=settings.supabase_jwt_issuer,
            options={"require": ["exp", "sub", "aud"], "verify_iss": settings.supabase_jwt_issuer is not None},
            leeway=5,
        )
    except jwt.ExpiredSignatureError as exc:
        raise Unauthorized("The session has expired; sign in again.") from exc
    except jwt.PyJWTError as exc:
        raise Unauthorized("The access token is invalid; sign in again.") from exc
    try:
        user_id = uuid.UUID(str(claims["sub"]))
    except ValueError as exc:
        raise Unauthorized("The access token names no valid user; sign in again.") from exc
    return AuthenticatedUser(id=user_id, claims=claims)


def issue_dev_token(user_id: uuid.UUID, secret: str, *, ttl_seconds: int = 3600,
                    audience: str = "authenticated", issuer: str | None = None) -> str:
    """An HS256 access token shaped like Supabase's, for local development and tests."""
    now = int(time.time())
    claims: dict[str, Any] = {"sub": str(user_id), "aud": audience, "role": "authenticated",
                              "iat": now, "exp": now + ttl_seconds}
    if issuer:
        claims["iss"] = issuer
    return jwt.encode(claims, secret, algorithm="HS256")
