"""Run one untrusted Python program (a model's code plus its tests) in a separate, limited process.

What is covered (Linux; "as root" marks what needs root, which this project's machines and CI have):
- Own process and process group (``start_new_session``), ``python -I`` (no PYTHON* variables, no user
  site, no script folder on sys.path), cwd = a fresh empty temporary folder, deleted afterwards.
- Limits: wall clock (``timeout_s``), CPU seconds (RLIMIT_CPU), address space (RLIMIT_AS), file size
  (RLIMIT_FSIZE), open files (RLIMIT_NOFILE), processes (RLIMIT_NPROC), no core files (RLIMIT_CORE).
- Output: stdout and stderr are read as they come; past ``output_bytes`` on either the run is stopped
  ("output_limit"); the caller never holds more than that per stream.
- Environment: PATH, LANG and HOME (= the temporary folder) only; nothing of the caller's is inherited.
- Early exit: after the program returns, the runner writes a random token to fd 1; a run passes only
  with exit status 0 *and* the token, so ``os._exit(0)``, ``sys.exit(0)`` or ``exit()`` before the
  tests (HumanEval's ``check()`` is called last) is "exited_early", not "passed".
- Cleanup: on timeout, output limit or normal exit the whole process group gets SIGKILL.
- As root, own uid: each run gets a uid/gid no process uses (``2**30 + pid*256 + slot``, no
  supplementary groups), so the program cannot touch the caller's files (0700 folders, sticky /tmp),
  cannot signal the caller, and RLIMIT_NPROC counts this run's processes only. After the run a helper
  running as that uid calls ``kill(-1, SIGKILL)`` (every process of the uid) until /proc shows none
  alive: this also ends descendants that escaped the group with ``setsid`` or a double fork.
- As root, namespaces: a new network namespace (only a loopback that is down: no connection to anything,
  the host's loopback included) and a new mount namespace in which /tmp, /var/tmp, /dev/shm, /run/lock
  (and $TMPDIR) are fresh private tmpfs of 32 MB each; the working folder is remade inside one, so what
  the program writes, there or in those folders, is bounded, never reaches the host, and vanishes.
- Always: the runner replaces ``socket.socket``, ``create_connection``, ``getaddrinfo``... so ordinary
  network calls fail. Where no namespace can be made this is the only network barrier.
- The main process gets SIGKILL if the thread that started it dies (PR_SET_PDEATHSIG).

What is not covered:
- Not root: no own uid and no namespaces. The program runs as the caller, can read and write what the
  caller can and signal the caller's processes; a descendant that calls ``setsid`` survives the group
  kill; RLIMIT_NPROC is the caller's current thread count plus the limit. The socket prelude is a speed
  bump only: ``import _socket`` or ctypes gets past it.
- Reading: the program can read every world-readable file (sources, /etc, /proc) and see all processes
  (no pid namespace).
- Programs written to game their own tests: forging the token (it is in the runner's argv), redefining
  builtins, objects whose ``__eq__`` is always true. This guards against accidents and runaway code; it is
  not a security boundary for adversarial code (use a VM or gVisor for that).
- Whole-host budgets: limits are per process (at most RLIMIT_AS x RLIMIT_NPROC of memory); no cgroup.
  Without the mount namespace RLIMIT_FSIZE bounds each file in the working folder, not how many.
- If the calling process is SIGKILLed mid-run, descendants of the program are not cleaned up (their CPU
  limit still ends busy ones).
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import math
import os
import resource
import secrets
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache

STATUSES = ("passed", "failed", "exited_early", "timeout", "killed", "output_limit", "error")
# The runner (python -I -c): blocks ordinary sockets, runs program.py as __main__, then writes the token.
_RUNNER = """\
import os, runpy, socket, sys

def _refuse(*args, **kwargs):
    raise OSError("network access is disabled in the lorasweep sandbox")

class _NoNetwork(socket.socket):
    __init__ = _refuse

socket.socket = socket.SocketType = _NoNetwork
for _name in ("create_connection", "create_server", "socketpair", "fromfd", "getaddrinfo", "gethostbyname"):
    setattr(socket, _name, _refuse)
