"""The web page in a real headless Chromium: upload a photo, see the class and the bar chart.

Screenshots land in ``test-artifacts/`` (gitignored) for a person to look at.
"""

from __future__ import annotations

import base64

import pytest

from edge.classifier import Classifier
from edge.decision import Decider
from edge.web.server import WebServer
from tests.conftest import REPO_ROOT, TINY_LABELS, make_photo
from tests.web_support import chromium, jpeg_bytes

pytestmark = pytest.mark.timeout(120)

ARTIFACTS = REPO_ROOT / "test-artifacts"
BINS = {"cardboard": "paper", "glass": "glass", "metal": "packaging"}


@pytest.fixture(scope="module")
def browser():
    with chromium() as launched:
        yield launched


@pytest.fixture(scope="module")
def server(tiny_bundle, tmp_path_factory):
    web = WebServer(port=0, classifier=Classifier.from_path(tiny_bundle, threads=1),
                    decider=Decider(BINS, "rest", 0.6), state_dir=tmp_path_factory.mktemp("state"))
    web.start()
    yield web
    web.stop()


@pytest.fixture
def page(browser, server):
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    problems = []
    page.on("pageerror", lambda err: problems.append(str(err)))
    page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
    page.goto(server.url)
    page.wait_for_function("() => document.getElementById('model-line').textContent.includes('tiny')")
    yield page
    context.close()
    assert not [p for p in problems if "status of 4" not in p], problems


@pytest.fixture
def photo_file(tmp_path):
    path = tmp_path / "glass-bottle.jpg"
    path.write_bytes(jpeg_bytes(make_photo(1, size=(384, 512), seed=3)))
    return path


def test_uploading_a_photo_shows_its_class_bin_and_bar_chart(page, photo_file):
    page.set_input_files("#file-input", str(photo_file))

    page.wait_for_selector("#result:not([hidden])")
    assert page.inner_text("#result-label") == "glass"
    assert page.inner_text("#result-bin") == "glass"
    assert "glass bin" in page.inner_text("#verdict")
    assert page.inner_text("#result-confidence").endswith("%")
    assert "ms" in page.inner_text("#result-latency")
    bars = page.locator("#bars li")
    assert bars.count() == len(TINY_LABELS)
    assert bars.first.get_attribute("data-label") == "glass"
    top_width = page.locator("#bars li.top .bar-fill").evaluate("node => node.getBoundingClientRect().width")
    assert top_width > 50
    assert page.locator("#preview").evaluate("img => img.complete && img.naturalWidth") == 512
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "web-upload.png"), full_page=True)


def test_a_dropped_photo_is_classified(page):
    encoded = base64.b64encode(jpeg_bytes(make_photo(2, size=(120, 160)))).decode()
    transfer = page.evaluate_handle("""(b64) => {
        const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
        const transfer = new DataTransfer();
        transfer.items.add(new File([bytes], "can.jpg", { type: "image/jpeg" }));
        return transfer;
    }""", encoded)
    page.dispatch_event("#drop-zone", "drop", {"dataTransfer": transfer})
    page.wait_for_selector("#result:not([hidden])")
    assert page.inner_text("#result-label") == "metal"
    assert page.inner_text("#result-bin") == "packaging"


def test_a_file_that_is_not_a_photo_gets_a_clear_message(page, tmp_path):
    fake = tmp_path / "holiday.jpg"
    fake.write_bytes(b"this is not really a JPEG")
    page.set_input_files("#file-input", str(fake))
    page.wait_for_selector("#error:not([hidden])")
    message = page.inner_text("#error")
    assert "holiday.jpg" in message and "not an image" in message
    assert page.locator("#result").is_hidden()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "web-error.png"))


def test_the_drop_zone_is_a_keyboard_button_that_opens_the_file_picker(page):
    # Listening before any key is pressed switches Chromium's file-chooser interception on in time.
    page.on("filechooser", lambda chooser: None)
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "drop-zone"
    with page.expect_file_chooser() as chooser:
        page.keyboard.press("Enter")
    assert chooser.value.element.get_attribute("accept") == "image/*"


def test_the_page_fits_a_phone_and_labels_every_control(browser, server, photo_file):
    context = browser.new_context(viewport={"width": 375, "height": 740}, device_scale_factor=2, is_mobile=True)
    page = context.new_page()
    try:
        page.goto(server.url)
        page.set_input_files("#file-input", str(photo_file))
        page.wait_for_selector("#result:not([hidden])")
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        unlabelled = page.evaluate("""() => [...document.querySelectorAll('input, button')]
            .filter((node) => !(node.labels && node.labels.length) && !node.textContent.trim())
            .map((node) => node.id)""")
        assert unlabelled == []
        assert page.evaluate("[...document.images].every((img) => img.alt)")
        page.screenshot(path=str(ARTIFACTS / "web-phone.png"), full_page=True)
    finally:
        context.close()


