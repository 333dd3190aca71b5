"""``capandex token``: a development access token and the matching Supabase cookie header."""

from __future__ import annotations

import argparse
import base64
import json
import uuid


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("token", help="print a development access token for a user")
    parser.add_argument("--user", type=uuid.UUID, default=None, help="user id (uuid); random when omitted")
    parser.add_argument("--ttl", type=int, default=3600, help="lifetime in seconds (default 3600)")
    parser.set_defaults(handler=run)


def session_cookie(name: str, token: str) -> str:
    """The ``Cookie`` header ``@supabase/ssr`` would send for this token (``base64-`` form)."""
    session = {"access_token": token, "token_type": "bearer", "refresh_token": "local-dev"}
    encoded = base64.urlsafe_b64encode(json.dumps(session).encode()).decode().rstrip("=")
    return f"{name}=base64-{encoded}"


def run(args: argparse.Namespace) -> int:
    from capandex.auth import issue_dev_token
    from capandex.config import get_settings
    from capandex.errors import BadRequest

    settings = get_settings()
    secret = settings.jwt_secret() if settings.env == "local" else None
    if secret is None:
        raise BadRequest("capandex token only signs tokens on the embedded defaults (CAPANDEX_ENV=local).")
    user = args.user or uuid.uuid4()
    token = issue_dev_token(user, secret, ttl_seconds=args.ttl,
                            issuer=settings.supabase_jwt_issuer)
    print(f"user:   {user}")
    print(f"token:  {token}")
    print(f"header: Authorization: Bearer {token}")
    print(f"cookie: Cookie: {session_cookie(settings.auth_cookie_name, token)}")
    return 0
