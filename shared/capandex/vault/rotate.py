"""Key rotation: re-wrap every record's data key under the current key.

``capandex vault rotate`` first adds a new local master key version (on the embedded defaults;
in AWS, KMS rotates its key material itself and ``CAPANDEX_VAULT_KMS_KEY_ID`` names the key to
move to), then re-wraps each sealed record that is not yet under the current key. Only data keys
are unwrapped and re-wrapped (in KMS with ``ReEncrypt``, so there not even they leave KMS); the
field ciphertexts are copied unchanged, so no secret is ever decrypted. Each record is re-wrapped
in its own short transaction with the row locked, so the API keeps working during a rotation and
an interrupted rotation can simply be run again.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field

from sqlalchemy import Engine, Table, select, update

from capandex.db.schema import ai_keys, exchange_keys
from capandex.errors import UpstreamUnavailable
from capandex.vault.envelope import Sealed, VaultContext, VaultError
from capandex.vault.vault import Vault

logger = logging.getLogger("capandex.vault")

#: The purpose every sealed record of a table is bound to (part of its associated data).
PURPOSE_EXCHANGE_KEY = "exchange_key"
PURPOSE_AI_KEY = "ai_key"

#: Every table with a ``sealed`` column, and the purpose its records are sealed for.
SEALED_TABLES: tuple[tuple[Table, str], ...] = ((exchange_keys, PURPOSE_EXCHANGE_KEY), (ai_keys, PURPOSE_AI_KEY))


@dataclass
class RotationReport:
    """What a rotation did: the key new records use, and records re-wrapped / already current per table."""

    current: str
    rewrapped: Counter[str] = field(default_factory=Counter)
    unchanged: Counter[str] = field(default_factory=Counter)
    #: ids of records that could not be opened (tampered, or wrapped by a key this vault lacks)
    failed: list[str] = field(default_factory=list)

    def summary(self) -> str:
        moved, kept = sum(self.rewrapped.values()), sum(self.unchanged.values())
        per_table = ", ".join(f"{t} {n}" for t, n in sorted(self.rewrapped.items())) or "none"
        text = f"current key {self.current}; re-wrapped {moved} record(s) ({per_table}); {kept} already current"
        if self.failed:
            text += f"; {len(self.failed)} could not be re-wrapped: {', '.join(self.failed[:20])}"
        return text


def key_versions(engine: Engine) -> Counter[str]:
    """How many sealed records each key version wraps (``local:2``, ``kms:arn:…``; ``unreadable``
    for a malformed record)."""
    counts: Counter[str] = Counter()
    with engine.connect() as conn:
        for table, _ in SEALED_TABLES:
            for (doc,) in conn.execute(select(table.c.sealed)):
                try:
                    counts[Sealed.from_json(doc).key_version] += 1
                except VaultError:
                    counts["unreadable"] += 1
    return counts


def rewrap_all(engine: Engine, vault: Vault) -> RotationReport:
    """Re-wrap every sealed record not under ``vault``'s current key."""
    from capandex.db.session import transaction

    report = RotationReport(current=vault.current.current_version())
    for table, purpose in SEALED_TABLES:
        with engine.connect() as conn:
            ids = [row.id for row in conn.execute(select(table.c.id).order_by(table.c.id))]
        for record_id in ids:
            with transaction(engine=engine) as conn:
                query = select(table.c.user_id, table.c.sealed).where(table.c.id == record_id)
                if conn.dialect.name == "postgresql":
                    query = query.with_for_update()
                row = conn.execute(query).first()
                if row is None:  # deleted meanwhile
                    continue
                ctx = VaultContext(user_id=str(row.user_id), record_id=record_id, purpose=purpose)
                try:
                    moved = vault.rewrap(row.sealed, ctx)
                except (VaultError, UpstreamUnavailable):
                    # one bad record (or one whose KMS key cannot be reached) must not stop the
                    # rotation of all others; it is reported and the exit code says so
                    logger.warning("vault record could not be re-wrapped", extra={"record_id": record_id})
                    report.failed.append(record_id)
                    continue
                if moved is None:
                    report.unchanged[table.name] += 1
                    continue
                conn.execute(update(table).where(table.c.id == record_id).values(sealed=moved.to_json()))
                report.rewrapped[table.name] += 1
    logger.info("vault rotation done", extra={"rewrapped": sum(report.rewrapped.values()),
                                              "current": report.current})
    return report
