"""Local verification of Supabase access tokens: HS256 and JWKS (ES256/RS256)."""

from __future__ import annotations

import json
import time
import uuid

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from capandex.auth import tokens
from capandex.auth.tokens import issue_dev_token, verify_token
from capandex.config import DEV_JWT_SECRET, Settings
from capandex.errors import Unauthorized
from tests.utils.http_server import LoopbackServer

USER = uuid.UUID("7d0c1c2e-5b2a-4d43-9d0e-3f1f6f0b9a11")
EC_KEY = ec.generate_private_key(ec.SECP256R1())
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _jwk(private_key, kid: str, alg: str) -> dict:
    algorithm = jwt.algorithms.ECAlgorithm if alg == "ES256" else jwt.algorithms.RSAAlgorithm
    return {**json.loads(algorithm.to_jwk(private_key.public_key())), "kid": kid, "alg": alg, "use": "sig"}


def _claims(**overrides) -> dict:
    now = int(time.time())
    return {"sub": str(USER), "aud": "authenticated", "role": "authenticated", "iat": now, "exp": now + 600,
            **overrides}


@pytest.fixture
def jwks_server():
    keys = {"keys": [_jwk(EC_KEY, "ec-1", "ES256"), _jwk(RSA_KEY, "rsa-1", "RS256")]}
    with LoopbackServer({("GET", "/auth/v1/.well-known/jwks.json"): lambda _: (200, keys, {})}) as server:
        tokens._jwks_caches.clear()
        yield server
    tokens._jwks_caches.clear()


#: what every AWS deployment must set besides the Supabase URL (never read by these tests)
AWS_SETTINGS = {"database_url": "ssm:/capandex-test/database-url", "CAPANDEX_VAULT_KMS_KEY_ID": "alias/capandex-test"}


def jwks_only(server: LoopbackServer, **kw) -> Settings:
    return Settings(CAPANDEX_ENV="aws", supabase_url=server.url, **AWS_SETTINGS, **kw)


def test_hs256_dev_token_round_trip() -> None:
    user = verify_token(issue_dev_token(USER, DEV_JWT_SECRET), Settings())
    assert user.id == USER and user.claims["aud"] == "authenticated"


@pytest.mark.parametrize("claims, reason", [
    (_claims(exp=int(time.time()) - 60), "expired"),
    (_claims(aud="anon"), "wrong audience"),
    ({k: v for k, v in _claims().items() if k != "exp"}, "no exp"),
    (_claims(sub="not-a-uuid"), "bad sub"),
])
def test_hs256_claims_are_checked(claims: dict, reason: str) -> None:
    token = jwt.encode(claims, DEV_JWT_SECRET, algorithm="HS256")
    with pytest.raises(Unauthorized):
        verify_token(token, Settings())


def test_wrong_signature() -> None:
    token = jwt.encode(_claims(), "another-secret-that-is-long-enough-for-hs256", algorithm="HS256")
    with pytest.raises(Unauthorized):
        verify_token(token, Settings())


def test_alg_none_is_rejected() -> None:
    token = jwt.encode(_claims(), None, algorithm="none")
    with pytest.raises(Unauthorized):
        verify_token(token, Settings())


def test_issuer_is_checked_when_configured() -> None:
    settings = Settings(supabase_jwt_issuer="https://ref.supabase.co/auth/v1")
    good = jwt.encode(_claims(iss="https://ref.supabase.co/auth/v1"), DEV_JWT_SECRET, algorithm="HS256")
    bad = jwt.encode(_claims(iss="https://evil.example/auth/v1"), DEV_JWT_SECRET, algorithm="HS256")
    assert verify_token(good, settings).id == USER
    with pytest.raises(Unauthorized):
        verify_token(bad, settings)


@pytest.mark.parametrize("key, kid, alg", [(EC_KEY, "ec-1", "ES256"), (RSA_KEY, "rsa-1", "RS256")])
def test_asymmetric_tokens_through_jwks(jwks_server, key, kid: str, alg: str) -> None:
    token = jwt.encode(_claims(), key, algorithm=alg, headers={"kid": kid})
    assert verify_token(token, jwks_only(jwks_server)).id == USER


def test_jwks_is_cached_after_the_first_request(jwks_server) -> None:
    settings = jwks_only(jwks_server)
    for _ in range(5):
        verify_token(jwt.encode(_claims(), EC_KEY, algorithm="ES256", headers={"kid": "ec-1"}), settings)
    assert len(jwks_server.requests) == 1


def test_unknown_kid_refreshes_at_most_once_a_minute(jwks_server) -> None:
    settings = jwks_only(jwks_server)
    verify_token(jwt.encode(_claims(), EC_KEY, algorithm="ES256", headers={"kid": "ec-1"}), settings)
    for i in range(5):
        forged = jwt.encode(_claims(), EC_KEY, algorithm="ES256", headers={"kid": f"forged-{i}"})
        with pytest.raises(Unauthorized):
            verify_token(forged, settings)
    assert len(jwks_server.requests) == 1


def test_hs256_presented_to_a_jwks_only_project(jwks_server) -> None:
    token = jwt.encode(_claims(), DEV_JWT_SECRET, algorithm="HS256")
    with pytest.raises(Unauthorized, match="HS256"):
        verify_token(token, jwks_only(jwks_server))


