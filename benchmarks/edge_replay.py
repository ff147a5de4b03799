"""Edge daemon benchmark (issue 4): the 378 TrashNet test photos replayed through ``python -m edge run``.

Builds a replay folder of symlinks to the official test photos (``splits.test`` of
``trashnet-split.json``; nothing is copied), starts a real mosquitto on a free port and runs the
daemon as its own process, unthrottled, with the shipped config except ``flap.settle_s: 0`` (the
flap's settle time is a physical wait that would otherwise dominate every figure). Every ``item``
event is collected over MQTT. In this process, and not while the daemon runs, the same photos are
classified as the daemon classifies an item (``classify_frames`` of K copies of ``read_image(path)``
with the shipped ``model.views``) and the raw ``invoke()`` of the same model is timed. Targets: events == photos; system accuracy == the classifier's own; per-item cost <=
1.15 x K x raw invoke; daemon peak RSS <= 150 MB; start-up to ``online`` <= 3 s; no TensorFlow.

Usage:
    python benchmarks/edge_replay.py --model models/trashnet-efficientnet-lite0-int8
    SMARTBIN_DATA=/data/trashnet python benchmarks/edge_replay.py --limit 20 --model /tmp/bundle
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

from machine import cpu_model, percentile
from process_watch import fail, forbidden, imported_modules, watch_process

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = REPO_ROOT / "models" / "trashnet-efficientnet-lite0-int8"
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data" / "trashnet"
SPLIT_NAME = "trashnet-split.json"
SHIPPED_CONFIG = REPO_ROOT / "firmware_config" / "smartbin.yaml"
DEVICE_ID = "bench"
COST_RATIO_LIMIT = 1.15
RSS_LIMIT_MB = 150.0
STARTUP_LIMIT_S = 3.0


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """``--data`` and ``--split-file`` as training.fit takes them (shared by the edge benchmarks)."""
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("SMARTBIN_DATA", DEFAULT_DATA)),
                        help="TrashNet class folder, as for training.fit (default: $SMARTBIN_DATA, else "
                             "../shared/data/trashnet)")
    parser.add_argument("--split-file", type=Path,
                        help=f"the official split (default: {SPLIT_NAME} beside the data folder)")


def trashnet_paths(data: Path, split_file: Path | None) -> tuple[Path, Path] | None:
    """(class folder, split file), or None when either is missing.

    A folder holding ``trashnet/`` and the split (the form these scripts took before) works too.
    """
    if split_file is None and (data / "trashnet").is_dir() and (data / SPLIT_NAME).is_file():
        data = data / "trashnet"
    split_file = split_file or data.parent / SPLIT_NAME
    return (data, split_file) if data.is_dir() and split_file.is_file() else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="bundle folder (default: the shipped one)")
    add_data_arguments(parser)
    parser.add_argument("--limit", type=int, help="only N test photos, spread over the list (development runs)")
    parser.add_argument("--raw-invokes", type=int, default=100, help="timed raw invokes before and after the run")
    parser.add_argument("--timeout", type=float, default=900, help="give up on the daemon after this many seconds")
    parser.add_argument("--no-importtime", action="store_true",
                        help="run the daemon without -X importtime (start-up without its small overhead; "
                             "the no-TensorFlow check then relies on /proc/PID/maps alone)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON only")
    parser.add_argument("--threads", type=int, help="LiteRT threads for the daemon and the raw invokes "
                        "(default: the shipped config's model.threads)")
    args = parser.parse_args(argv)
    if args.threads is None:
        from edge.config import load_config

        args.threads = load_config(SHIPPED_CONFIG).model.threads
    if not 1 <= args.threads <= 16:
        parser.error("--threads: must be between 1 and 16 (as model.threads)")
    if not (args.model / "manifest.json").is_file():
        print(f"error: no model bundle at {args.model} (pass --model)", file=sys.stderr)
        return 2
    found = trashnet_paths(args.data, args.split_file)
    if found is None:
        print(f"skipped: TrashNet not found at {args.data} (needs its class folders and {SPLIT_NAME}; "
              f"set SMARTBIN_DATA or pass --data and --split-file)", file=sys.stderr)
        return 0
    photo_root, split_file = found
    mosquitto = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(mosquitto).exists():
        print("error: mosquitto is not installed (apt-get install -y mosquitto)", file=sys.stderr)
        return 2

    test = json.loads(split_file.read_text())["splits"]["test"]
    if args.limit and args.limit < len(test):  # evenly spread, so every class is in a short run
        test = [test[i * len(test) // args.limit] for i in range(args.limit)]
    with tempfile.TemporaryDirectory(prefix="smartbin-bench-") as scratch:
        work = Path(scratch)
        replay = link_replay_folder(photo_root, test, work / "replay")
        config = write_config(work / "smartbin.yaml", args.threads)
        own = classifier_pass(args.model, photo_root, test, args.threads)
        raw_before = raw_invoke_ms(args.model, photo_root / test[0], args.raw_invokes, args.threads)
        broker = start_broker(mosquitto, work)
        try:
            run = run_daemon(args, replay, config, work, broker, len(test))
        finally:
            broker.process.terminate()
            broker.process.wait(timeout=10)
        raw_after = raw_invoke_ms(args.model, photo_root / test[0], args.raw_invokes, args.threads)
    figures = summarise(args, test, own, raw_before + raw_after, run)
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        report(figures)
    return 0 if all(figures["verdicts"].values()) else 1


# -- preparing -------------------------------------------------------------------------------

def link_replay_folder(photo_root: Path, test: list[str], folder: Path) -> Path:
    """``folder/<class>/<file>`` symlinks to the test photos: the replay's subfolder names are the truth."""
    for relative in test:
        target = folder / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to((photo_root / relative).resolve())
    return folder