def test_the_verdict_gives_the_real_reason_an_item_goes_to_the_reject_bin(page):
    verdict = "(result) => verdictText(result)"
    unsure = page.evaluate(verdict, {"label": "paper", "bin": "rest", "confidence": 0.5996, "rejected": True,
                                     "min_confidence": 0.6})
    assert "(59.9 %), below the 60.0 % needed" in unsure  # rounded down: never "60.0 %, below 60.0 %"
    no_bin = page.evaluate(verdict, {"label": "textiles", "bin": "rest", "confidence": 0.95, "rejected": True,
                                     "min_confidence": 0.6})
    assert "no bin of its own" in no_bin and "below" not in no_bin
    sure = page.evaluate(verdict, {"label": "glass", "bin": "glass", "confidence": 0.9, "rejected": False,
                                   "min_confidence": 0.6})
    assert sure == "This is glass: it goes in the glass bin."


def test_sizes_and_counts_are_shown_as_they_are(page):
    assert page.evaluate("() => [megabytes(524288), megabytes(10485760), megabytes(1572864)]") == ["0.5", "10", "1.5"]
    assert page.evaluate("() => own({}, 'constructor')") == 0  # a class named like a built-in counts 0, not a function


def sent_through_the_page(browser, tiny_bundle, state, photo, max_upload_bytes: int = 10 * 1024 * 1024) -> list:
    """Uploads ``photo`` through the page of a server that keeps uploads; returns what it received."""
    web = WebServer(port=0, classifier=Classifier.from_path(tiny_bundle, threads=1),
                    decider=Decider(BINS, "rest", 0.6), state_dir=state, keep_uploads=True,
                    max_upload_bytes=max_upload_bytes)
    web.start()
    page = browser.new_page()
    page.set_default_timeout(30_000)
    try:
        page.goto(web.url)
        page.set_input_files("#file-input", str(photo))
        page.wait_for_selector("#result:not([hidden])")
        return [path for path in (state / "uploads").iterdir() if path.suffix != ".json"]
    finally:
        page.close()
        web.stop()


def test_a_big_photo_is_shrunk_in_the_browser_before_upload(browser, tiny_bundle, tmp_path):
    import numpy as np

    from edge import image_header
    from tests.web_support import png_bytes

    noisy = np.random.default_rng(0).integers(0, 256, (1500, 2600, 3)).astype(np.uint8)  # ~11 MB as PNG
    big = tmp_path / "huge.png"
    big.write_bytes(png_bytes(noisy))
    assert big.stat().st_size > 10 * 1024 * 1024  # over the default upload limit as it is
    kept = sent_through_the_page(browser, tiny_bundle, tmp_path / "state", big)
    assert len(kept) == 1 and kept[0].suffix == ".jpeg"  # what the server received
    height, width = image_header.image_size(kept[0].read_bytes())
    assert max(height, width) == 2048 and kept[0].stat().st_size < 10 * 1024 * 1024


def test_under_a_low_upload_limit_a_photo_over_it_is_shrunk_not_refused(browser, tiny_bundle, tmp_path):
    import numpy as np

    from tests.web_support import png_bytes

    noisy = np.random.default_rng(2).integers(0, 256, (700, 900, 3)).astype(np.uint8)  # ~1.8 MB as PNG
    photo = tmp_path / "mid.png"
    photo.write_bytes(png_bytes(noisy))
    assert 1024 * 1024 < photo.stat().st_size < 2 * 1024 * 1024  # under the usual shrink size, over the limit
    kept = sent_through_the_page(browser, tiny_bundle, tmp_path / "state", photo, max_upload_bytes=512 * 1024)
    assert len(kept) == 1 and kept[0].suffix == ".jpeg" and kept[0].stat().st_size <= 512 * 1024


