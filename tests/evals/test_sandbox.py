"""Hostile programs in the sandbox, each followed by an assertion about the host.

The hostile programs run once, concurrently (2 workers, 2.5 s each at most), in a module fixture;
each test then checks its program's result and what the host looks like afterwards. Cases that need
the sandbox's own uid (root) are left out elsewhere: run as the caller, they would hit the caller.
"""

from __future__ import annotations

import os
import resource
import secrets
import socket
import tempfile
import textwrap
import threading
import time

import pytest

from lorasweep.evals import sandbox

LIMITS = sandbox.Limits(timeout_s=2.5, memory_mb=512, processes=16, output_bytes=256 << 10)
ISOLATED = sandbox.capabilities()
OWN_UID = bool(ISOLATED["own_uid"])
NETNS = bool(ISOLATED["network_namespace"])


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in "ZX"
    except (FileNotFoundError, ProcessLookupError):
        return False


def alive_of_uid(uid: int) -> list[int]:
    pids = []
    for name in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{name}/status") as f:
                status = f.read()
        except OSError:
            continue
        if int(status.split("\nUid:\t", 1)[1].split("\t", 1)[0]) == uid and alive(int(name)):
            pids.append(int(name))
    return pids


def numbers_after(label: str, stdout: str) -> list[int]:
    return [int(line.split()[1]) for line in stdout.splitlines() if line.startswith(label + " ")]


PROGRAMS = {
    "fork_bomb": """
        import os
        print("uid", os.getuid(), flush=True)
        while True:
            try:
                if os.fork() == 0:
                    print("pid", os.getpid(), flush=True)
            except OSError:
                pass
    """,
    "memory_bomb": """
        blocks = []
        while True:
            blocks.append(bytearray(64 << 20))
    """,
    "infinite_loop": """
        import os
        print("pid", os.getpid(), flush=True)
        while True:
            pass
    """,
    "ignores_sigterm": """
        import os, signal
        for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGXCPU):
            signal.signal(s, signal.SIG_IGN)
        print("pid", os.getpid(), flush=True)
        while True:
            pass
    """,
    "print_1gb": """
        import sys
        chunk = "x" * (1 << 20)
        for _ in range(1024):
            sys.stdout.write(chunk)
    """,
    "big_file": """
        with open("big", "wb") as f:
            f.write(b"x" * (17 << 20))
    """,
    "python_recursion": """
        import sys
        sys.setrecursionlimit(10**9)
        def f(n):
            return f(n + 1) + 1
        f(0)
    """,
    "c_recursion": """
        import sys
        sys.setrecursionlimit(10**9)
        x = []
        for _ in range(10**6):
            x = [x]
        print(len(repr(x)))
    """,
    "os_exit_before_tests": """
        def add(a, b):
            return a - b
        import os
        os._exit(0)
        assert add(1, 2) == 3
    """,
    "sys_exit_before_tests": """
        def add(a, b):
            return a - b
        import sys
        sys.exit(0)
        assert add(1, 2) == 3
    """,
    "raise_own_limits": """
        import resource
        try:
            resource.setrlimit(resource.RLIMIT_AS, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
            print("raised")
        except (ValueError, OSError) as e:
            print("refused", type(e).__name__)
        big = bytearray(1 << 30)
    """,
    "read_secret": """
        import os
        print("keys", *sorted(os.environ), *os.environ.values())
        for pid in (os.getppid(), 1):
            try:
                print(open("/proc/%d/environ" % pid).read())
            except OSError as e:
                print(type(e).__name__)
    """,
    "socket_module": """
        import socket
        for attempt in (lambda: socket.create_connection(("127.0.0.1", {port}), timeout=1),
                        lambda: socket.socket().connect(("127.0.0.1", {port}))):
            try:
                attempt()
                print("connected")
            except OSError as e:
                print("refused", e)
    """,
}
ROOT_PROGRAMS = {
    "delete_canaries": """
        import os
        for path in ({canary!r}, {tmp_canary!r}):
            try:
                os.remove(path)
            except OSError as e:
                print("refused", type(e).__name__)
            try:
                open(path, "w").write("overwritten")
            except OSError as e:
                print("refused", type(e).__name__)
    """,
    "write_outside": """
        for path in {escapes!r}:
            try:
                open(path, "w").write("escaped")
                print("wrote", path)
            except OSError as e:
                print("refused", type(e).__name__)
    """,
    "fill_disk": """
        i = 0
        while True:
            with open("f%d" % i, "wb") as f:
                f.write(b"x" * (8 << 20))
            i += 1
    """,
    "raw_socket": """
        import _socket
        s = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM)
        s.settimeout(1)
        try:
            s.connect(("127.0.0.1", {port}))
            print("connected")
        except OSError as e:
            print("refused", e)
    """,
    "detached_child": """
        import os, time
        print("uid", os.getuid(), flush=True)
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                print("pid", os.getpid(), flush=True)
                os.close(1)
                os.close(2)
                time.sleep(30)
                open({marker!r}, "w").write("outlived the run")
            os._exit(0)
        time.sleep(0.3)
    """,
    "signal_host": """
        import os, signal
        try:
            os.kill(os.getppid(), signal.SIGTERM)
            print("signalled")
        except OSError as e:
            print("refused", type(e).__name__)
    """,
}
CASES = sorted(PROGRAMS) + (sorted(ROOT_PROGRAMS) if OWN_UID else [])
if not NETNS:
    CASES = [c for c in CASES if c != "raw_socket"]