def write_config(path: Path, threads: int) -> Path:
    """The shipped config with the flap's settle time set to 0 (a physical wait, not pipeline cost)."""
    import yaml

    data = yaml.safe_load(SHIPPED_CONFIG.read_text()) or {}
    data.setdefault("flap", {})["settle_s"] = 0
    data.setdefault("model", {})["threads"] = threads
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def classifier_pass(model: Path, photo_root: Path, test: list[str], threads: int) -> dict[str, str]:
    """The classifier's own label for every photo, read at full size exactly as the replay reads it and
    shown to the model as the daemon shows an item's K still frames (the shipped ``model.views`` in turn)."""
    from edge.classifier import Classifier
    from edge.config import load_config
    from edge.imaging import read_image

    shipped = load_config(SHIPPED_CONFIG)
    classifier = Classifier.from_path(model, threads=threads, views=shipped.model.views)
    k = shipped.detector.classify_frames
    return {relative: classifier.classify_frames([read_image(photo_root / relative)] * k).label
            for relative in test}


def raw_invoke_ms(model: Path, photo: Path, runs: int, threads: int) -> list[float]:
    """Times ``invoke()`` alone on the bundle's model, the way the daemon builds its interpreter."""
    from ai_edge_litert.interpreter import Interpreter

    from edge.bundle import load_bundle
    from edge.imaging import read_image, resize_for_model

    bundle = load_bundle(model)
    interpreter = Interpreter(model_path=str(bundle.model_path), num_threads=threads)
    interpreter.allocate_tensors()
    details = interpreter.get_input_details()[0]
    tensor = resize_for_model(read_image(photo), bundle.manifest.input)[None].astype(details["dtype"])
    interpreter.set_tensor(details["index"], tensor)
    for _ in range(5):  # warm-up: XNNPACK packs weights on the first invoke
        interpreter.invoke()
    timings = []
    for _ in range(runs):
        started = time.perf_counter()
        interpreter.invoke()
        timings.append((time.perf_counter() - started) * 1000)
    return timings


class Broker:
    def __init__(self, process: subprocess.Popen, port: int):
        self.process, self.port = process, port


