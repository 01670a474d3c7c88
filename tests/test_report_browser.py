"""report.html opened from disk in a real headless Chromium (Debian's `chromium`, driven by Playwright): no console
error, no network request of any kind, every image decoded; a screenshot is saved.

Skipped only when chromium (or Playwright) is missing and the environment variable CI is unset: CI (`.ci/run`
installs chromium and exports CI=1) fails instead, so the check cannot silently vanish there.
"""

import os
import shutil
from pathlib import Path

import pytest
from report_data import synthetic_items

from unetlab.evaluation.html import ReportFacts, write_report
from unetlab.evaluation.scoring import evaluate_stream

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOT_COPY = Path("/tmp/unetlab_report_screenshot.png")  # for a person to look at after a local run


def _missing(what: str):
    if os.environ.get("CI"):
        pytest.fail(
            f"{what} is missing in CI; .ci/run installs chromium with apt-get and playwright with the dev extra"
        )
    pytest.skip(f"{what} is not installed (apt-get install chromium; pip install playwright); CI fails instead")


@pytest.fixture(scope="module")
def browser():
    chromium = shutil.which("chromium")
    if chromium is None:
        _missing("chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("playwright")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def build_report(folder: Path, num_outputs: int) -> Path:
    items = synthetic_items(num_outputs, n=4)
    names = ["background", "membrane"] if num_outputs == 1 else [f"class {c}" for c in range(num_outputs)]
    threshold = {"threshold": 0.45, "other_thresholds": (0.5,)} if num_outputs == 1 else {}
    evaluation = evaluate_stream(items, names, **threshold)
    facts = ReportFacts(
        model="unet <tiny> & co", checkpoint="runs/a&b/checkpoints/best.pt", data="data/<em>",
        images="the 4 validation images that the run recorded", threshold_source="chosen on the validation images",
    )  # fmt: skip
    training = [{"epoch": e, "step": 10 * e, "train/loss": 1 / e, "val/loss": None if e == 2 else 1.2 / e,
                 "val/dice": 1 - 0.5 / e, "lr": 1e-3 / e} for e in range(1, 6)]  # fmt: skip
    write_report(folder, evaluation, facts, training)
    return folder / "report.html"


def visit(browser, page_file: Path, screenshot: Path | None = None) -> dict:
    """Open `page_file` from disk and record what happened: console errors, requests, images, text."""
    url = page_file.resolve().as_uri()
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors, requests = [], []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("requestfailed", lambda request: errors.append(f"failed: {request.url}"))
    page.on("request", lambda request: requests.append(request.url))
    page.goto(url, wait_until="load")
    images = page.evaluate(
        "Array.from(document.images).map(i => ({alt: i.alt, done: i.complete, width: i.naturalWidth}))"
    )
    text = page.inner_text("body")
    if screenshot is not None:
        page.screenshot(path=str(screenshot), full_page=True)
    page.close()
    outside = [r for r in requests if r != url and not r.startswith("data:")]
    return {"url": url, "errors": errors, "requests": requests, "outside": outside, "images": images, "text": text}


def test_the_checks_catch_a_page_that_reaches_out(browser, tmp_path):
    page_file = tmp_path / "bad.html"
    page_file.write_text('<!DOCTYPE html><html><head><link rel="icon" href="data:,"></head><body>'
                         '<img alt="remote" src="http://127.0.0.1:9/x.png"></body></html>')  # fmt: skip
    seen = visit(browser, page_file)
    assert seen["outside"] == ["http://127.0.0.1:9/x.png"]
    assert seen["errors"] and seen["images"][0]["width"] == 0


@pytest.mark.parametrize("num_outputs", [1, 3])
def test_report_opens_offline_in_chromium_with_every_image_decoded(browser, tmp_path, num_outputs):
    screenshot = tmp_path / f"report_{num_outputs}.png"
    seen = visit(browser, build_report(tmp_path / "report", num_outputs), screenshot)
    assert seen["errors"] == []
    assert seen["outside"] == [], f"the report asked for {seen['outside']}"
    assert seen["url"] in seen["requests"]  # the listener did see the page itself
    images = seen["images"]
    assert len(images) >= 8  # legend, 4 thumbnails, confusion matrix, reliability, PR (ROC), training curves
    assert [i for i in images if not (i["done"] and i["width"] > 0)] == []
    for title in ("Per-class scores", "Confusion matrix", "Calibration", "Boundary metrics", "Training curves"):
        assert title in seen["text"]
    assert "slice <0> & 'co'.png" in seen["text"]  # escaped in the file, shown as written
    assert ("Touching objects" in seen["text"]) == (num_outputs == 1)
    assert screenshot.stat().st_size > 10_000
    copy = SCREENSHOT_COPY if num_outputs == 1 else SCREENSHOT_COPY.with_stem(SCREENSHOT_COPY.stem + "_k3")
    shutil.copyfile(screenshot, copy)