class LoopbackServer:
    """A TCP server on 127.0.0.1 that counts the connections it accepts."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
        self.sock.close()


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    base = tmp_path_factory.mktemp("host")
    token = secrets.token_hex(8)
    canary = base / "canary.txt"
    canary.write_text("canary")
    fd, tmp_canary = tempfile.mkstemp(prefix="lorasweep-canary-", dir="/tmp")
    os.write(fd, b"canary")
    os.close(fd)
    os.chmod(tmp_canary, 0o644)
    escapes = [
        str(base / "outside.txt"),
        f"/tmp/lorasweep-escape-{token}",
        f"/var/tmp/lorasweep-escape-{token}",
    ]
    escapes += [f"/dev/shm/lorasweep-escape-{token}", os.path.expanduser(f"~/lorasweep-escape-{token}")]
    server = LoopbackServer()
    os.environ["LORASWEEP_SANDBOX_SECRET"] = token
    fields = {"port": server.port, "canary": str(canary), "tmp_canary": tmp_canary, "escapes": escapes}
    fields["marker"] = str(base / "outlived.txt")
    sources = {**PROGRAMS, **ROOT_PROGRAMS}
    programs = [textwrap.dedent(sources[name]).format(**fields) for name in CASES]
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.monotonic()
    try:
        results = dict(zip(CASES, sandbox.run_many(programs, workers=2, limits=LIMITS), strict=True))
    finally:
        del os.environ["LORASWEEP_SANDBOX_SECRET"]
        server.close()
    yield {
        "results": results,
        "seconds": time.monotonic() - start,
        "rss_growth_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before,
        "secret": token,
        "server": server,
        **fields,
    }
    for path in [tmp_canary, *escapes]:
        if os.path.exists(path):
            os.remove(path)


def check_fork_bomb(r, host):
    assert r.status == "timeout"
    pids = numbers_after("pid", r.stdout)
    assert 1 <= len(pids) < LIMITS.processes  # RLIMIT_NPROC held the bomb
    assert not any(alive(p) for p in pids)
    assert alive_of_uid(numbers_after("uid", r.stdout)[0]) == []


def check_memory_bomb(r, host):
    assert r.status == "failed" and "MemoryError" in r.stderr
    assert r.seconds < LIMITS.timeout_s


def check_infinite_loop(r, host):
    assert r.status == "timeout" and LIMITS.timeout_s <= r.seconds < LIMITS.timeout_s + 1.5
    assert not alive(numbers_after("pid", r.stdout)[0])


def check_ignores_sigterm(r, host):
    check_infinite_loop(r, host)


def check_print_1gb(r, host):
    assert r.status == "output_limit" and not r.passed
    assert len(r.stdout) <= LIMITS.output_bytes
    assert r.seconds < LIMITS.timeout_s
    assert host["rss_growth_kb"] < 100_000  # the host read at most the cap, not the gigabyte


def check_big_file(r, host):
    assert r.status == "failed" and "File too large" in r.stderr  # RLIMIT_FSIZE (Python ignores SIGXFSZ)


def check_fill_disk(r, host):
    assert r.status == "failed" and "No space left" in r.stderr  # the private tmpfs is full, not the disk


def check_python_recursion(r, host):
    assert r.status in ("failed", "killed", "timeout") and not r.passed


def check_c_recursion(r, host):
    assert r.status in ("failed", "killed") and not r.passed  # SIGSEGV or RecursionError, never a pass


def check_os_exit_before_tests(r, host):
    assert (r.status, r.returncode, r.passed) == ("exited_early", 0, False)


def check_sys_exit_before_tests(r, host):
    check_os_exit_before_tests(r, host)


def check_raise_own_limits(r, host):
    assert "refused ValueError" in r.stdout and "MemoryError" in r.stderr and r.status == "failed"


def check_read_secret(r, host):
    assert host["secret"] not in r.stdout + r.stderr
    assert "LORASWEEP_SANDBOX_SECRET" not in r.stdout
    assert r.stdout.split()[:4] == ["keys", "HOME", "LANG", "PATH"]  # nothing else is inherited


def check_socket_module(r, host):
    assert r.stdout.count("refused") == 2 and "connected" not in r.stdout
    assert host["server"].connections == 0


def check_raw_socket(r, host):
    assert "refused" in r.stdout and "connected" not in r.stdout
    assert host["server"].connections == 0


def check_delete_canaries(r, host):
    for path in (host["canary"], host["tmp_canary"]):
        with open(path) as f:
            assert f.read() == "canary"


def check_write_outside(r, host):
    assert not any(os.path.exists(p) for p in host["escapes"])


def check_detached_child(r, host):
    grandchild = numbers_after("pid", r.stdout)
    assert len(grandchild) == 1, r.stdout
    assert not alive(grandchild[0])  # it left the process group with setsid, and is gone anyway
    assert alive_of_uid(numbers_after("uid", r.stdout)[0]) == []
    assert not os.path.exists(host["marker"])


def check_signal_host(r, host):
    assert "refused PermissionError" in r.stdout


@pytest.mark.parametrize("case", CASES)
def test_hostile_program(case, host):
    globals()[f"check_{case}"](host["results"][case], host)


def test_hostile_batch_is_fast(host):
    assert host["seconds"] < 20


def test_every_program_has_a_check():
    assert all(f"check_{name}" in globals() for name in {**PROGRAMS, **ROOT_PROGRAMS})
    assert len(PROGRAMS) + len(ROOT_PROGRAMS) >= 12


@pytest.mark.parametrize(
    ("program", "status"),
    [
        ("def add(a, b):\n    return a + b\nassert add(1, 2) == 3\n", "passed"),
        ("def add(a, b):\n    return a - b\nassert add(1, 2) == 3\n", "failed"),
        ("def add(a, b)\n    return a + b\n", "failed"),  # syntax error
        ("import math\nassert math.isclose(math.pi, 3.14159, rel_tol=1e-5)\n", "passed"),
        ("import os\nos.kill(os.getpid(), 9)\n", "killed"),
    ],
)
def test_ordinary_programs(program, status):
    result = sandbox.run(program)
    assert (result.status, result.passed) == (status, status == "passed")


def test_output_is_returned_without_the_token_and_the_folder_is_removed():
    result = sandbox.run(
        "import os, sys\nopen('f', 'w').write('x')\nprint(os.getcwd())\nprint('err', file=sys.stderr)"
    )
    workdir = result.stdout.strip()
    assert result.passed and result.stdout == workdir + "\n" and result.stderr == "err\n"
    assert os.path.basename(workdir).startswith("lorasweep-sandbox-")
    assert not os.path.exists(workdir)


def test_run_many_keeps_order():
    programs = ["assert True", "assert False", "print('x', end='')", "raise SystemExit(3)"]
    results = sandbox.run_many(programs, workers=2)
    assert [r.status for r in results] == ["passed", "failed", "passed", "failed"]
    assert results[2].stdout == "x" and results[3].returncode == 3
    with pytest.raises(ValueError, match="workers"):
        sandbox.run_many(programs, workers=0)


@pytest.mark.skipif(os.geteuid() != 0, reason="isolation layers need root")
def test_all_isolation_layers_work_as_root():
    assert ISOLATED["own_uid"] and ISOLATED["network_namespace"] and ISOLATED["mount_namespace"]
