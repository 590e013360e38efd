"""report.html in a real headless browser (Chromium): it draws its figures with no console errors.

Skips where no Chromium is installed (``.ci/run`` installs Debian's ``chromium`` first)."""

from __future__ import annotations

import os

import pytest

from lorasweep.report import browser

# .ci/run sets LORASWEEP_REQUIRE_BROWSER=1 once Chromium is installed: then a browser that cannot be
# found fails these tests instead of skipping them
REQUIRED = os.environ.get("LORASWEEP_REQUIRE_BROWSER") == "1"
needs_browser = pytest.mark.skipif(
    browser.find_browser() is None and not REQUIRED,
    reason="no Chromium on this machine (apt-get install chromium)",
)


def test_ci_finds_the_browser_it_installed():
    if not REQUIRED:
        pytest.skip("LORASWEEP_REQUIRE_BROWSER is not set (only .ci/run sets it)")
    assert browser.find_browser() is not None, f"none of {browser.CANDIDATES} is on PATH"


@needs_browser
def test_the_page_draws_its_figures_without_errors(study):
    _, run_dir, _ = study
    result = browser.check_page(run_dir / "report" / "report.html")
    assert result.errors == []
    # accuracy, noise scale, LR vs batch, 4 cost panels, same step, same data: all drawn, with points
    assert result.figures == 9 and result.rendered == 9, result
    assert result.svg_marks >= 6 * 3  # tuned points, per-seed points, LR points, cost points


@needs_browser
def test_a_script_error_is_caught(tmp_path):
    """The check can fail: a page whose script throws is reported with its error."""
    page = tmp_path / "bad.html"
    page.write_text(
        "<html><body><script>document.body.dataset.rendered='1'; undefinedCall();</script></body></html>"
    )
    result = browser.check_page(page)
    assert not result.ok and any("undefinedCall" in e for e in result.errors)


@needs_browser
def test_screenshot_is_written(study, tmp_path):
    _, run_dir, _ = study
    png = browser.screenshot(run_dir / "report" / "report.html", tmp_path / "shot.png", size=(1000, 1200))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20000
