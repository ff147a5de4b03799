"""The live status section: what the page shows must be what the daemon says.

First against a status provider returning a plain dict, then against a real replay daemon
(tiny INT8 bundle, mock flap, photos on a simulated tray) with the page open in Chromium.
"""

from __future__ import annotations

import time

import pytest

from edge.decision import Decider
from edge.web.server import WebServer
from tests.conftest import REPO_ROOT, TINY_LABELS
from tests.web_support import BINS, FakeDaemon, HeldReplay, chromium, request

pytestmark = pytest.mark.timeout(120)

ARTIFACTS = REPO_ROOT / "test-artifacts"


@pytest.fixture
def daemon():
    return FakeDaemon([("glass", "glass", 0.93), ("metal", "packaging", 0.88), ("glass", "glass", 0.71),
                       ("cardboard", "paper", 0.97), ("metal", "rest", 0.41)])


@pytest.fixture
def server(classifier, daemon, tmp_path):
    web = WebServer(port=0, classifier=classifier, decider=Decider(BINS, "rest", 0.6),
                    status_provider=daemon.status, state_dir=tmp_path)
    web.start()
    yield web
    web.stop()


def page_counts(page, table: str) -> dict[str, tuple[int, int]]:
    """``{name: (since_reset, all_time)}`` as the page's table shows it."""
    return page.evaluate(f"""() => Object.fromEntries([...document.querySelectorAll('#{table} tbody tr')]
        .map((row) => [row.querySelector('th').textContent,
                       [Number(row.querySelector('.since-reset').textContent),
                        Number(row.querySelector('.all-time').textContent)]]))""")


def expected_counts(counts: dict, key: str) -> dict[str, list[int]]:
    since = counts["since_reset"][key]
    names = set(counts[key]) | set(since)
    table = {name: [since.get(name, 0), counts[key].get(name, 0)] for name in names}
    table["Total"] = [sum(since.values()), sum(counts[key].values())]
    return table


# ---- the API -----------------------------------------------------------------------------------

def test_status_returns_the_daemons_dict_marked_live(server, daemon):
    status, _, result = request(server.url + "api/status")
    assert status == 200 and result["live"] is True
    expected = daemon.status()
    for key in ("device_id", "counts", "recent", "stats", "mqtt"):
        assert result[key] == expected[key]
    assert result["model"] == expected["model"]
    assert result["web"]["min_confidence"] == 0.6


def test_a_status_without_a_model_block_gets_the_classifiers(classifier, tmp_path):
    web = WebServer(port=0, classifier=classifier, decider=Decider(BINS, "rest", 0.6),
                    status_provider=lambda recent=True: {"device_id": "x"}, state_dir=tmp_path)
    web.start()
    try:
        result = request(web.url + "api/status")[2]
    finally:
        web.stop()
    assert result["live"] is True and result["model"]["labels"] == list(TINY_LABELS)


def test_a_failing_status_provider_is_a_503_and_the_page_keeps_working(server, daemon):
    daemon.fail = True
    status, _, result = request(server.url + "api/status")
    assert status == 503 and "store is locked" in result["error"]
    assert request(server.url)[0] == 200
    daemon.fail = False
    assert request(server.url + "api/status")[0] == 200


# ---- the page ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def browser():
    with chromium() as launched:
        yield launched


def test_the_page_shows_the_daemons_counts_items_and_stats_and_follows_changes(browser, server, daemon):
    context = browser.new_context(viewport={"width": 1100, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(15_000)
    try:
        page.goto(server.url)
        page.wait_for_selector("#live-body:not([hidden])")
        counts = daemon.status()["counts"]
        assert page_counts(page, "bin-counts") == expected_counts(counts, "bins")
        assert page_counts(page, "label-counts") == expected_counts(counts, "labels")
        recent = page.locator("#recent li")
        assert recent.count() == 5
        assert recent.first.get_attribute("data-id") == "item-4"  # newest first, as the daemon sends them
        assert "not sure" in recent.first.inner_text()
        assert page.locator("#recent img").evaluate_all("imgs => imgs.every((img) => img.naturalWidth > 0)")
        assert page.inner_text("#stat-fps") == "9.8"
        assert "41.2 ms mean" in page.inner_text("#stat-inference")
        assert page.inner_text("#stat-mqtt") == "connected to 127.0.0.1:1883"
        assert "bin-7" in page.inner_text("#live-note")
        assert "95.8 % right on its test photos" in page.inner_text("#model-line")
        figures = page.locator("#metrics-table tbody tr")
        assert figures.count() == 4 + len(TINY_LABELS)
        assert figures.first.inner_text().split("\t") == ["Accuracy", "95.8 %", "96.0 %"]
        assert figures.nth(2).inner_text().split("\t") == ["Accuracy, 3 views", "96.3 %", "96.6 %"]
        assert "original, mirrored, flipped" in page.inner_text("#model-facts")
        assert "378 test photos" in page.inner_text("#metrics")
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "web-status.png"), full_page=True)

        daemon.items.append(("cardboard", "paper", 0.99))  # the page hears of it by itself (SSE)
        page.wait_for_function(
            "() => document.querySelector('#bin-counts tr[data-bin=\"paper\"] .all-time').textContent === '2'")
        assert page_counts(page, "bin-counts") == expected_counts(daemon.status()["counts"], "bins")
        assert recent.count() == 6
    finally:
        context.close()


