"""The writer lock: `<db>.lock`, held by the one worker allowed to write a DB."""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path

from worker.db_files import StoreError


class WriterLock:
    """A POSIX lock on a lock file, which holds the holder's pid; use `WriterLock.acquire`."""

    def __init__(self, fd: int) -> None:
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, path: Path, db: Path) -> WriterLock:
        """Take the lock at `path` for writing `db`, or raise a StoreError naming the worker holding it."""
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise StoreError(
                f"cannot write in {db.parent} ({exc.strerror}): the DB's folder must be writable"
            ) from None
        try:
            # lockf (POSIX) rather than flock: it is not inherited by the DataLoader's forked
            # decoding processes, so it is released the moment this process dies, even by kill -9.
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            if exc.errno in (errno.EACCES, errno.EAGAIN):
                raise StoreError(
                    f"another worker (pid {holder}) is writing {db}; wait for it to finish or use another --db"
                ) from None
            raise StoreError(f"cannot lock {path}: {exc.strerror}") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return cls(fd)

    def release(self) -> None:
        """Release the lock; a second call does nothing."""
        if self._fd is not None:
            os.close(self._fd)  # closing the file releases the lockf lock
            self._fd = None