_token = sys.argv.pop().encode()
sys.argv[:] = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
sys.stdout.flush()
os.write(1, b"\\n" + _token + b"\\n")
"""
_SHARED_WRITABLE = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock")
_UID_BASE = 1 << 30
_CLONE_NEWNS, _CLONE_NEWNET = 0x00020000, 0x40000000
_MS_NOSUID, _MS_NODEV, _MS_REC, _MS_PRIVATE = 2, 4, 16384, 1 << 18
_PR_SET_PDEATHSIG = 1
_TMPFS = b"size=32m,mode=1777"
_libc = ctypes.CDLL(None, use_errno=True)
_uid_lock = threading.Lock()
_uids_in_use: set[int] = set()
_slots = itertools.count()


@dataclass(frozen=True)
class Limits:
    timeout_s: float = 10.0  # wall clock; RLIMIT_CPU is this rounded up + 1 s
    memory_mb: int = 1024  # RLIMIT_AS per process
    file_mb: int = 16  # RLIMIT_FSIZE
    open_files: int = 64  # RLIMIT_NOFILE
    processes: int = 32  # RLIMIT_NPROC (threads count too)
    output_bytes: int = 1 << 20  # per stream


@dataclass(frozen=True)
class Result:
    passed: bool
    status: str  # one of STATUSES
    returncode: int | None  # negative: killed by that signal
    stdout: str  # at most Limits.output_bytes, the token removed
    stderr: str
    seconds: float


def _isolated() -> bool:
    return sys.platform.startswith("linux") and os.geteuid() == 0


def _reachable_by_anyone(path: str) -> bool:
    """True when any user may execute ``path``: every folder on the way and the file itself are o+x."""
    real = os.path.realpath(path)
    folders = [real[: i or 1] for i, c in enumerate(real) if c == "/"]
    try:
        return all(os.stat(p).st_mode & 0o001 for p in [*folders, real])
    except OSError:
        return False


@cache
def _interpreter(isolated: bool) -> str:
    """The caller's Python when the sandbox uid can run it; else the system's (pyenv under /root is not)."""
    if not isolated:
        return sys.executable
    candidates = (sys.executable, "/usr/bin/python3", "/usr/local/bin/python3")
    return next((c for c in candidates if _reachable_by_anyone(c)), sys.executable)


def _tasks_of(uid: int) -> list[tuple[str, int]]:
    """(state letter, threads) of every process whose real uid is ``uid``, zombies included."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/status") as f:
                text = f.read()
            ruid = int(text.split("\nUid:\t", 1)[1].split("\t", 1)[0])
            if ruid == uid:
                state = text.split("\nState:\t", 1)[1][0]
                found.append((state, int(text.split("\nThreads:\t", 1)[1].split("\n", 1)[0])))
        except (OSError, IndexError, ValueError):  # gone meanwhile
            continue
    return found


def _lease_uid() -> int:
    with _uid_lock:
        for _ in range(256):
            uid = _UID_BASE + (os.getpid() << 8) + next(_slots) % 256
            if uid not in _uids_in_use and not _tasks_of(uid):
                _uids_in_use.add(uid)
                return uid
    raise RuntimeError("no free sandbox uid: more than 256 concurrent runs in one process")


