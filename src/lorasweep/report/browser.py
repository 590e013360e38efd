"""Open ``report.html`` in a real headless browser (Chromium): did it draw its figures, without errors?

``python -m lorasweep.report.browser RUN_DIR/report/report.html [SCREENSHOT.png]`` prints what the page
drew and writes a screenshot (``make report-check``).  The page records the figures it drew in
``<body data-rendered>`` and script errors in ``data-errors``; Chromium's console log (``CONSOLE``
lines on stderr) is read as well.  Chromium runs with ``--no-sandbox`` (CI containers run as root).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_browser() -> str | None:
    for name in CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


@dataclass(frozen=True)
class PageCheck:
    rendered: int  # figures the page's script drew (with at least one mark)
    figures: int  # figure containers on the page
    svg_marks: int  # points drawn, over all figures
    errors: list[str]  # script errors and console errors

    @property
    def ok(self) -> bool:
        return not self.errors and self.rendered > 0


def _flags(profile: str) -> list[str]:
    return [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        "--virtual-time-budget=10000",
    ]


def _run(browser: str, args: list[str], timeout: float) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run(
            [browser, *_flags(profile), *args], capture_output=True, text=True, timeout=timeout, check=False
        )


def console_errors(stderr: str) -> list[str]:
    """Console messages at error level, and uncaught exceptions, from Chromium's stderr log."""
    out = []
    for line in stderr.splitlines():
        if "CONSOLE" in line and re.search(r"Uncaught|Error|error", line):
            out.append(line.strip())
    return out


def check_page(path: Path, browser: str | None = None, timeout: float = 90) -> PageCheck:
    browser = browser or find_browser()
    if browser is None:
        raise FileNotFoundError("no Chromium found (apt-get install chromium)")
    url = Path(path).resolve().as_uri()
    proc = _run(browser, ["--enable-logging=stderr", "--v=0", "--dump-dom", url], timeout)
    dom = proc.stdout
    if proc.returncode != 0 or "<body" not in dom:
        raise RuntimeError(f"{browser} exited {proc.returncode}: {proc.stderr[-2000:]}")
    body = re.search(r"<body([^>]*)>", dom)
    attrs = body.group(1) if body else ""
    rendered = re.search(r'data-rendered="(\d+)"', attrs)
    page_errors = re.search(r'data-errors="([^"]*)"', attrs)
    errors = console_errors(proc.stderr) + ([page_errors.group(1)] if page_errors else [])
    if rendered is None:
        errors.append("the page's script did not finish (no data-rendered on <body>)")
    return PageCheck(
        int(rendered.group(1)) if rendered else 0,
        len(re.findall(r'<div class="fig" id="fig-', dom)),
        len(re.findall(r'<circle [^>]*class="pt"', dom)),
        errors,
    )


def screenshot(
    path: Path, png: Path, browser: str | None = None, size=(1280, 3000), timeout: float = 90
) -> Path:
    browser = browser or find_browser()
    if browser is None:
        raise FileNotFoundError("no Chromium found (apt-get install chromium)")
    png = Path(png).resolve()
    proc = _run(
        browser,
        [f"--screenshot={png}", f"--window-size={size[0]},{size[1]}", Path(path).resolve().as_uri()],
        timeout,
    )
    if not png.exists():
        raise RuntimeError(f"{browser} wrote no screenshot (exit {proc.returncode}): {proc.stderr[-2000:]}")
    return png


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: python -m lorasweep.report.browser REPORT.html [SCREENSHOT.png]", file=sys.stderr)
        return 2
    page = Path(argv[0])
    if not page.exists():
        print(f"error: {page}: no such file (run lorasweep report RUN_DIR first)", file=sys.stderr)
        return 2
    if find_browser() is None:
        print("error: no Chromium found (apt-get install chromium)", file=sys.stderr)
        return 2
    result = check_page(page)
    png = screenshot(page, Path(argv[1]) if len(argv) > 1 else page.with_suffix(".png"))
    print(
        f"{page}: drew {result.rendered} of {result.figures} figures, {result.svg_marks} points; screenshot {png}"
    )
    for e in result.errors:
        print(f"error: {e}", file=sys.stderr)
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
