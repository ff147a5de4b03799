"""The bin's status as Prometheus metrics (``GET /metrics``), for Grafana through Prometheus.

The only module that imports prometheus_client. Each scrape is rendered from the same status
document as ``/api/status`` (the daemon's counts and stats, see docs/mqtt.md), so the figures are
the ones MQTT dashboards see. Names follow Prometheus' conventions: base units (seconds),
``_total`` for counters. Since-install counts never go down and are counters; since-reset counts
drop to 0 on ``reset_counts`` and are gauges. docs/prometheus.md lists every metric.

Usage:
    body, content_type = metrics.render(server.status(recent=False))
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

# stats field -> (metric name, help, kind); the names omit "_total", which prometheus_client adds.
_STATS = (
    ("fps", "smartbin_frames_per_second", "Frames the sorting loop read per second, over the last 10 s.", "gauge"),
    ("frames", "smartbin_frames_read", "Frames the sorting loop read since the daemon started.", "counter"),
    ("dropped_frames", "smartbin_dropped_frames", "Frames a live OpenCV camera threw away unread.", "counter"),
    ("unreadable_frames", "smartbin_unreadable_frames", "Frames and replay photos that could not be used.",
     "counter"),
    ("camera_errors", "smartbin_camera_errors", "Failed or timed-out camera reads (retried).", "counter"),
    ("flap_errors", "smartbin_flap_errors", "Times the flap could not be driven.", "counter"),
    ("uptime_s", "smartbin_uptime_seconds", "Seconds since smartbin run started.", "gauge"),
    ("cpu_temperature_c", "smartbin_cpu_temperature_celsius", "SoC temperature.", "gauge"),
    ("outbox", "smartbin_outbox_events", "Events not yet acknowledged by the MQTT broker.", "gauge"),
    ("outbox_dropped", "smartbin_outbox_dropped", "Events dropped from a full outbox (since install).", "counter"),
    ("tray_relearned", "smartbin_tray_relearned", "Times the detector took a changed tray as the new empty tray.",
     "counter"),
)
# stats field -> (metric, statistic label) of the per-item latencies, given in ms, exposed in seconds.
_LATENCIES = (
    ("inference_ms_mean", "smartbin_item_inference_seconds", "mean"),
    ("inference_ms_p90", "smartbin_item_inference_seconds", "p90"),
    ("decision_ms_p50", "smartbin_item_decision_seconds", "p50"),
    ("decision_ms_p90", "smartbin_item_decision_seconds", "p90"),
)
_LATENCY_HELP = {
    "smartbin_item_inference_seconds": "Pre-processing plus inference of an item's frames, over the last 200 items.",
    "smartbin_item_decision_seconds": "Settled frame to flap command, over the last 200 items.",
}


# The classic text format, which every Prometheus 2.x and 3.x, VictoriaMetrics and Telegraf read. Newer
# prometheus_client versions call their output "1.0.0", identical to this for names like ours.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def render(status: dict[str, Any]) -> tuple[bytes, str]:
    """The Prometheus text exposition of a status document (``WebServer.status()``) and its content type."""
    from prometheus_client import generate_latest

    families = list(_families(status))

    class _Snapshot:  # what generate_latest() needs of a registry: the families to write
        def collect(self):
            return families

    return generate_latest(_Snapshot()), CONTENT_TYPE


def _families(status: dict[str, Any]) -> Iterator:
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    model = status.get("model") or {}
    info = GaugeMetricFamily("smartbin_info", "The bin and its model (value always 1).",
                             labels=["device_id", "model", "model_sha256", "live"])
    info.add_metric([str(status.get("device_id") or ""), str(model.get("name") or ""),
                     str(model.get("sha256") or ""), "true" if status.get("live") else "false"], 1)
    yield info

    counts = status.get("counts")
    if counts:
        since_reset = counts.get("since_reset") or {}
        for key, label in (("labels", "label"), ("bins", "bin")):
            noun = "class" if key == "labels" else "bin"
            total = CounterMetricFamily(f"smartbin_{key}_items", f"Items sorted per {noun} since install.",
                                        labels=[label])
            current = GaugeMetricFamily(f"smartbin_{key}_items_since_reset",
                                        f"Items sorted per {noun} since the last reset_counts.", labels=[label])
            # Every class and bin from the start, at 0: a series that only appears with its first item
            # hides that item from increase(), and one that vanishes on a reset empties a bar gauge.
            names = _possible(status, key) | set(counts.get(key, {})) | set(since_reset.get(key, {}))
            for name in sorted(names):
                total.add_metric([name], counts.get(key, {}).get(name, 0))
                current.add_metric([name], since_reset.get(key, {}).get(name, 0))
            yield total
            yield current
        yield CounterMetricFamily("smartbin_items", "Items sorted since install.", value=counts.get("total", 0))
        yield GaugeMetricFamily("smartbin_items_since_reset", "Items sorted since the last reset_counts.",
                                value=since_reset.get("total", 0))
        if since_reset.get("reset_at") is not None:
            yield GaugeMetricFamily("smartbin_counts_reset_timestamp_seconds",
                                    "Unix time of the last reset_counts (or of the state's creation).",
                                    value=since_reset["reset_at"])

    stats = status.get("stats")
    if stats:
        for field, name, help_text, kind in _STATS:
            if stats.get(field) is not None:
                family = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
                yield family(name, help_text, value=stats[field])
        latencies: dict[str, Any] = {}
        for field, name, statistic in _LATENCIES:
            if stats.get(field) is not None:
                if name not in latencies:
                    latencies[name] = GaugeMetricFamily(name, _LATENCY_HELP[name], labels=["stat"])
                latencies[name].add_metric([statistic], stats[field] / 1000.0)
        yield from latencies.values()

    mqtt = status.get("mqtt")
    if mqtt and mqtt.get("enabled"):
        yield GaugeMetricFamily("smartbin_mqtt_connected", "1 while connected to the MQTT broker.",
                                value=1 if mqtt.get("connected") else 0)


def _possible(status: dict[str, Any], key: str) -> set[str]:
    """The classes (``labels``) or bins (``bins``) an item can count towards: the model's labels, the
    configured bins and the reject bin (from the status' ``model`` and ``web`` blocks)."""
    if key == "labels":
        return set((status.get("model") or {}).get("labels") or [])
    web = status.get("web") or {}
    return set((web.get("bins") or {}).values()) | ({web["reject_bin"]} if web.get("reject_bin") else set())
