"""The @supabase/ssr cookie in all its forms."""

from __future__ import annotations

import base64
import json

import pytest

from capandex.auth.cookies import token_from_cookies
from capandex.errors import Unauthorized

NAME = "sb-abcdefgh-auth-token"
SESSION = {"access_token": "header.payload.signature", "refresh_token": "r", "token_type": "bearer"}


def b64(value: str) -> str:
    return "base64-" + base64.urlsafe_b64encode(value.encode()).decode().rstrip("=")


def test_base64_cookie() -> None:
    assert token_from_cookies({NAME: b64(json.dumps(SESSION))}, NAME) == "header.payload.signature"


def test_plain_json_cookie_url_encoded() -> None:
    from urllib.parse import quote

    assert token_from_cookies({NAME: quote(json.dumps(SESSION))}, NAME) == "header.payload.signature"


def test_chunked_cookie_is_joined_in_order() -> None:
    value = b64(json.dumps({**SESSION, "padding": "x" * 5000}))
    chunks = [value[i:i + 3180] for i in range(0, len(value), 3180)]
    assert len(chunks) == 3
    cookies = {f"{NAME}.{i}": chunk for i, chunk in enumerate(chunks)}
    assert token_from_cookies(cookies, NAME) == "header.payload.signature"


def test_legacy_array_form() -> None:
    assert token_from_cookies({NAME: json.dumps(["legacy.token.value", "refresh"])}, NAME) == "legacy.token.value"


def test_missing_cookie_is_none() -> None:
    assert token_from_cookies({"other": "x"}, NAME) is None


@pytest.mark.parametrize("value", [
    "base64-%%%not-base64",
    b64("{not json"),
    b64(json.dumps({"no_token": True})),
    b64(json.dumps(SESSION))[:-10],  # truncated
    json.dumps([]),
])
def test_broken_cookie_is_unauthorized(value: str) -> None:
    with pytest.raises(Unauthorized):
        token_from_cookies({NAME: value}, NAME)


def test_chunks_with_a_hole_stop_at_the_hole() -> None:
    value = b64(json.dumps(SESSION))
    with pytest.raises(Unauthorized):  # .0 and .2 without .1: only .0 is read, which is truncated
        token_from_cookies({f"{NAME}.0": value[:20], f"{NAME}.2": value[20:]}, NAME)
