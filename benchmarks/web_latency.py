"""Web page latency: one 384x512 JPEG through ``POST /api/classify`` vs the raw classifier, and server RSS.

Starts ``python -m edge.web`` as its own process (so its memory is measured alone), then alternates
one HTTP request and one raw ``Classifier.classify`` of the same decoded photo in this process
(with the same ``model.views`` as the server, so the same invokes), so both see the same machine load. Targets (issue 6): median request <= 1.5 x median raw classify
+ 20 ms; server RSS <= 150 MB.

Usage:
    python benchmarks/web_latency.py --model models/trashnet-efficientnet-lite0-int8 --requests 40
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

from machine import cpu_model, percentile

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = REPO_ROOT / "models" / "trashnet-efficientnet-lite0-int8"
DEFAULT_PHOTO = REPO_ROOT.parent / "shared" / "data" / "trashnet" / "glass" / "glass1.jpg"
RSS_LIMIT_MB = 150.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="bundle folder (default: the shipped one)")
    parser.add_argument("--photo", type=Path, default=DEFAULT_PHOTO,
                        help="a 384x512 JPEG (default: a TrashNet photo from ../shared, else a generated one)")
    parser.add_argument("--requests", type=int, default=40, help="timed requests (at least 30)")
    parser.add_argument("--threads", type=int, default=2, help="LiteRT threads, server and raw alike")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON only")
    args = parser.parse_args(argv)
    if not (args.model / "manifest.json").is_file():
        print(f"error: no model bundle at {args.model} (pass --model)", file=sys.stderr)
        return 2

    from edge.classifier import Classifier
    from edge.config import Config
    from edge.imaging import decode_image

    from edge.errors import SmartbinError

    photo, photo_name = load_photo(args.photo)
    rgb = decode_image(photo)
    try:
        # The server's one-line config leaves model.views at its default: the raw side shows the same views.
        raw = Classifier.from_path(args.model, threads=args.threads, views=Config().model.views)
    except SmartbinError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    server, url = start_server(args.model, args.threads)
    try:
        for _ in range(5):  # warm-up: interpreter caches, first decode, TCP stack
            post(url, photo)
            raw.classify(rgb)
        request_ms, raw_ms, labels = [], [], set()
        for _ in range(max(args.requests, 30)):
            started = time.perf_counter()
            labels.add(post(url, photo)["label"])
            request_ms.append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            raw.classify(rgb)
            raw_ms.append((time.perf_counter() - started) * 1000)
        rss_mb, peak_mb = memory_mb(server.pid)
        # A phone photo: memory while decoding 12 MP matters more on a Pi than the steady state.
        big = phone_photo()
        post(url, big)
        _, peak_12mp_mb = memory_mb(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=10)

    figures = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": platform.machine(), "cpu": cpu_model(), "cores": os.cpu_count(),
        "model": args.model.name, "photo": photo_name, "image_shape": list(rgb.shape), "threads": args.threads,
        "views": list(raw.views),
        "requests": len(request_ms), "labels": sorted(labels),
        "request_ms_median": round(statistics.median(request_ms), 2),
        "request_ms_p90": round(percentile(request_ms, 90), 2),
        "raw_classify_ms_median": round(statistics.median(raw_ms), 2),
        "server_rss_mb": round(rss_mb, 1), "server_peak_rss_mb": round(peak_mb, 1),
        "phone_photo_mb": round(len(big) / 2**20, 2), "server_peak_rss_after_12mp_mb": round(peak_12mp_mb, 1),
    }
    budget = 1.5 * figures["raw_classify_ms_median"] + 20
    figures["latency_budget_ms"] = round(budget, 2)
    figures["latency_ok"] = figures["request_ms_median"] <= budget
    figures["rss_ok"] = figures["server_peak_rss_mb"] <= RSS_LIMIT_MB
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        report(figures)
    return 0 if figures["latency_ok"] and figures["rss_ok"] else 1


def load_photo(path: Path) -> tuple[bytes, str]:
    if path.is_file():
        return path.read_bytes(), str(path.relative_to(REPO_ROOT.parent) if path.is_relative_to(REPO_ROOT.parent)
                                      else path)
    import numpy as np

    from edge.imaging import encode_jpeg

    # A photo-like stand-in: smooth shapes plus sensor noise, JPEG quality like a phone's.
    rng = np.random.default_rng(0)
    ys, xs = np.mgrid[0:512, 0:384].astype(np.float32)
    base = np.stack([120 + 60 * np.sin(xs / 40), 110 + 50 * np.cos(ys / 55), 100 + 40 * np.sin((xs + ys) / 70)], -1)
    rgb = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
    return encode_jpeg(rgb, quality=90), "generated 384x512"


def phone_photo() -> bytes:
    """A 4000x3000 JPEG of smooth shapes with a little noise, a few MB like a phone's."""
    import numpy as np

    from edge.imaging import encode_jpeg

    ys, xs = np.mgrid[0:3000, 0:4000].astype(np.float32)
    base = np.stack([120 + 60 * np.sin(xs / 300), 110 + 50 * np.cos(ys / 400), 100 + 40 * np.sin((xs + ys) / 500)], -1)
    noise = np.random.default_rng(1).normal(0, 4, base.shape)
    return encode_jpeg(np.clip(base + noise, 0, 255).astype(np.uint8), quality=85)