def _kill_uid(uid: int) -> None:
    """SIGKILL every process of ``uid`` (the run's own) until none is alive; zombies are dead already."""
    kill_all = [_interpreter(True), "-I", "-S", "-c", "import os; os.kill(-1, 9)"]
    for _ in range(50):
        if all(state in "ZX" for state, _ in _tasks_of(uid)):
            return
        subprocess.run(kill_all, user=uid, group=uid, extra_groups=[], env={}, cwd="/", check=False,
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        time.sleep(0.02)
    raise RuntimeError(f"processes of sandbox uid {uid} survived SIGKILL")


def _private_mounts(workdir: str, hidden: tuple[str, ...], uid: int) -> None:
    """Child side, as root: new network and mount namespaces; a failure leaves the socket prelude."""
    _libc.unshare(_CLONE_NEWNET)
    if _libc.unshare(_CLONE_NEWNS) != 0:
        return
    # Mounts made before propagation is private would show on the host: stop rather than risk it.
    if _libc.mount(b"none", b"/", None, _MS_REC | _MS_PRIVATE, None) != 0:
        return
    for folder in hidden:
        _libc.mount(b"tmpfs", folder.encode(), b"tmpfs", _MS_NOSUID | _MS_NODEV, _TMPFS)
    # The working folder is under a hidden one: recreate it in the new tmpfs, so that what the program
    # writes stays in bounded memory and vanishes with the namespace. The old cwd still reads program.py.
    with open("program.py", "rb") as f:
        source = f.read()
    os.makedirs(workdir, exist_ok=True)
    os.chown(workdir, uid, uid)
    os.chdir(workdir)
    with open("program.py", "wb") as f:
        f.write(source)


def _child_setup(limits: Limits, uid: int | None, workdir: str, nproc: int) -> Callable[[], None]:
    """preexec_fn. It runs between fork and exec of a possibly multi-threaded parent, so it only makes
    system calls through already-loaded modules (no imports, no locks of other threads)."""
    shared = {*_SHARED_WRITABLE, tempfile.gettempdir()}
    hidden = tuple(sorted(d for d in shared if os.path.isdir(d) and not os.path.islink(d)))
    cpu = math.ceil(limits.timeout_s) + 1
    caps = (
        (resource.RLIMIT_CPU, cpu, cpu + 1),  # soft: SIGXCPU ("timeout"); hard: SIGKILL
        (resource.RLIMIT_AS, limits.memory_mb << 20, limits.memory_mb << 20),
        (resource.RLIMIT_FSIZE, limits.file_mb << 20, limits.file_mb << 20),
        (resource.RLIMIT_NOFILE, limits.open_files, limits.open_files),
        (resource.RLIMIT_NPROC, nproc, nproc),
        (resource.RLIMIT_CORE, 0, 0),
    )

    def setup() -> None:
        if uid is not None:
            _private_mounts(workdir, hidden, uid)
        for which, soft, hard in caps:
            resource.setrlimit(which, (soft, hard))
        if uid is not None:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
        _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)  # after setuid, which clears it

    return setup


def _read_into(fd: int, buf: bytearray, cap: int) -> str:
    """One read: "eof", "ok", or "over" when the stream went past ``cap`` (the rest is dropped)."""
    data = os.read(fd, 1 << 16)
    if not data:
        return "eof"
    room = cap - len(buf)
    buf += data[:room]
    return "over" if len(data) > room else "ok"


def _collect(proc: subprocess.Popen, deadline: float, cap: int) -> tuple[dict[int, bytearray], str]:
    """Read both pipes until the main process exits ("exited"), the deadline, or the cap."""
    bufs = {proc.stdout.fileno(): bytearray(), proc.stderr.fileno(): bytearray()}
    pidfd = os.pidfd_open(proc.pid) if hasattr(os, "pidfd_open") else None
    with selectors.DefaultSelector() as sel:
        for fd in bufs:
            sel.register(fd, selectors.EVENT_READ)
        if pidfd is not None:
            sel.register(pidfd, selectors.EVENT_READ)
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return bufs, "timeout"
                # Without a pidfd the exit is noticed by polling, at most 50 ms late.
                for key, _ in sel.select(remaining if pidfd is not None else min(remaining, 0.05)):
                    if key.fd == pidfd:
                        return bufs, "exited"
                    outcome = _read_into(key.fd, bufs[key.fd], cap)
                    if outcome == "over":
                        return bufs, "output_limit"
                    if outcome == "eof":
                        sel.unregister(key.fd)
                if pidfd is None and proc.poll() is not None:
                    return bufs, "exited"
        finally:
            if pidfd is not None:
                os.close(pidfd)


def _drain(bufs: dict[int, bytearray], cap: int) -> bool:
    """After every writer is dead: read what is left in the pipes; True when that went past the cap."""
    over = False
    deadline = time.monotonic() + 2.0
    with selectors.DefaultSelector() as sel:
        for fd in bufs:
            sel.register(fd, selectors.EVENT_READ)
        while sel.get_map() and time.monotonic() < deadline:
            for key, _ in sel.select(0.1):
                outcome = _read_into(key.fd, bufs[key.fd], cap)
                over |= outcome == "over"
                if outcome != "ok":
                    sel.unregister(key.fd)
    return over


