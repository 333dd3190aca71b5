"""Users' exchange API keys and Anthropic API key: sealed in :mod:`capandex.vault`, checked against
the real services, never returned.

- :mod:`capandex.keys.exchange` — ``load_credentials(conn, *, user_id, key_id)`` and the CRUD and
  validation behind ``/api/exchange-keys``;
- :mod:`capandex.keys.ai` — ``load_ai_key(conn, *, user_id)``, ``save_ai_key(...)`` and
  ``/api/ai-keys``;
- :mod:`capandex.keys.balance` — ``dashboard_balance(user_id=...)`` for ``/api/dashboard/balance``.

Submodules are imported explicitly (``from capandex.keys.exchange import load_credentials``), so
importing one does not pull in the others' dependencies.
"""
