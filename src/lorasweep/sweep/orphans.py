"""Ends the processes a SIGKILLed driver leaves behind (best effort, Linux).

A process killed with SIGKILL runs no cleanup: a local Ray cluster it started loses its trial workers
(their raylet dies with the driver) but per-node agents can live on.  ``reaped()`` starts a small
watchdog process in its own session that records the driver's descendants (from ``/proc``) every
half second.  When the driver leaves the ``with`` block normally it tells the watchdog so, and the
watchdog exits; when the driver dies instead (the pipe between them closes without that word), the
watchdog sends SIGTERM, then SIGKILL after ``GRACE_S``, to every recorded process still running
(matched by pid and start time, so a reused pid is never hit).

What is not covered: processes that left the driver's tree before a snapshot saw them, and
systems without ``/proc`` (the watchdog then records nothing).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

PERIOD_S = 0.5
GRACE_S = 3.0
_DONE = "done"


@contextlib.contextmanager
def reaped() -> Iterator[None]:
    """Run the block with a watchdog that ends this process's descendants if this process dies."""
    watchdog = subprocess.Popen(
        [sys.executable, "-m", "lorasweep.sweep.orphans", str(os.getpid())],
        stdin=subprocess.PIPE,
        start_new_session=True,  # a Ctrl-C to the driver's terminal is not for the watchdog
        text=True,
    )
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            watchdog.stdin.write(_DONE + "\n")
            watchdog.stdin.close()
        try:
            watchdog.wait(timeout=10)
        except subprocess.TimeoutExpired:
            watchdog.kill()


def _processes() -> dict[int, tuple[int, int]]:
    """pid -> (parent pid, start time) of every process, from /proc."""
    out = {}
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else []:
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        out[int(entry.name)] = (int(fields[1]), int(fields[19]))  # ppid, starttime
    return out


def descendants(root: int, table: dict[int, tuple[int, int]] | None = None) -> dict[int, int]:
    """pid -> start time of every process under ``root`` (not ``root`` itself)."""
    table = _processes() if table is None else table
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    found, todo = {}, [root]
    while todo:
        for pid in children.get(todo.pop(), []):
            if pid not in found:
                found[pid] = table[pid][1]
                todo.append(pid)
    return found


def _still_running(recorded: dict[int, int]) -> list[int]:
    table = _processes()
    return [pid for pid, start in recorded.items() if pid in table and table[pid][1] == start]


def _signal(pids: list[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, sig)


def watch(driver: int) -> None:
    """The watchdog: record ``driver``'s descendants until stdin closes; end them unless told done."""
    closed = threading.Event()
    said: list[str] = []

    def read() -> None:
        said.append(sys.stdin.read().strip())
        closed.set()

    threading.Thread(target=read, daemon=True).start()
    recorded: dict[int, int] = {}
    while not closed.wait(PERIOD_S):
        recorded.update(descendants(driver))
    if said == [_DONE]:
        return
    recorded.update(descendants(driver))  # whatever the dying driver's children had started since
    recorded.pop(os.getpid(), None)
    _signal(_still_running(recorded), signal.SIGTERM)
    deadline = time.time() + GRACE_S
    while _still_running(recorded) and time.time() < deadline:
        time.sleep(0.1)
    _signal(_still_running(recorded), signal.SIGKILL)


if __name__ == "__main__":
    watch(int(sys.argv[1]))