def start_broker(binary: str, work: Path) -> Broker:
    """A throw-away mosquitto on a free loopback port (as tests/conftest.py's ``Mosquitto``)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = work / "mosquitto.conf"
    config.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    process = subprocess.Popen([binary, "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return Broker(process, port)
        except OSError:
            time.sleep(0.05)
    process.kill()
    fail(f"mosquitto did not start on port {port}")


# -- running ---------------------------------------------------------------------------------

class Collector:
    """Subscribes to the daemon's topics before it starts and keeps every message with its arrival time."""

    def __init__(self, port: int):
        import paho.mqtt.client as mqtt

        self.messages: list[tuple[float, str, bytes]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="smartbin-bench-collector")
        # Only the two topics read here: every other message (counts, last_item, stats) would cost this
        # process CPU on the daemon's two cores.
        self.client.on_connect = lambda client, *_: client.subscribe(
            [(f"smartbin/{DEVICE_ID}/{name}", 1) for name in ("item", "availability")])
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port, keepalive=30)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            fail("cannot subscribe to the benchmark broker")

    def _on_message(self, client, userdata, message):
        with self._lock:
            self.messages.append((time.perf_counter(), message.topic, bytes(message.payload)))

    def on(self, name: str) -> list[tuple[float, bytes]]:
        topic = f"smartbin/{DEVICE_ID}/{name}"
        with self._lock:
            return [(at, payload) for at, found, payload in self.messages if found == topic]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def run_daemon(args, replay: Path, config: Path, work: Path, broker: Broker, expected: int) -> dict:
    """Runs the daemon to the end of the replay; returns events, timings, memory, CPU and imports."""
    import psutil

    collector = Collector(broker.port)
    interpreter_flags = [] if args.no_importtime else ["-X", "importtime"]
    command = [sys.executable, *interpreter_flags, "-m", "edge", "run", "--config", str(config),
               "--replay", str(replay), "--replay-fps", "0", "--mock-gpio", "--model", str(args.model.resolve()),
               "--state-dir", str(work / "state"), "--mqtt", f"127.0.0.1:{broker.port}", "--device-id", DEVICE_ID]
    log_path = work / "daemon.log"
    broker_process = psutil.Process(broker.process.pid)
    broker_cpu, own_cpu = sum(broker_process.cpu_times()[:2]), time.process_time()
    started = time.perf_counter()
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=log, cwd=REPO_ROOT,
                                   env={**os.environ, "PYTHONUNBUFFERED": "1"})
        memory = watch_process(process, args.timeout)
    ended = time.perf_counter()
    # The harness shares the daemon's cores: how much CPU it took while the daemon ran.
    cpu_s = {"daemon": memory.pop("cpu_s"), "broker": sum(broker_process.cpu_times()[:2]) - broker_cpu,
             "this_script": time.process_time() - own_cpu}
    deadline = time.monotonic() + 10  # the daemon flushed before exiting; allow for delivery to us
    while len(collector.on("item")) < expected and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)
    collector.close()
    text = log_path.read_text(errors="replace")
    if process.returncode != 0:
        tail = "\n".join([line for line in text.splitlines() if not line.startswith("import time:")][-15:])
        fail(f"the daemon exited with {process.returncode}:\n{tail}")
    online = [at for at, payload in collector.on("availability") if payload == b"online"]
    return {
        "command": " ".join(["python"] + command[1:]),
        "events": [json.loads(payload) for _, payload in collector.on("item")],
        "availability": [payload.decode() for _, payload in collector.on("availability")],
        "startup_s": online[0] - started if online else None,
        "wall_s": ended - started,
        "imports": imported_modules(text),
        "cpu_s": cpu_s,
        **memory,
    }


# -- results ---------------------------------------------------------------------------------

def summarise(args, test: list[str], own: dict[str, str], raw_ms: list[float], run: dict) -> dict:
    from edge.bundle import load_bundle
    from edge.config import load_config

    shipped = load_config(SHIPPED_CONFIG)
    k = shipped.detector.classify_frames
    events = list({event["id"]: event for event in run["events"]}.values())
    events.sort(key=lambda event: event["ts"])
    truth = {relative: relative.split("/", 1)[0] for relative in test}
    system_correct = sum(event["label"] == event.get("truth") for event in events)
    own_correct = sum(own[relative] == truth[relative] for relative in test)
    disagreements = sorted(event.get("source", "?") for event in events if event["label"] != own.get(event.get("source")))
    gaps = [(later["ts"] - earlier["ts"]) * 1000 for earlier, later in zip(events, events[1:])]
    raw_invoke = statistics.median(raw_ms)
    per_item = statistics.median(gaps) if gaps else float("nan")
    daemon_invoke = statistics.median(event["latency_ms"]["invoke"] for event in events) if events else float("nan")
    decision = [event["latency_ms"]["decision"] for event in events]
    bundle = load_bundle(args.model)
    peak_rss = max(run["peak_rss_polled_mb"], run["peak_rss_vmhwm_mb"])
    imported = forbidden(run)
    figures = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": platform.machine(), "cpu": cpu_model(), "cores": os.cpu_count(),
        "load_average": [round(value, 2) for value in os.getloadavg()],
        "command": run["command"],
        "model": {"path": str(args.model), "backbone": bundle.manifest.backbone,
                  "quantization": bundle.manifest.quantization, "sha256": bundle.manifest.sha256[:12],
                  "input": f"{bundle.manifest.input.height}x{bundle.manifest.input.width}",
                  "threads": args.threads},
        "photos": len(test), "events": len(run["events"]), "unique_events": len(events),
        "events_for_other_photos": sum(event.get("source") not in own for event in events),
        "availability": run["availability"],
        "system_accuracy": round(system_correct / len(test), 4),
        "classifier_accuracy": round(own_correct / len(test), 4),
        "disagreements": len(disagreements), "disagreeing_photos": disagreements[:10],
        "decision_latency_ms": {"p50": round(percentile(decision, 50), 2), "p90": round(percentile(decision, 90), 2)},
        "classify_latency_ms_p50": round(statistics.median(e["latency_ms"]["classify"] for e in events), 2),
        "k": k,
        "per_item_ms_median": round(per_item, 2),
        "per_item_ms_mean": round((events[-1]["ts"] - events[0]["ts"]) * 1000 / (len(events) - 1), 2)
        if len(events) > 1 else None,
        "raw_invoke_ms_median": round(raw_invoke, 2),
        "raw_k_invokes_ms": round(k * raw_invoke, 2),
        "cost_ratio": round(per_item / (k * raw_invoke), 3),
        "decision_ratio": round(percentile(decision, 50) / (k * raw_invoke), 3),
        "daemon_invoke_ms_median": round(daemon_invoke, 2),
        "cost_ratio_vs_daemon_invoke": round(per_item / daemon_invoke, 3),
        "peak_rss_mb": round(peak_rss, 1), "peak_rss_polled_mb": round(run["peak_rss_polled_mb"], 1),
        "startup_to_online_s": round(run["startup_s"], 2) if run["startup_s"] is not None else None,
        "daemon_wall_s": round(run["wall_s"], 1),
        "cpu_ms_per_item": {name: round(seconds * 1000 / len(test), 2) for name, seconds in run["cpu_s"].items()},
        "modules_imported": len(run["imports"]), "forbidden_modules": imported["modules"],
        "forbidden_mapped_files": imported["mapped_files"],
    }
    figures["verdicts"] = {
        "every_photo_one_event": len(events) == len(test) and figures["events_for_other_photos"] == 0
        and len({event.get("source") for event in events}) == len(test),
        "system_equals_classifier": not disagreements and system_correct == own_correct,
        "cost_ratio": figures["cost_ratio"] <= COST_RATIO_LIMIT,
        "peak_rss": peak_rss <= RSS_LIMIT_MB,
        "startup": figures["startup_to_online_s"] is not None and figures["startup_to_online_s"] <= STARTUP_LIMIT_S,
        "no_tensorflow": not imported["modules"] and not imported["mapped_files"]
        and (len(run["imports"]) > 0 or args.no_importtime),
    }
    return figures




