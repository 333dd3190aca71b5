"""Local files only their owner can read: the embedded defaults' data directory, database and keys.

The data directory (``CAPANDEX_DATA_DIR``) holds the SQLite database (exchange keys sealed, but
every flow, order and notification in clear), the vault master key and cached results, so it is
made 0700 and the database files 0600 whatever the umask. SQLite creates its ``-wal`` and ``-shm``
files with the mode of the database file, so a database created 0600 keeps them 0600 too.
"""

from __future__ import annotations

import os
from pathlib import Path

DIRECTORY_MODE, FILE_MODE = 0o700, 0o600


def private_dir(path: Path, *, tighten: bool = False) -> Path:
    """Create ``path`` (and missing parents) as 0700. ``tighten``: also make an existing ``path``
    0700 (only for directories Capandex owns, such as the data directory)."""
    path.mkdir(mode=DIRECTORY_MODE, parents=True, exist_ok=True)
    if tighten and path.stat().st_mode & 0o777 != DIRECTORY_MODE:
        path.chmod(DIRECTORY_MODE)
    return path


def private_file(path: Path) -> Path:
    """Make sure ``path`` exists with mode 0600 (created so, or tightened), without truncating it;
    its SQLite companions (``-wal``, ``-shm``, ``-journal``), when present, are tightened too."""
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY | getattr(os, "O_NOFOLLOW", 0), FILE_MODE))
    for candidate in (path, *(path.with_name(path.name + suffix) for suffix in ("-wal", "-shm", "-journal"))):
        if candidate.exists() and candidate.stat().st_mode & 0o777 != FILE_MODE:
            candidate.chmod(FILE_MODE)
    return path