def test_a_big_cut_out_is_shrunk_on_white_as_the_bin_shows_transparency(browser, tiny_bundle, tmp_path):
    import cv2
    import numpy as np

    rgba = np.random.default_rng(1).integers(0, 256, (1200, 1600, 4)).astype(np.uint8)  # ~7 MB as PNG
    rgba[:, :800, 3] = 0  # the left half cut away
    rgba[:, 800:, 3] = 255
    cut_out = tmp_path / "cut-out.png"
    ok, data = cv2.imencode(".png", cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA))
    cut_out.write_bytes(data.tobytes())
    assert ok and cut_out.stat().st_size > 2 * 1024 * 1024  # so the page shrinks it to a JPEG
    kept = sent_through_the_page(browser, tiny_bundle, tmp_path / "state", cut_out)
    assert len(kept) == 1 and kept[0].suffix == ".jpeg"
    assert cv2.imread(str(kept[0]))[:, :700].mean() > 250  # white, not the black of a clear canvas in a JPEG


def test_review_photos_are_labelled_and_discarded_on_the_page(page, server):
    from edge.review import ReviewFolder

    review = ReviewFolder(server.desk.review)
    older = review.save(make_photo(2, size=(96, 128), seed=5), "item-1", "metal", 0.41).name
    newer = review.save(make_photo(1, size=(96, 128), seed=6), "item-2", "glass", 0.38).name
    page.click("#review-refresh")
    page.wait_for_function("() => document.querySelectorAll('#review-list li').length === 2")
    assert "2 photos wait" in page.inner_text("#review-note")
    items = page.locator("#review-list li")
    assert "guessed glass, 38 %" in items.nth(0).inner_text()  # newest first
    assert items.nth(0).locator("select").input_value() == "glass"  # the guess is preselected
    image = items.nth(1).locator("img")
    image.scroll_into_view_if_needed()  # loading="lazy": fetched once near the viewport
    assert image.evaluate("""img => img.complete && img.naturalWidth ? img.naturalWidth
        : new Promise((done) => { img.onload = () => done(img.naturalWidth); })""") == 128

    items.nth(0).locator("select").select_option("cardboard")
    items.nth(0).get_by_role("button", name="Label").click()
    page.wait_for_selector("#review-list li >> text=Labelled cardboard")
    assert "1 photo waits" in page.inner_text("#review-note")  # counted down without a reload
    items.nth(1).get_by_role("button", name="Discard").click()
    page.wait_for_selector("#review-list li >> text=Discarded")
    page.screenshot(path=str(ARTIFACTS / "web-review.png"), full_page=True)

    assert (server.desk.labelled / "cardboard" / newer).is_file()
    assert not (server.desk.review / older).exists() and not (server.desk.review / newer).exists()
    page.click("#review-refresh")
    page.wait_for_function("() => document.getElementById('review-note').textContent.startsWith('0 photos')")
    assert "1 labelled so far" in page.inner_text("#review-note")


def test_a_photo_whose_guess_the_model_does_not_have_must_be_given_a_class(page, server):
    from edge.review import ReviewFolder

    name = ReviewFolder(server.desk.review).save(make_photo(0, size=(96, 128)), "item-9", "battery", 0.2).name
    page.click("#review-refresh")
    item = page.locator("#review-list li", has_text="guessed another model's class")
    assert item.locator("select").input_value() == ""
    item.get_by_role("button", name="Label").click()
    assert page.inner_text("#review-error") == "Choose the item's class first."
    assert (server.desk.review / name).is_file()
    item.locator("select").select_option("metal")
    item.get_by_role("button", name="Label").click()
    page.wait_for_selector("#review-list li >> text=Labelled metal")


def test_with_the_bin_gone_the_labelling_desk_says_so_and_keeps_the_list(browser, tiny_bundle, tmp_path):
    from edge.review import ReviewFolder

    web = WebServer(port=0, classifier=Classifier.from_path(tiny_bundle, threads=1),
                    decider=Decider(BINS, "rest", 0.6), state_dir=tmp_path)
    ReviewFolder(web.desk.review).save(make_photo(1, size=(96, 128), seed=7), "item-3", "glass", 0.3)
    web.start()
    page = browser.new_page()
    page.set_default_timeout(15_000)
    try:
        page.goto(web.url)
        page.wait_for_function("() => document.querySelectorAll('#review-list li').length === 1")
        web.stop()
        page.click("#review-refresh")
        page.wait_for_function("() => !document.getElementById('review-error').hidden")
        assert "cannot reach the bin" in page.inner_text("#review-error")
        assert "1 photo waits" in page.inner_text("#review-note")  # not "no review photos"
        page.locator("#review-list li").get_by_role("button", name="Label").click()
        page.wait_for_function("() => document.getElementById('review-error').textContent.includes('cannot reach')")
        assert "Failed to fetch" not in page.inner_text("#review-error")
    finally:
        page.close()
        web.stop()
