"""SnapStart: what an execution environment restored from a snapshot must not share with the others.

With SnapStart (``template.yaml``: the API and chat functions), Lambda runs a function's init once
when a version is published, snapshots the memory, and starts every new execution environment
from that snapshot. Whatever init created is then shared by every environment: it must hold no
connection, no credential and no randomness. What Capandex's init does and why that is safe:

- **Connections.** None are opened at import: the database engine uses ``NullPool`` and is
  created on first use; boto3, ccxt and Anthropic clients are created on first use; secrets
  (``ssm:``/``secretsmanager:`` references) are fetched on first use. :func:`before_snapshot`
  still drops any engine or exchange client, so a future warm-up at import cannot smuggle a
  socket into the snapshot.
- **Randomness.** ``uuid4``, ``secrets`` and the vault's nonces read ``os.urandom`` every time,
  which the runtime reseeds on restore. Python's ``random`` module is seeded once, at import:
  every restored environment would draw the same sequence (jitter of retries, Powertools' log
  sampling), so :func:`after_restore` reseeds it.
- **Time.** Nothing caches "now" at import; the JWKS cache starts empty.

Hooks are registered through ``snapshot_restore_py``, which Lambda's Python runtime provides (the
layer does not ship it: a copy in ``/opt/python`` would shadow the runtime's registry). Outside
Lambda the import fails and :func:`register` does nothing.
"""

from __future__ import annotations

import random

_registered = False


def register() -> None:
    """Register the hooks with the runtime (once; a no-op where ``snapshot_restore_py`` is absent)."""
    global _registered
    if _registered:
        return
    try:
        from snapshot_restore_py import register_after_restore, register_before_snapshot
    except ImportError:  # not on Lambda's Python runtime: no snapshot will be taken
        return
    register_before_snapshot(before_snapshot)
    register_after_restore(after_restore)
    _registered = True


def before_snapshot() -> None:
    """Close whatever could hold a socket, so none is frozen into the snapshot."""
    import sys

    session = sys.modules.get("capandex.db.session")
    if session is not None:
        session.dispose_engines()
    clients = sys.modules.get("capandex.exchanges.client")
    if clients is not None:
        clients.clear_clients()


def after_restore() -> None:
    """Give this environment its own random sequence."""
    random.seed()
