"""Everything aigw writes is its owner's alone: the data dir holds every user's documents, chats and key hashes.

The process's umask is set to 077 before anything is written, so the data dir is created 0700 and every file in
it (the SQLite database and its journal, uploads, the secret, model exports, graphs) 0600, whichever library
writes it. A data dir made looser by hand, or by a version before this, is reported by `aigw doctor`.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

PRIVATE_UMASK = 0o077


def keep_files_private() -> None:
    """Set the process's umask so that new files and directories are for the owner only (children inherit it)."""
    os.umask(PRIVATE_UMASK)


def make_private_dir(path: Path) -> None:
    keep_files_private()
    path.mkdir(mode=0o700, parents=True, exist_ok=True)


def loose_paths(data_dir: Path, limit: int = 20) -> list[tuple[Path, int]]:
    """The data dir and the files and directories in it that other accounts can read, write or enter, with their
    modes: at most `limit` of them, the data dir first."""
    found: list[tuple[Path, int]] = []
    if not data_dir.exists():
        return found
    for root, dirs, files in os.walk(data_dir):
        for name in [None, *dirs, *files]:
            path = Path(root) if name is None else Path(root) / name
            if name is not None and name in dirs:
                continue  # a directory is checked when the walk enters it
            try:
                mode = stat.S_IMODE(path.lstat().st_mode)
            except OSError:
                continue
            if mode & 0o077 and not path.is_symlink():
                found.append((path, mode))
                if len(found) >= limit:
                    return found
    return found