def test_algorithm_confusion_public_key_as_hmac_secret(jwks_server) -> None:
    """The classic attack: sign HS256 with the public key's PEM, hoping it is used as the secret."""
    pem = RSA_KEY.public_key().public_bytes(serialization.Encoding.PEM,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
    import base64
    import hashlib
    import hmac

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).decode().rstrip("=")

    header = b64(json.dumps({"alg": "HS256", "kid": "rsa-1", "typ": "JWT"}).encode())
    payload = b64(json.dumps(_claims()).encode())
    signature = b64(hmac.new(pem, f"{header}.{payload}".encode(), hashlib.sha256).digest())
    token = f"{header}.{payload}.{signature}"
    with pytest.raises(Unauthorized):
        verify_token(token, jwks_only(jwks_server))
    with pytest.raises(Unauthorized):  # with an HS256 secret configured, the PEM is still not the secret
        verify_token(token, Settings(supabase_url=jwks_server.url))


def test_alg_does_not_match_key_type(jwks_server) -> None:
    """An RS256 header pointing at the EC key is refused before any signature check."""
    token = jwt.encode(_claims(), RSA_KEY, algorithm="RS256", headers={"kid": "ec-1"})
    with pytest.raises(Unauthorized, match="algorithm"):
        verify_token(token, jwks_only(jwks_server))


class FlakyJwks:
    """A JWKS endpoint that can be switched to failing (500) or slow; counts the fetches."""

    def __init__(self) -> None:
        self.failing, self.delay_s, self.fetches = False, 0.0, 0
        self.keys = {"keys": [_jwk(EC_KEY, "ec-1", "ES256")]}

    def __call__(self, _request):
        self.fetches += 1
        time.sleep(self.delay_s)
        return (500, {"message": "upstream down"}, {}) if self.failing else (200, self.keys, {})


@pytest.fixture
def flaky():
    endpoint = FlakyJwks()
    with LoopbackServer({("GET", "/auth/v1/.well-known/jwks.json"): endpoint}) as server:
        tokens._jwks_caches.clear()
        endpoint.settings = jwks_only(server)
        yield endpoint
    tokens._jwks_caches.clear()


class Clock:
    def __init__(self, monkeypatch) -> None:
        self.now = 1_000.0
        monkeypatch.setattr(tokens, "clock", lambda: self.now)


def forged(i: int) -> str:
    return jwt.encode(_claims(), EC_KEY, algorithm="ES256", headers={"kid": f"forged-{i}"})


def test_unknown_kids_while_the_jwks_fails_are_401_with_one_fetch_a_minute(flaky, monkeypatch) -> None:
    """The reproduction: every forged token fetched the JWKS and answered 503 while it failed."""
    clock = Clock(monkeypatch)
    good = jwt.encode(_claims(), EC_KEY, algorithm="ES256", headers={"kid": "ec-1"})
    assert verify_token(good, flaky.settings).id == USER and flaky.fetches == 1
    flaky.failing = True
    for minute in range(1, 4):
        clock.now += 61
        for i in range(20):
            with pytest.raises(Unauthorized, match="unknown key"):
                verify_token(forged(i), flaky.settings)
        assert flaky.fetches == 1 + minute  # one attempt per minute, not one per token
        assert verify_token(good, flaky.settings).id == USER  # the keys held keep working
    flaky.failing = False
    clock.now += 61
    with pytest.raises(Unauthorized):
        verify_token(forged(99), flaky.settings)
    assert flaky.fetches == 5


def test_a_container_that_never_loaded_keys_answers_503_and_fetches_once_a_minute(flaky, monkeypatch) -> None:
    from capandex.errors import UpstreamUnavailable

    clock = Clock(monkeypatch)
    flaky.failing = True
    for i in range(10):
        with pytest.raises(UpstreamUnavailable):
            verify_token(forged(i), flaky.settings)
    assert flaky.fetches == 1
    flaky.failing = False
    clock.now += 61
    good = jwt.encode(_claims(), EC_KEY, algorithm="ES256", headers={"kid": "ec-1"})
    assert verify_token(good, flaky.settings).id == USER and flaky.fetches == 2


def test_no_lock_is_held_while_the_jwks_is_fetched(flaky, monkeypatch) -> None:
    """A slow JWKS fetch (for an unknown kid) does not hold up requests with a known key."""
    import threading

    clock = Clock(monkeypatch)
    good = jwt.encode(_claims(), EC_KEY, algorithm="ES256", headers={"kid": "ec-1"})
    verify_token(good, flaky.settings)
    clock.now += 61
    flaky.delay_s = 1.5
    outcomes = []

    def fetching_request() -> None:
        try:
            verify_token(forged(1), flaky.settings)
        except Unauthorized as exc:
            outcomes.append(exc)

    slow = threading.Thread(target=fetching_request)
    slow.start()
    while flaky.fetches < 2:
        time.sleep(0.01)
    started = time.perf_counter()
    assert verify_token(good, flaky.settings).id == USER
    with pytest.raises(Unauthorized):  # a second unknown kid does not wait for (or repeat) the fetch
        verify_token(forged(2), flaky.settings)
    assert time.perf_counter() - started < 1.0
    slow.join()
    assert flaky.fetches == 2 and len(outcomes) == 1


def test_dev_secret_is_refused_outside_local() -> None:
    with pytest.raises(ValueError, match="development secret"):
        Settings(CAPANDEX_ENV="aws", supabase_jwt_secret=DEV_JWT_SECRET)
