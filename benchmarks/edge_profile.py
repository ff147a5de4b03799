"""Where the daemon's per-item time goes: the replay of ``edge_replay.py`` run in-process, parts timed.

``edge_replay.py`` measures the daemon from outside; this runs the same ``Daemon`` (shipped config,
``flap.settle_s: 0``, a real mosquitto unless ``--no-mqtt``) in this process and wraps its parts
with timers, so the per-item wall time splits into inference, item detector, flap and the waits on
the loop's thread; work on other threads (photo decoding on the replay's decoder, the SQLite fsync
on the recorder, the outbox on MQTT's) is listed with its thread's name and overlaps
the loop. Timers add a few microseconds per call; the figures are for finding the big parts, not
for the targets.

Usage:
    python benchmarks/edge_profile.py --model models/trashnet-efficientnet-lite0-int8 --limit 60
"""

from __future__ import annotations

import argparse
import collections
import functools
import json
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

from edge_replay import (DEFAULT_MODEL, SHIPPED_CONFIG, add_data_arguments, link_replay_folder, start_broker,
                         trashnet_paths)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="bundle folder (default: the shipped one)")
    add_data_arguments(parser)
    parser.add_argument("--limit", type=int, default=60, help="test photos, spread over the list (default 60)")
    parser.add_argument("--no-mqtt", action="store_true", help="run without a broker (MQTT off)")
    args = parser.parse_args(argv)
    found = trashnet_paths(args.data, args.split_file)
    if found is None:
        print(f"skipped: TrashNet not found at {args.data} (set SMARTBIN_DATA or --data and --split-file)",
              file=sys.stderr)
        return 0
    photo_root, split_file = found
    test = json.loads(split_file.read_text())["splits"]["test"]
    limit = min(args.limit, len(test))  # beyond the split, indices would repeat photos
    test = [test[i * len(test) // limit] for i in range(limit)]
    with tempfile.TemporaryDirectory(prefix="smartbin-profile-") as scratch:
        work = Path(scratch)
        replay = link_replay_folder(photo_root, test, work / "replay")
        broker = None if args.no_mqtt else start_broker(shutil.which("mosquitto") or "/usr/sbin/mosquitto", work)
        try:
            spent, calls, items, total, cpu = profile(args.model, replay, work / "state",
                                                      broker.port if broker else None)
        finally:
            if broker:
                broker.process.terminate()
                broker.process.wait(timeout=10)
    print(f"{items} items, {total * 1000 / items:.2f} ms per item of loop wall time "
          f"({'without' if args.no_mqtt else 'with'} MQTT)")
    for name, seconds in sorted(spent.items(), key=lambda pair: -pair[1]):
        print(f"  {name:52s} {seconds * 1000 / items:7.2f} ms/item  ({calls[name] / items:.1f} calls/item)")
    if cpu:
        print("CPU time per item, by thread (all of this process's threads share the machine's cores):")
        for name, seconds in sorted(cpu.items(), key=lambda pair: -pair[1]):
            if seconds * 1000 / items >= 0.01:
                print(f"  {name:52s} {seconds * 1000 / items:7.2f} ms/item")
    return 0


def _thread_cpu_s() -> dict[int, float]:
    """Each live thread's CPU time in seconds, by native thread id (empty where /proc is not Linux's)."""
    found = {}
    for task in Path("/proc/self/task").glob("*") if Path("/proc/self/task").is_dir() else ():
        try:
            found[int(task.name)] = int((task / "schedstat").read_text().split()[0]) / 1e9
        except (OSError, ValueError, IndexError):
            continue  # the thread ended while we looked
    return found


class ThreadCPU:
    """Samples every thread's CPU time while the daemon runs (threads that end keep their last sample)."""

    def __init__(self, interval_s: float = 0.1):
        self.start, self.last, self.names = _thread_cpu_s(), {}, {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, args=(interval_s,), name="profile-sampler", daemon=True)
        self._thread.start()

    def _sample(self, interval_s: float) -> None:
        while True:
            self.names.update({thread.native_id: thread.name for thread in threading.enumerate()})
            self.last.update(_thread_cpu_s())
            if self._stop.wait(interval_s):
                break

    def stop(self) -> dict[str, float]:
        """Stops sampling; CPU seconds since the start by thread name (same-named threads summed)."""
        self._stop.set()
        self._thread.join()
        self.last.update(_thread_cpu_s())
        spent: dict[str, float] = collections.defaultdict(float)
        for native_id, seconds in self.last.items():
            name = self.names.get(native_id, "(not a Python thread: LiteRT's, ...)")
            spent[name] += seconds - self.start.get(native_id, 0.0)
        return spent


def profile(model: Path, replay: Path, state: Path, port: int | None):
    from edge.config import load_config
    from edge.daemon import Daemon

    overrides = {"camera.type": "replay", "camera.replay.path": str(replay), "camera.replay.fps": 0,
                 "flap.pin_factory": "mock", "flap.settle_s": 0, "device.id": "profile",
                 "device.state_dir": str(state), "model.path": str(model.resolve()), "mqtt.enabled": port is not None}
    if port is not None:
        overrides["mqtt.port"] = port
    daemon = Daemon(load_config(SHIPPED_CONFIG, overrides))
    daemon.start()
    spent: dict[str, float] = collections.defaultdict(float)
    calls: collections.Counter = collections.Counter()
    loop_thread = threading.current_thread()

    def wrap(owner, attribute: str, name: str) -> None:
        original = getattr(owner, attribute)

        @functools.wraps(original)
        def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                thread = threading.current_thread()
                key = name if thread is loop_thread else f"{name.strip()} [{thread.name} thread]"
                spent[key] += time.perf_counter() - started
                calls[key] += 1

        setattr(owner, attribute, timed)

    wrap(daemon.source, "read", "camera read")
    wrap(daemon.source, "_decode", "photo decode (full size)")
    wrap(daemon.trigger, "update", "item detector (every frame)")
    wrap(daemon.classifier, "classify_frames", "classify K frames")
    wrap(daemon.classifier._interpreter, "invoke", "  of which interpreter invoke")
    wrap(daemon.store, "record_item", "SQLite record_item (commit, no fsync)")
    wrap(daemon.store, "sync", "SQLite sync (fsync of the log)")
    wrap(daemon.recorder, "wait", "waiting for the previous item's fsync")
    wrap(daemon.store, "mark_delivered", "SQLite mark_delivered (commit, no fsync)")
    wrap(daemon.flap, "move_to", "flap move")
    wrap(daemon.flap, "neutral", "flap neutral")
    if daemon.review is not None:
        wrap(daemon.review, "save", "review photo (rejected items)")
    started = time.perf_counter()
    threads = ThreadCPU()
    daemon.run()
    total = time.perf_counter() - started
    return spent, calls, daemon.items, total, threads.stop()


if __name__ == "__main__":
    sys.exit(main())
