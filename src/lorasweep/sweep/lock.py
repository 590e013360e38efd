"""One writer per run directory: an exclusive ``flock`` held for the whole sweep."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from lorasweep.errors import UserError


class RunLock:
    """Re-entrant within one process: ``held`` reuses a lock this process already holds."""

    _held: dict[Path, RunLock] = {}

    def __init__(self, run_dir: Path):
        self.path = (run_dir / ".lock").resolve()
        self.fd: int | None = None

    @classmethod
    def held(cls, run_dir: Path):
        import contextlib

        path = (run_dir / ".lock").resolve()
        return contextlib.nullcontext(cls._held[path]) if path in cls._held else cls(run_dir)

    def __enter__(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise UserError(
                f"another sweep (pid {holder}) is writing into this run directory", str(self.path.parent)
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self.fd = fd
        RunLock._held[self.path] = self
        return self

    def __exit__(self, *exc) -> None:
        RunLock._held.pop(self.path, None)
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None
