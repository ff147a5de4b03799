"""``GET /metrics``: the status document as Prometheus metrics, scraped by a real Prometheus."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from edge.decision import Decider
from edge.web import metrics
from edge.web.server import WebServer
from tests.conftest import REPO_ROOT, free_port
from tests.web_support import BINS, FakeDaemon, HeldReplay, fake_status, request

pytestmark = pytest.mark.timeout(120)


def samples(text: str) -> dict[tuple[str, tuple], float]:
    """``{(sample name, sorted label pairs): value}`` of an exposition, parsed by prometheus_client."""
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def test_counts_become_counters_since_install_and_gauges_since_reset():
    status = fake_status([("glass", "glass", 0.9), ("metal", "packaging", 0.8), ("glass", "glass", 0.7)])
    status["counts"]["since_reset"]["reset_at"] = 1_760_000_000.5
    found = samples(metrics.render({**status, "live": True})[0].decode())
    assert found[("smartbin_labels_items_total", (("label", "glass"),))] == 2
    assert found[("smartbin_labels_items_total", (("label", "metal"),))] == 1
    assert found[("smartbin_bins_items_total", (("bin", "packaging"),))] == 1
    assert found[("smartbin_items_total", ())] == 3
    assert found[("smartbin_labels_items_since_reset", (("label", "glass"),))] == 1
    assert found[("smartbin_bins_items_since_reset", (("bin", "glass"),))] == 1
    assert found[("smartbin_items_since_reset", ())] == 1
    assert found[("smartbin_counts_reset_timestamp_seconds", ())] == 1_760_000_000.5


def test_every_class_and_bin_is_a_series_from_the_start_and_stays_one_after_a_reset():
    status = {**fake_status([]), "live": True,
              "web": {"bins": {"cardboard": "paper", "glass": "glass", "metal": "packaging"}, "reject_bin": "rest"}}
    status["counts"]["since_reset"].update(labels={}, bins={}, total=0)  # as right after reset_counts
    found = samples(metrics.render(status)[0].decode())
    for label in ("cardboard", "glass", "metal"):
        assert found[("smartbin_labels_items_total", (("label", label),))] == 0
        assert found[("smartbin_labels_items_since_reset", (("label", label),))] == 0
    for bin_name in ("paper", "glass", "packaging", "rest"):
        assert found[("smartbin_bins_items_total", (("bin", bin_name),))] == 0
        assert found[("smartbin_bins_items_since_reset", (("bin", bin_name),))] == 0


def test_stats_keep_their_meaning_in_base_units_and_the_info_names_bin_and_model():
    status = fake_status([("glass", "glass", 0.9)])
    found = samples(metrics.render({**status, "live": True})[0].decode())
    assert found[("smartbin_frames_per_second", ())] == 9.8
    assert found[("smartbin_item_inference_seconds", (("stat", "mean"),))] == pytest.approx(0.0412)
    assert found[("smartbin_item_inference_seconds", (("stat", "p90"),))] == pytest.approx(0.0479)
    assert found[("smartbin_dropped_frames_total", ())] == 3
    assert found[("smartbin_unreadable_frames_total", ())] == 1
    assert found[("smartbin_outbox_events", ())] == 0
    assert found[("smartbin_mqtt_connected", ())] == 1
    info = {"device_id": "bin-7", "model": "trashnet-test", "model_sha256": "ab" * 32, "live": "true"}
    assert found[("smartbin_info", tuple(sorted(info.items())))] == 1


def test_figures_not_known_yet_are_left_out_rather_shown_as_zero():
    status = fake_status([])
    status["stats"].update(inference_ms_mean=None, inference_ms_p90=None, cpu_temperature_c=None)
    names = {name for name, _ in samples(metrics.render(status)[0].decode())}
    assert "smartbin_item_inference_seconds" not in names and "smartbin_cpu_temperature_celsius" not in names
    assert "smartbin_counts_reset_timestamp_seconds" not in names  # reset_at None
    assert "smartbin_items_total" in names and "smartbin_frames_per_second" in names


def test_a_standalone_page_has_only_its_model_to_tell():
    found = samples(metrics.render({"live": False, "model": {"name": "m", "sha256": "cd" * 32}})[0].decode())
    assert list(found) == [("smartbin_info", (("device_id", ""), ("live", "false"), ("model", "m"),
                                              ("model_sha256", "cd" * 32)))]


def test_the_page_serves_metrics_in_prometheus_text_format_and_503_when_the_status_fails(classifier, tmp_path,
                                                                                        monkeypatch):
    daemon = FakeDaemon([("glass", "glass", 0.93), ("metal", "packaging", 0.88)])
    server = WebServer(port=0, classifier=classifier, decider=Decider(BINS, "rest", 0.6),
                       status_provider=daemon.status, state_dir=tmp_path)
    server.start()
    try:
        status, headers, body = request(server.url + "metrics")
        assert status == 200 and headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
        assert samples(body.decode())[("smartbin_items_total", ())] == 2
        assert daemon.asked_for_recent is False  # a scrape must not make the daemon encode thumbnails
        with monkeypatch.context() as patched:
            patched.setattr(metrics, "render", lambda status: 1 / 0)
            status, _, result = request(server.url + "metrics")
            assert status == 500 and "cannot render the metrics" in result["error"]
        daemon.fail = True
        status, _, result = request(server.url + "metrics")
        assert status == 503 and "store is locked" in result["error"]
    finally:
        server.stop()


# ---- a real Prometheus scraping a running replay daemon ----------------------------------------

def documented_panel_queries() -> list[str]:
    """The PromQL of every row of docs/prometheus.md's "Grafana panels" table."""
    text = (REPO_ROOT / "docs" / "prometheus.md").read_text()
    table = next(block for block in text.split("## Grafana panels", 1)[1].split("\n\n") if block.startswith("|"))
    queries = [row.rsplit("| `", 1)[1].rsplit("` |", 1)[0] for row in table.splitlines() if row.endswith("` |")]
    assert len(queries) >= 8
    return queries


