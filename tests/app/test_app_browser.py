"""The app in a real browser: headless Chromium (Debian's `chromium`, driven by Playwright without downloading a
browser) loads the page, uploads an example, presses "Deblur", waits for the result and takes a screenshot.

Skipped when /usr/bin/chromium or Playwright is missing (.ci/run installs both).

Also a script, to refresh the screenshot in the docs with the model the app would load:
    python tests/app/test_app_browser.py docs/images/app_screenshot.png
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "coffee_defocused.jpg"
TIMEOUT_MS = 120_000


def deblur_in_browser(url: str, image: Path, screenshot: Path) -> dict:
    """Upload ``image`` on the page at ``url``, deblur it, screenshot the page; returns what the page showed."""
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.goto(url, wait_until="networkidle", timeout=TIMEOUT_MS)
            page.locator("#deblur-input input[type=file]").set_input_files(str(image))
            expect(page.locator("#deblur-input img").first).to_be_visible(timeout=TIMEOUT_MS)  # upload finished
            page.locator("#deblur-button").click()
            status = page.locator("#deblur-status")
            expect(status).to_contain_text("Deblurred", timeout=TIMEOUT_MS)
            result = page.locator("#deblur-result img")
            expect(result.first).to_be_visible(timeout=TIMEOUT_MS)
            expect(result.last).to_have_js_property("complete", True, timeout=TIMEOUT_MS)
            sources = [result.nth(i).get_attribute("src") for i in range(result.count())]
            natural_width = result.last.evaluate("img => img.naturalWidth")
            page.wait_for_timeout(500)  # let the slider settle before the screenshot
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(screenshot), full_page=True)
            return {"status": status.inner_text(), "sources": sources, "natural_width": natural_width}
        finally:
            browser.close()


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    pytest.importorskip("playwright.sync_api", reason="Playwright for Python is not installed")
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium; .ci/run installs it)")
    from test_app import load_app_module, tiny_pipeline

    app = load_app_module()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GRADIO_TEMP_DIR", str(tmp_path_factory.mktemp("gradio-cache")))
        demo = app.build_demo(tiny_pipeline(), "tiny test pipeline")
        _, local_url, _ = demo.launch(prevent_thread_lock=True, quiet=True, **app.LAUNCH_KWARGS)
        try:
            yield local_url
        finally:
            demo.close()
            torch.set_num_threads(threads)


def test_page_deblurs_an_uploaded_example_and_shows_the_result(url, tmp_path):
    screenshot = tmp_path / "app.png"
    shown = deblur_in_browser(url, EXAMPLE, screenshot)
    assert "Deblurred 600×400 px" in shown["status"]
    assert any("deblurred_preview" in (src or "") for src in shown["sources"])  # the output image appeared
    assert shown["natural_width"] == 600  # and it loaded, at full size
    assert screenshot.stat().st_size > 10_000


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    import app as app_module

    app_module.configure_threads()
    pipe, source = app_module.load_pipeline()
    demo = app_module.build_demo(pipe, source)
    _, local_url, _ = demo.launch(prevent_thread_lock=True, quiet=True, **app_module.LAUNCH_KWARGS)
    try:
        print(deblur_in_browser(local_url, EXAMPLE, Path(sys.argv[1] if len(sys.argv) > 1 else "app_screenshot.png")))
    finally:
        demo.close()
