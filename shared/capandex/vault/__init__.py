"""The vault: envelope encryption (AES-256-GCM) of users' exchange and Anthropic keys.

Public names:

- :func:`get_vault` → :class:`Vault` with ``seal(values, ctx)``, ``open(sealed, ctx)``,
  ``rewrap(sealed, ctx)``;
- :class:`VaultContext` (user id, record id, purpose) — what every ciphertext is bound to;
- :class:`Sealed` (the stored JSON form, see :mod:`capandex.vault.envelope`), :class:`Revealed`;
- :class:`VaultError` (500 ``vault_error``): tampered, moved or unopenable secret;
- :func:`rewrap_all` / :func:`key_versions` for ``capandex vault rotate`` / ``status``.
"""

from capandex.vault.envelope import Revealed, Sealed, VaultContext, VaultError
from capandex.vault.rotate import (
    PURPOSE_AI_KEY,
    PURPOSE_EXCHANGE_KEY,
    RotationReport,
    key_versions,
    rewrap_all,
)
from capandex.vault.vault import Vault, get_vault, master_key_path

__all__ = [
    "PURPOSE_AI_KEY",
    "PURPOSE_EXCHANGE_KEY",
    "Revealed",
    "RotationReport",
    "Sealed",
    "Vault",
    "VaultContext",
    "VaultError",
    "get_vault",
    "key_versions",
    "master_key_path",
    "rewrap_all",
]
