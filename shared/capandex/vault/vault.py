"""The vault: seal and open a record's secret fields with envelope encryption.

>>> ctx = VaultContext(user_id=str(user_id), record_id="key_…", purpose="exchange_key")
>>> sealed = vault.seal({"api_key": "…", "secret": "…"}, ctx)        # → Sealed
>>> row["sealed"] = sealed.to_json()                                    # JSON column
>>> vault.open(row["sealed"], ctx)["secret"]                            # → str, or VaultError

Which keyring wraps new data keys: KMS when ``CAPANDEX_VAULT_KMS_KEY_ID`` is set (always in AWS:
there a local key file would vanish with the container, so it is refused), otherwise the local
master key file. Opening uses the keyring named in the record, so records keep opening while a
deployment moves from one to the other (``capandex vault rotate`` moves them).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from capandex.vault.envelope import (
    Revealed,
    Sealed,
    VaultContext,
    VaultError,
    check_field_name,
    decrypt_field,
    encrypt_field,
)
from capandex.vault.keyrings import Keyring, KmsKeyring, LocalKeyring

if TYPE_CHECKING:
    from capandex.config import Settings


class Vault:
    """Envelope encryption over one *current* keyring (for new records) and the keyrings that can
    open older records.

    Args:
        current: the keyring new data keys come from (``LocalKeyring`` or ``KmsKeyring``).
        others: keyrings for records wrapped elsewhere, by their ``by`` name (``local``/``kms``).
    """

    def __init__(self, current: Keyring, others: Mapping[str, Keyring] | None = None) -> None:
        self.current = current
        self._keyrings: dict[str, Keyring] = {**(others or {}), current.by: current}

    def _keyring(self, sealed: Sealed) -> Keyring:
        keyring = self._keyrings.get(str(sealed.wrap.get("by")))
        if keyring is None:
            raise VaultError(f"This deployment cannot open secrets wrapped by {sealed.wrap.get('by')!r}.")
        return keyring

    def seal(self, values: Mapping[str, str | None], ctx: VaultContext) -> Sealed:
        """Encrypt each non-``None`` value of ``values`` under a new data key bound to ``ctx``."""
        data_key, wrap, wrapped = self.current.generate(ctx)
        fields: dict[str, bytes] = {}
        for name, value in values.items():
            check_field_name(name)
            if value is not None:
                fields[name] = encrypt_field(data_key, value, ctx.aad("field", name))
        return Sealed(wrap=wrap, key=wrapped, fields=fields)

    def open(self, sealed: Sealed | Mapping[str, Any] | str, ctx: VaultContext) -> Revealed:
        """Decrypt every field. Anything altered, or a record used under another ``ctx`` (user,
        record, purpose) or field name → :class:`VaultError`; never partial or garbage output."""
        sealed = Sealed.from_json(sealed)
        data_key = self._keyring(sealed).unwrap(dict(sealed.wrap), sealed.key, ctx)
        return Revealed({name: decrypt_field(data_key, blob, ctx.aad("field", name))
                         for name, blob in sealed.fields.items()})

    def rewrap(self, sealed: Sealed | Mapping[str, Any] | str, ctx: VaultContext) -> Sealed | None:
        """The record with its data key wrapped under the current key (``None`` when it already
        is). The field ciphertexts are copied unchanged: no secret is decrypted."""
        sealed = Sealed.from_json(sealed)
        source = self._keyring(sealed)
        if source is self.current:
            moved = self.current.rewrap(dict(sealed.wrap), sealed.key, ctx)
        else:  # another keyring (local → KMS): unwrap there, wrap here
            moved = self.current.wrap(source.unwrap(dict(sealed.wrap), sealed.key, ctx), ctx)
        if moved is None:
            return None
        wrap, wrapped = moved
        return Sealed(wrap=wrap, key=wrapped, fields=dict(sealed.fields))


_vaults: dict[tuple[Any, ...], Vault] = {}
_vaults_lock = threading.Lock()


def master_key_path(settings: Settings) -> Path:
    return Path(settings.vault_master_key_file or settings.data_dir / "vault-master-key.json")


def get_vault(settings: Settings | None = None, *, kms_client: Any = None) -> Vault:
    """The vault for ``settings`` (default: the process settings), built once per configuration.

    Args:
        kms_client: a boto3 KMS client to use (tests pass one created inside ``moto.mock_aws``);
            without it one is created on first KMS call. Giving one bypasses the cache.
    """
    if settings is None:
        from capandex.config import get_settings

        settings = get_settings()
    key = (settings.env, settings.vault_kms_key_id, str(master_key_path(settings)))
    if kms_client is not None:
        return _build(settings, kms_client)
    with _vaults_lock:
        vault = _vaults.get(key)
        if vault is None:
            vault = _vaults[key] = _build(settings, None)
        return vault


def _build(settings: Settings, kms_client: Any) -> Vault:
    kms = KmsKeyring(settings.vault_kms_key_id, client=kms_client)  # region: AWS_REGION (boto3)
    if settings.env != "local":
        # In AWS only KMS: a key file in a Lambda container would be lost with the container.
        if not settings.vault_kms_key_id:
            raise VaultError("CAPANDEX_VAULT_KMS_KEY_ID must be set outside the embedded defaults.")
        return Vault(kms)
    local = LocalKeyring(master_key_path(settings))
    if settings.vault_kms_key_id:
        return Vault(kms, {"local": local})
    return Vault(local, {"kms": kms})
