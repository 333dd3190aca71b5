"""``capandex vault rotate|status``: rotate the vault's master key and re-wrap data keys.

``rotate`` adds a new local master key version (embedded defaults; in AWS the KMS key named by
``CAPANDEX_VAULT_KMS_KEY_ID`` is the target and KMS rotates its own material), then re-wraps every
stored data key under the current key. No secret is decrypted. Records that cannot be opened
(tampered, or wrapped by a key this deployment lacks) are listed and make the exit status 1; the
others are re-wrapped regardless. ``status`` counts records per key.
"""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("vault", help="vault key rotation")
    parser.add_argument("action", choices=["rotate", "status"],
                        help="rotate: new master key version + re-wrap every data key; "
                             "status: records per key version")
    parser.add_argument("--no-new-key", action="store_true",
                        help="rotate: only re-wrap records onto the current key (e.g. to finish an "
                             "interrupted rotation or after changing CAPANDEX_VAULT_KMS_KEY_ID)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from capandex.config import get_settings
    from capandex.db.session import get_engine
    from capandex.vault import get_vault, key_versions, rewrap_all
    from capandex.vault.keyrings import LocalKeyring

    settings = get_settings()
    engine = get_engine()
    vault = get_vault(settings)
    if args.action == "status":
        print(f"current key: {vault.current.current_version()}")
        for version, count in sorted(key_versions(engine).items()):
            print(f"{version}: {count} record(s)")
        return 0
    if not args.no_new_key and isinstance(vault.current, LocalKeyring):
        print(f"new master key version {vault.current.rotate()}")
    report = rewrap_all(engine, vault)
    print(report.summary())
    return 1 if report.failed else 0
