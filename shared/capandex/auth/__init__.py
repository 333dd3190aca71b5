"""Supabase sign-in, verified locally: session cookies, bearer tokens, HS256 and JWKS keys."""

from capandex.auth.cookies import token_from_cookies
from capandex.auth.tokens import AuthenticatedUser, issue_dev_token, verify_token

__all__ = ["AuthenticatedUser", "issue_dev_token", "token_from_cookies", "verify_token"]
