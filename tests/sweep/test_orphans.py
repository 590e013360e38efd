"""orphans.reaped: a SIGKILLed driver leaves no descendant running; a driver that leaves normally
leaves its children alone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
DRIVER = """
import subprocess, sys, time
from lorasweep.sweep.orphans import reaped
with reaped():
    # a new session, as daemons do: signals to the driver's process group never reach it
    child = subprocess.Popen(["sleep", "300"], start_new_session=True)
    print(child.pid, flush=True)
    if sys.argv[1] == "stay":
        time.sleep(300)
"""

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")


def running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def start(mode: str) -> tuple[subprocess.Popen, int]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    driver = subprocess.Popen(
        [sys.executable, "-c", DRIVER, mode], stdout=subprocess.PIPE, text=True, env=env
    )
    return driver, int(driver.stdout.readline())


def test_a_killed_drivers_children_are_ended():
    driver, child = start("stay")
    try:
        time.sleep(1.5)  # three snapshots of the watchdog
        driver.send_signal(signal.SIGKILL)
        driver.wait(timeout=10)
        deadline = time.time() + 15
        while running(child) and time.time() < deadline:
            time.sleep(0.1)
        assert not running(child)
    finally:
        if running(child):
            os.kill(child, signal.SIGKILL)


def test_a_driver_that_leaves_normally_keeps_its_children():
    driver, child = start("leave")
    try:
        assert driver.wait(timeout=20) == 0
        time.sleep(1.0)
        assert running(child)  # the watchdog was told the driver left on purpose
    finally:
        os.kill(child, signal.SIGKILL)