def report(f: dict) -> None:
    mark = lambda key: "OK" if f["verdicts"][key] else "MISSED"  # noqa: E731
    model = f["model"]
    print(f"{f['date']}  {f['machine']}  {f['cpu']} ({f['cores']} cores), load average {f['load_average']}")
    print(f"model {model['path']} ({model['backbone']} {model['quantization']} {model['input']}, "
          f"sha256 {model['sha256']}..., {model['threads']} threads)")
    print(f"command: {f['command']}")
    print(f"events {f['unique_events']} unique / {f['events']} received for {f['photos']} photos "
          f"-> {mark('every_photo_one_event')}; availability {' -> '.join(f['availability'])}")
    print(f"system accuracy {f['system_accuracy']:.4f}, classifier's own {f['classifier_accuracy']:.4f}, "
          f"{f['disagreements']} disagreements -> {mark('system_equals_classifier')}")
    print(f"decision latency p50 {f['decision_latency_ms']['p50']} ms, p90 {f['decision_latency_ms']['p90']} ms "
          f"(classify p50 {f['classify_latency_ms_p50']} ms)")
    print(f"per item {f['per_item_ms_median']} ms median ({f['per_item_ms_mean']} mean); raw invoke "
          f"{f['raw_invoke_ms_median']} ms x K={f['k']} = {f['raw_k_invokes_ms']} ms -> ratio {f['cost_ratio']} "
          f"(limit {COST_RATIO_LIMIT}) -> {mark('cost_ratio')}; vs the daemon's own invoke time "
          f"{f['daemon_invoke_ms_median']} ms: {f['cost_ratio_vs_daemon_invoke']}")
    print(f"  settled frame -> flap command alone (decision latency p50 / raw K invokes): {f['decision_ratio']}")
    cpu = f["cpu_ms_per_item"]
    print(f"CPU per photo while the daemon ran: daemon {cpu['daemon']} ms, broker {cpu['broker']} ms, "
          f"this script (subscriber, memory poll) {cpu['this_script']} ms")
    print(f"daemon peak RSS {f['peak_rss_mb']} MB (limit {RSS_LIMIT_MB:g}) -> {mark('peak_rss')}")
    print(f"start-up to online {f['startup_to_online_s']} s (limit {STARTUP_LIMIT_S:g}) -> {mark('startup')}")
    print(f"{f['modules_imported']} modules imported, forbidden: {f['forbidden_modules'] or 'none'}; "
          f"TensorFlow files mapped: {f['forbidden_mapped_files'] or 'none'} -> {mark('no_tensorflow')}")


if __name__ == "__main__":
    sys.exit(main())
