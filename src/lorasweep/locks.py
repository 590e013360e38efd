"""File locks, all on ``filelock`` (an OS-level ``flock``, released by the kernel when its holder dies).

- ``exclusive(path)``: wait for and hold a lock on ``path`` for a short section shared by processes
  (an append to the judgment cache, a one-time GGUF conversion).
- ``RunLock``: one writer per run directory, held for the whole sweep; its file holds the writer's
  pid, so a second writer is told who holds it; ``runner_alive`` tells whether anyone holds it now.

Lock files are kept on release (``preserve_lock_file``): a run directory's ``.lock`` stays in place,
and a data file used as its own lock (the judgment cache) is never removed.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from filelock import FileLock, Timeout

from lorasweep.errors import UserError
from lorasweep.rundir import RunDir


@contextlib.contextmanager
def exclusive(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if missing), waiting as long as it takes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(path, preserve_lock_file=True):
        yield


def _write_pid(fd: int) -> None:
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


class RunLock:
    """One writer per run directory (the lock file is ``RunDir.lock``).

    Re-entrant within one process: ``held`` reuses a lock this process already holds.
    """

    _held: dict[Path, RunLock] = {}

    def __init__(self, run_dir: Path):
        self.path = RunDir(run_dir).lock.resolve()
        self._lock = FileLock(self.path, preserve_lock_file=True, on_acquired=_write_pid)

    @classmethod
    def held(cls, run_dir: Path) -> contextlib.AbstractContextManager:
        lock = cls(run_dir)
        return contextlib.nullcontext(cls._held[lock.path]) if lock.path in cls._held else lock

    def __enter__(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._lock.acquire(blocking=False)
        except Timeout:
            holder = _read_pid(self.path) or "?"
            raise UserError(
                f"another sweep (pid {holder}) is writing into this run directory", str(self.path.parent)
            ) from None
        RunLock._held[self.path] = self
        return self

    def __exit__(self, *exc: object) -> None:
        RunLock._held.pop(self.path, None)
        self._lock.release()


def runner_alive(run_dir: Path) -> bool:
    """Whether a process holds the run directory's lock now (a sweep is writing into it).

    The lock is probed without waiting (and released at once when it was free): the kernel frees a
    ``flock`` when its holder dies, so a killed runner reads as gone even though its pid stays in the
    file.  The probe does not write the file.
    """
    path = RunDir(run_dir).lock.resolve()
    if path in RunLock._held:
        return True
    if not path.exists():
        return False
    probe = FileLock(path, preserve_lock_file=True)
    try:
        probe.acquire(blocking=False)
    except Timeout:
        return True
    probe.release()
    return False
