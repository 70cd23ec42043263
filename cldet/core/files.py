"""File hashes, atomic writes and folder locks: a crash never leaves half a file under the final name, and two
processes never write one run folder at once."""

from __future__ import annotations

import hashlib
import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

__all__ = ["sha256_file", "write_json_atomic", "atomic_path", "folder_lock", "LOCK_NAME"]

LOCK_NAME = ".lock"


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a hidden temporary name beside `path`; it replaces `path` only when the block finishes without error."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_json_atomic(path: str | Path, obj: object) -> None:
    """Write JSON through a temporary file and rename."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")


@contextmanager
def folder_lock(folder: str | Path, what: str = "run folder") -> Iterator[Path]:
    """Hold an exclusive lock on `folder` (its `.lock` file) while the block runs; RunError at once if another
    process holds it. The operating system drops the lock when the holder exits, killed or not, so a stale
    `.lock` file never blocks a later `--resume`."""
    from .errors import RunError

    path = Path(folder) / LOCK_NAME
    fh = open(path, "a")  # never truncated: a refused second writer changes nothing
    try:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - no advisory locks here (Windows): the folder stays unlocked
            fcntl = None
        if fcntl is not None:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise RunError(f"{folder}: another cldet process is writing this {what} (it holds {path}); wait for "
                               "it to finish, or stop it before running --resume.") from None
        yield path
    finally:
        fh.close()
