"""priority_lock: urgent stretches keep background holders out; an urgent holder waits only for the hold under way."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from edge.classifier import Classifier
from edge.priority_lock import PriorityLock
from tests.conftest import make_photo

pytestmark = pytest.mark.timeout(30)


def in_thread(work) -> threading.Thread:
    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    return thread


def test_two_holds_never_overlap():
    lock, inside, overlaps = PriorityLock(), [], []

    def work(background):
        for _ in range(200):
            with lock.hold(background):
                inside.append(1)
                overlaps.append(len(inside) > 1)
                inside.pop()

    threads = [in_thread(lambda b=b: work(b)) for b in (False, True, True, False)]
    for thread in threads:
        thread.join(10)
    assert len(overlaps) == 800 and not any(overlaps)


def test_a_background_hold_waits_for_the_whole_urgent_stretch_even_between_its_holds():
    lock, order = PriorityLock(), []

    def background():
        with lock.hold(background=True):
            order.append("background")

    with lock.priority():
        with lock.hold():
            order.append("urgent 1")
        waiting = in_thread(background)
        time.sleep(0.1)  # the background holder is free to take the lock now, but must not
        with lock.hold():
            order.append("urgent 2")
    waiting.join(5)
    assert order == ["urgent 1", "urgent 2", "background"]


def test_an_urgent_holder_waits_only_for_the_hold_under_way():
    lock, order = PriorityLock(), []
    released = threading.Event()

    def background(name, until=None):
        with lock.hold(background=True):
            order.append(name)
            if until is not None:
                until.wait(5)

    first = in_thread(lambda: background("background under way", released))
    time.sleep(0.05)
    queued = [in_thread(lambda n=n: background(f"background queued {n}")) for n in range(3)]
    time.sleep(0.05)

    def urgent():
        with lock.priority(), lock.hold():
            order.append("urgent")

    item = in_thread(urgent)
    time.sleep(0.05)
    released.set()
    for thread in (first, item, *queued):
        thread.join(5)
    assert order[:2] == ["background under way", "urgent"]


class SlowInterpreter:
    """Wraps a real interpreter: each invoke takes 10 ms more and is logged with its thread's name."""

    def __init__(self, interpreter, log):
        self._interpreter, self._log = interpreter, log

    def invoke(self):
        time.sleep(0.01)
        self._interpreter.invoke()
        self._log.append(threading.current_thread().name)

    def __getattr__(self, name):
        return getattr(self._interpreter, name)


def test_the_sorting_loops_frames_are_classified_back_to_back_while_uploads_keep_coming(tiny_bundle):
    classifier = Classifier.from_path(tiny_bundle, threads=1)
    log: list[str] = []
    classifier._interpreter = SlowInterpreter(classifier._interpreter, log)
    stop = threading.Event()

    def uploads():
        while not stop.is_set():
            classifier.classify(make_photo(1), background=True)

    uploaders = [threading.Thread(target=uploads, name=f"upload-{n}", daemon=True) for n in range(3)]
    for thread in uploaders:
        thread.start()
    time.sleep(0.1)
    frames = [make_photo(0)] * 3
    spans = []
    for _ in range(5):
        before = len(log)
        prediction = classifier.classify_frames(frames)
        spans.append(log[before:])
        assert prediction.label == "cardboard"
        time.sleep(0.02)
    stop.set()
    for thread in uploaders:
        thread.join(5)
    main = threading.current_thread().name
    for span in spans:  # at most the one upload invoke already running when the item came, then its 3 frames
        assert span[-3:] == [main] * 3 and all(name != main for name in span[:-3]) and len(span) <= 4
    assert np.mean([len(span) for span in spans]) <= 4