def test_a_status_that_starts_failing_is_shown_as_stale_not_as_live(browser, server, daemon):
    page = browser.new_page()
    page.set_default_timeout(15_000)
    try:
        page.goto(server.url)
        page.wait_for_selector("#live-body:not([hidden])")
        daemon.fail = True  # the stream now sends `event: problem`
        page.wait_for_function("() => document.querySelector('#live-note').textContent.includes('store is locked')")
        assert "stale" in page.get_attribute("#live-body", "class")
        assert "warning" in page.get_attribute("#live-note", "class")  # a banner, not small grey text
        assert "Figures below are from" in page.inner_text("#live-note")  # the time of the last good update
        daemon.fail = False
        page.wait_for_function("() => !document.querySelector('#live-body').classList.contains('stale')")
        assert "bin-7" in page.inner_text("#live-note")
    finally:
        page.close()


def test_a_tab_in_the_background_gives_its_live_stream_back(browser, server, daemon):
    # Browsers open at most 6 connections to one host: forgotten tabs must not leave none for an upload.
    import edge.web.server as web_server

    def streams_open() -> int:
        return web_server.MAX_EVENT_STREAMS - server.event_streams._value

    def set_hidden(hidden: bool) -> None:
        page.evaluate("(hidden) => { Object.defineProperty(document, 'hidden', {value: hidden, configurable: true});"
                      " document.dispatchEvent(new Event('visibilitychange')); }", hidden)

    page = browser.new_page()
    page.set_default_timeout(15_000)
    try:
        page.goto(server.url)
        page.wait_for_selector("#live-body:not([hidden])")
        wait_until(lambda: streams_open() == 1)
        set_hidden(True)
        wait_until(lambda: streams_open() == 0)
        set_hidden(False)
        wait_until(lambda: streams_open() == 1)
    finally:
        page.close()


def wait_until(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_a_page_refused_a_live_stream_falls_back_to_polling(browser, server, daemon, monkeypatch):
    import edge.web.server as web_server

    taken = [server.event_streams.acquire(blocking=False) for _ in range(web_server.MAX_EVENT_STREAMS)]
    assert all(taken)  # eight other tabs hold every stream: this page's gets a 503
    page = browser.new_page()
    page.set_default_timeout(15_000)
    try:
        page.add_init_script("""new MutationObserver(() => {
            const note = document.getElementById('live-note');
            if (note && note.textContent.includes('Lost contact')) window.saidLost = true;
        }).observe(document, {subtree: true, childList: true, characterData: true});""")
        page.goto(server.url)
        page.wait_for_selector("#live-body:not([hidden])")
        page.wait_for_timeout(2500)  # past the stream's refusal and the first poll after it
        assert not page.evaluate("() => window.saidLost === true")  # refused is not lost: the bin answered
        daemon.items.append(("cardboard", "paper", 0.99))
        page.wait_for_function(
            "() => document.querySelector('#bin-counts tr[data-bin=\"paper\"] .all-time').textContent === '2'")
    finally:
        page.close()
        for _ in taken:
            server.event_streams.release()


# ---- against a running replay daemon ----------------------------------------------------------

def test_counts_on_the_page_match_a_running_replay_daemon(browser, tiny_bundle, tmp_path):
    replay = HeldReplay(tiny_bundle, tmp_path, "replay-bin")
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(20_000)
    try:
        page.goto(replay.daemon.web.url)
        replay.start()
        counts = replay.wait_until_sorted()
        page.wait_for_function("() => document.querySelectorAll('#recent li').length === 6")
        page.wait_for_function(
            f"() => document.querySelector('#bin-counts tr.total .all-time').textContent === '{counts['total']}'")
        assert page_counts(page, "bin-counts") == expected_counts(counts, "bins")
        assert page_counts(page, "label-counts") == expected_counts(counts, "labels")
        assert page.inner_text("#stat-items") == "6"
        page.screenshot(path=str(ARTIFACTS / "web-daemon.png"), full_page=True)
    finally:
        context.close()
        replay.stop()
    assert not replay.runner.is_alive()


def test_a_page_looking_while_another_encodes_the_thumbnail_still_gets_one(monkeypatch):
    import numpy as np

    from edge import imaging
    from edge.web import payloads

    entry = {"id": "a", "label": "glass", "_image": np.zeros((8, 8, 3), np.uint8)}
    real_encode, other_page = imaging.encode_jpeg, []

    def encode_while_another_page_looks(image, **options):
        if not other_page:
            other_page.append(None)
            other_page[0] = payloads.recent_entry(entry)  # a second web thread, mid-encode of the first
        return real_encode(image, **options)

    monkeypatch.setattr(imaging, "encode_jpeg", encode_while_another_page_looks)
    assert payloads.recent_entry(entry)["thumbnail_jpeg_b64"]
    assert other_page[0]["thumbnail_jpeg_b64"]
    assert "_image" not in entry