def _status(ended: str, returncode: int, stdout: bytes, sentinel: bytes) -> str:
    if ended != "exited":
        return ended
    if returncode == 0:
        return "passed" if sentinel in stdout else "exited_early"
    if returncode == -signal.SIGXCPU:
        return "timeout"
    return "killed" if returncode < 0 else "failed"


def _nproc_limit(uid: int | None, limits: Limits) -> int:
    if uid is not None:
        return limits.processes
    # RLIMIT_NPROC counts every thread of the real uid: allow the caller's current ones plus the limit.
    return sum(threads for _, threads in _tasks_of(os.getuid())) + limits.processes


def _execute(workdir: str, uid: int | None, limits: Limits) -> Result:
    token = secrets.token_hex(16)
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": workdir}
    start = time.monotonic()
    try:
        proc = subprocess.Popen(
            [_interpreter(uid is not None), "-I", "-c", _RUNNER, "program.py", token],
            cwd=workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            preexec_fn=_child_setup(limits, uid, workdir, _nproc_limit(uid, limits)),
        )
    except (OSError, subprocess.SubprocessError) as e:
        return Result(False, "error", None, "", f"sandbox: could not start: {e}", time.monotonic() - start)
    with proc:
        try:
            bufs, ended = _collect(proc, start + limits.timeout_s, limits.output_bytes)
            seconds = time.monotonic() - start
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # pgid == pid: start_new_session
            proc.wait()
            if uid is not None:
                _kill_uid(uid)
        if _drain(bufs, limits.output_bytes) and ended == "exited":
            ended = "output_limit"
    out, err = bufs.values()
    sentinel = f"\n{token}\n".encode()
    status = _status(ended, proc.returncode, out, sentinel)
    text = bytes(out).replace(sentinel, b"").decode("utf-8", "replace")
    return Result(status == "passed", status, proc.returncode, text, err.decode("utf-8", "replace"), seconds)


def _remove_tree(path: str) -> None:
    def make_writable(func, failed, _exc) -> None:  # a folder the program made read-only (not root)
        os.chmod(os.path.dirname(failed), 0o700)
        os.chmod(failed, 0o700)
        func(failed)

    shutil.rmtree(path, onerror=make_writable)


def run(program: str, limits: Limits = Limits()) -> Result:
    """Run ``program`` (source text: code and its tests) once; see the module docstring for the rules."""
    workdir = tempfile.mkdtemp(prefix="lorasweep-sandbox-")
    uid = _lease_uid() if _isolated() else None
    try:
        with open(os.path.join(workdir, "program.py"), "w", encoding="utf-8") as f:
            f.write(program)
        if uid is not None:
            os.chown(workdir, uid, uid)
        return _execute(workdir, uid, limits)
    finally:
        try:
            _remove_tree(workdir)
        finally:
            if uid is not None:
                with _uid_lock:
                    _uids_in_use.discard(uid)


def run_many(programs: Sequence[str], workers: int = 2, limits: Limits = Limits()) -> list[Result]:
    """Run several programs, ``workers`` at a time; results in the order of ``programs``."""
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sandbox") as pool:
        return list(pool.map(lambda p: run(p, limits), programs))


@cache
def capabilities() -> dict[str, object]:
    """Which isolation layers work on this machine, measured by running a probe program."""
    probe = "import os, sys\nprint(os.getuid(), *(os.readlink(f'/proc/self/ns/{n}') for n in ('net', 'mnt')))"
    result = run(probe + "\nprint(sys.version.split()[0])", Limits(timeout_s=30))
    fields = result.stdout.split()
    works = result.passed and len(fields) == 4
    return {
        "interpreter": _interpreter(_isolated()),
        "python": fields[3] if works else None,
        "own_uid": works and int(fields[0]) != os.getuid(),
        "network_namespace": works and fields[1] != os.readlink("/proc/self/ns/net"),
        "mount_namespace": works and fields[2] != os.readlink("/proc/self/ns/mnt"),
    }
