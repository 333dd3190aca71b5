"""Verify Supabase access tokens locally, with no network call per request.

Asymmetric projects sign with ES256 or RS256; their public keys come from the project's JWKS,
fetched once and cached (the set is fetched at most once a minute in total, whatever the ``kid``s
presented and whether the endpoint answers, so a flood of forged tokens cannot turn into a flood
of outbound requests; no lock is held while it is fetched, see :class:`JwksCache`). Legacy projects and local
development sign with HS256 and ``SUPABASE_JWT_SECRET``. The algorithm a token may use is fixed
by where its key comes from (HS256 only with the shared secret, ES256/RS256 only with a JWKS key
of the matching type), which rules out ``alg: none`` and algorithm confusion.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from typing import Any

import jwt

from capandex.config import Settings
from capandex.errors import Unauthorized, UpstreamUnavailable

logger = logging.getLogger("capandex.auth")

ASYMMETRIC_KEY_TYPES = {"ES256": "EC", "RS256": "RSA"}
JWKS_REFRESH_SECONDS = 60.0
JWKS_MAX_AGE_SECONDS = 3600.0
#: the JWKS cache's clock (a module attribute, so tests move it instead of waiting a minute)
clock = time.monotonic


@dataclass(frozen=True)
class AuthenticatedUser:
    """Who made the request: Supabase's user id (``sub``), the verified claims, and the access
    token itself (to confirm the session with Supabase Auth: :mod:`capandex.auth.sessions`;
    never shown in a repr)."""

    id: uuid.UUID
    claims: dict[str, Any]
    token: str = field(default="", repr=False)


class JwksCache:
    """The project's signing keys by ``kid``, fetched lazily and refreshed rarely.

    At most one fetch is attempted per :data:`JWKS_REFRESH_SECONDS` in total, successful or not,
    however many unknown ``kid`` values arrive (a forged token must not become an outbound
    request, and a failing JWKS endpoint must not be hammered). The lock guards only the cache's
    fields, never the network call: while one request fetches, the others answer from the keys
    already held (an unknown ``kid`` is then a 401 at once, not a wait). When the endpoint fails,
    the keys held keep being served; only a container that never loaded any keys answers 503.
    """

    def __init__(self, url: str, timeout: float = 5.0) -> None:
        self.url, self.timeout = url, timeout
        self._keys: dict[str, jwt.PyJWK] = {}
        self._loaded_at = float("-inf")  # last successful fetch
        self._attempted_at = float("-inf")  # last fetch started, successful or not
        self._fetching = False
        self._lock = threading.Lock()

    def key(self, kid: str | None) -> jwt.PyJWK:
        """The key ``kid`` names. :class:`Unauthorized` for a key the project does not publish;
        :class:`UpstreamUnavailable` when no key was ever loaded and the JWKS cannot be fetched."""
        if self._claim_fetch(kid):
            try:
                keys = self._fetch()
            except (OSError, ValueError) as exc:
                logger.warning("JWKS fetch failed; next attempt in %.0f s: %s", JWKS_REFRESH_SECONDS, exc,
                               extra={"jwks_url": self.url})
                keys = None
            with self._lock:
                self._fetching = False
                if keys is not None:
                    self._keys, self._loaded_at = keys, clock()
        with self._lock:
            found, loaded = self._keys.get(kid or ""), bool(self._keys)
        if found is not None:
            return found
        if not loaded:
            raise UpstreamUnavailable("The sign-in keys (JWKS) could not be fetched; try again shortly.")
        raise Unauthorized("The token is signed with an unknown key; sign in again.")

    def _claim_fetch(self, kid: str | None) -> bool:
        """Whether this caller should fetch now (and, if so, mark the attempt under the lock)."""
        now = clock()
        with self._lock:
            wanted = (kid or "") not in self._keys or now - self._loaded_at > JWKS_MAX_AGE_SECONDS
            if not wanted or self._fetching or now - self._attempted_at < JWKS_REFRESH_SECONDS:
                return False
            self._fetching, self._attempted_at = True, now
            return True

    def _fetch(self) -> dict[str, jwt.PyJWK]:
        with urllib.request.urlopen(self.url, timeout=self.timeout) as response:
            document = json.load(response)
        keys = {}
        for entry in document.get("keys", []):
            try:
                keys[entry.get("kid", "")] = jwt.PyJWK.from_dict(entry)
            except jwt.PyJWTError:
                continue  # a key type we do not use (e.g. an "oct" key) is not an error
        return keys


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
    return AuthenticatedUser(id=user_id, claims=claims, token=token)


def issue_dev_token(user_id: uuid.UUID, secret: str, *, ttl_seconds: int = 3600,
                    audience: str = "authenticated", issuer: str | None = None) -> str:
    """An HS256 access token shaped like Supabase's, for local development and tests."""
    now = int(time.time())
    claims: dict[str, Any] = {"sub": str(user_id), "aud": audience, "role": "authenticated",
                              "iat": now, "exp": now + ttl_seconds}
    if issuer:
        claims["iss"] = issuer
    return jwt.encode(claims, secret, algorithm="HS256")
