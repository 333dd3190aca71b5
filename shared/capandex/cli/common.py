"""What every command that touches local state shares: saying where that state lives."""

from __future__ import annotations

import sys


def announce_data_dir(*, quiet: bool = False) -> None:
    """Print the data directory (database, vault key, candle store) on stderr, so a command run
    from another folder or with another ``CAPANDEX_DATA_DIR`` cannot silently use other data.
    ``quiet`` (e.g. ``--json``) skips it. Nothing is printed when a database URL is configured
    and no local store is used."""
    from capandex.config import get_settings

    if quiet:
        return
    settings = get_settings()
    database = "" if settings.database_url else " (SQLite database, vault key, candle store)"
    print(f"data: {settings.data_dir}{database}", file=sys.stderr, flush=True)