def start_server(model: Path, threads: int) -> tuple[subprocess.Popen, str]:
    # The server reads its interpreter threads from the config: a one-line config gives it the
    # same count as the in-process classifier it is compared with.
    config = Path(tempfile.mkdtemp(prefix="smartbin-web-bench-")) / "smartbin.yaml"
    config.write_text(f"model:\n  threads: {int(threads)}\n")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    server = subprocess.Popen([sys.executable, "-m", "edge.web", "--config", str(config), "--model", str(model),
                               "--port", "0"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env, cwd=REPO_ROOT)
    line = server.stdout.readline()  # "smartbin web page at http://127.0.0.1:PORT/ (Ctrl+C to stop)"
    if "http://" not in line:
        server.kill()
        fail(f"the web server did not start: {line.strip() or 'no output'}")
    return server, line.split("at ", 1)[1].split()[0]


def fail(message: str) -> None:
    """Set-up failures exit 2, so that exit 1 always means a missed target."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def post(url: str, photo: bytes) -> dict:
    host_port = url.split("//", 1)[1].rstrip("/")
    host, port = host_port.rsplit(":", 1)
    boundary = uuid.uuid4().hex
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="photo.jpg"\r\n'
            f"Content-Type: image/jpeg\r\n\r\n").encode() + photo + f"\r\n--{boundary}--\r\n".encode()
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        connection.request("POST", "/api/classify", body, {"Content-Type": f"multipart/form-data; boundary={boundary}"})
        response = connection.getresponse()
        data = json.loads(response.read())
    finally:
        connection.close()
    if response.status != 200:
        fail(f"the server answered {response.status}: {data}")
    return data


def memory_mb(pid: int) -> tuple[float, float]:
    """Current and peak (VmHWM) resident memory of a process, in MB."""
    import psutil

    rss = psutil.Process(pid).memory_info().rss / 2**20
    peak = rss
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                peak = int(line.split()[1]) / 1024
    except OSError:
        pass
    return rss, peak




def report(figures: dict) -> None:
    verdict = lambda ok: "OK" if ok else "MISSED"  # noqa: E731
    print(f"{figures['date']}  {figures['machine']}  {figures['cpu']} ({figures['cores']} cores)")
    print(f"model {figures['model']}, photo {figures['photo']} {figures['image_shape']}, "
          f"{figures['threads']} threads, {figures['requests']} requests, labels {figures['labels']}")
    print(f"request median {figures['request_ms_median']} ms (p90 {figures['request_ms_p90']} ms); "
          f"raw classify median {figures['raw_classify_ms_median']} ms; "
          f"budget 1.5 x raw + 20 = {figures['latency_budget_ms']} ms -> {verdict(figures['latency_ok'])}")
    print(f"server RSS {figures['server_rss_mb']} MB, peak {figures['server_peak_rss_mb']} MB "
          f"(limit {RSS_LIMIT_MB:g}) -> {verdict(figures['rss_ok'])}")
    print(f"after one 4000x3000 phone photo ({figures['phone_photo_mb']} MB): "
          f"peak RSS {figures['server_peak_rss_after_12mp_mb']} MB")


if __name__ == "__main__":
    sys.exit(main())
