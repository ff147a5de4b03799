"""The recorder: items are committed off the sorting thread, in order, and errors are not lost."""

from __future__ import annotations

import threading

import pytest

from edge.errors import StoreError
from edge.recorder import Recorder
from edge.store import Store


def event(item_id: str, label="glass") -> dict:
    return {"id": item_id, "ts": 1.0, "label": label, "bin": label, "confidence": 0.9, "rejected": False}


@pytest.fixture
def store(tmp_path):
    store = Store(tmp_path / "smartbin.db")
    yield store
    store.close()


def test_items_are_committed_in_order_and_reported_with_their_counts(store):
    seen = []
    recorder = Recorder(store, on_recorded=lambda counts: seen.append(counts["total"]))
    for number in range(5):
        recorder.submit(event(f"item-{number}"), topic="item")
    recorder.close()
    assert seen == [1, 2, 3, 4, 5]
    assert [message.payload.count("item-") for message in store.pending()] == [1] * 5
    assert [message.seq for message in store.pending()] == sorted(message.seq for message in store.pending())


def test_submit_returns_before_the_commit_and_wait_returns_after_it(store):
    gate = threading.Event()
    committed = threading.Event()

    class SlowStore:
        def record_item(self, item, topic):
            gate.wait(5)
            counts = store.record_item(item, topic=topic)
            committed.set()
            return counts

    recorder = Recorder(SlowStore())
    recorder.submit(event("a"), topic=None)
    assert not committed.is_set()  # the loop is free while the commit waits for the disk
    gate.set()
    recorder.wait()
    assert committed.is_set() and store.counts()["total"] == 1
    recorder.close()


def test_at_most_one_item_is_uncommitted_when_the_next_is_submitted(store):
    order = []

    class OrderedStore:
        def record_item(self, item, topic):
            order.append(("start", item["id"]))
            counts = store.record_item(item, topic=topic)
            order.append(("done", item["id"]))
            return counts

    recorder = Recorder(OrderedStore())
    recorder.submit(event("a"), topic=None)
    recorder.submit(event("b"), topic=None)
    recorder.close()
    assert order == [("start", "a"), ("done", "a"), ("start", "b"), ("done", "b")]


def test_a_failed_commit_is_raised_on_the_sorting_thread_once(store):
    class BrokenStore:
        def record_item(self, item, topic):
            raise StoreError("disk full")

    recorder = Recorder(BrokenStore())
    recorder.submit(event("a"), topic=None)
    with pytest.raises(StoreError, match="disk full"):
        recorder.wait()
    recorder.wait()  # reported once, not again
    recorder.close()
    recorder.close()