class Prometheus:
    """Debian's prometheus on 127.0.0.1, scraping one target every second."""

    def __init__(self, binary: str, workdir, target: str):
        self.port = free_port()
        config = workdir / "prometheus.yml"
        config.write_text("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                          "scrape_configs:\n  - job_name: smartbin\n"
                          f"    static_configs:\n      - targets: ['{target}']\n")
        self.process = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={workdir / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def query(self, promql: str) -> list[dict]:
        url = f"http://127.0.0.1:{self.port}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(url, timeout=5) as answer:
            return json.load(answer)["data"]["result"]

    def wait_for(self, promql: str, by: str, expected: dict[str, float], timeout: float = 30.0) -> dict[str, float]:
        """Polls ``promql`` until it gives ``expected`` ({value of label ``by``: value}); returns the last answer."""
        deadline, found = time.monotonic() + timeout, None
        while time.monotonic() < deadline:
            try:
                found = {row["metric"].get(by, ""): float(row["value"][1]) for row in self.query(promql)}
            except OSError:
                found = None  # not listening yet
            if found == expected:
                break
            time.sleep(0.3)
        return found

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=10)


def test_prometheus_scrapes_the_counts_of_a_running_replay_daemon(tiny_bundle, tmp_path):
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("prometheus is not installed (apt-get install -y prometheus)")
    replay = HeldReplay(tiny_bundle, tmp_path, "scraped-bin")
    daemon, prometheus = replay.daemon, None
    try:
        prometheus = Prometheus(binary, tmp_path, urllib.parse.urlsplit(daemon.web.url).netloc)
        replay.start()
        bins = replay.wait_until_sorted()["bins"]
        rules = daemon.web.status(recent=False)["web"]  # bins nothing went to yet are series too, at 0
        per_bin = {name: 0.0 for name in [*rules["bins"].values(), rules["reject_bin"]]}
        per_bin.update({name: float(n) for name, n in bins.items()})
        assert prometheus.wait_for("smartbin_items_total", "job", {"smartbin": 6.0}) == {"smartbin": 6.0}
        assert prometheus.wait_for("sum by (bin) (smartbin_bins_items_since_reset)", "bin", per_bin) == per_bin
        assert prometheus.wait_for('smartbin_info{device_id="scraped-bin"}', "live", {"true": 1.0}) == {"true": 1.0}
        for promql in documented_panel_queries():  # valid PromQL (a bad one is an HTTP 400 here), with data
            if "temperature" in promql:  # no thermal zone on most CI machines: valid is all we can ask
                prometheus.query(promql)
                continue
            deadline = time.monotonic() + 10  # increase() needs two scrapes in its range
            while not (answer := prometheus.query(promql)) and time.monotonic() < deadline:
                time.sleep(0.3)
            assert answer, f"docs/prometheus.md: {promql} gives nothing"
        # Scraped every second, yet no recent item's thumbnail was encoded for it (only a page's look does).
        assert all("_image" in entry for entry in daemon.recent)
    finally:
        if prometheus is not None:
            prometheus.stop()
        replay.stop()
    assert not replay.runner.is_alive()
