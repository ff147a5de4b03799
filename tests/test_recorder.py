"""The recorder: items are committed on the sorting thread, fsynced beside it, and errors are not lost."""

from __future__ import annotations

import threading

import pytest

from edge.errors import StoreError
from edge.recorder import Recorder
from edge.store import Store, read_counts


def event(item_id: str, label="glass") -> dict:
    return {"id": item_id, "ts": 1.0, "label": label, "bin": label, "confidence": 0.9, "rejected": False}


@pytest.fixture
def store(tmp_path):
    store = Store(tmp_path / "smartbin.db")
    yield store
    store.close()


def test_items_are_committed_in_order_and_reported_with_their_counts_once_synced(store):
    seen = []
    recorder = Recorder(store, on_recorded=lambda counts: seen.append(counts["total"]))
    for number in range(5):
        assert recorder.record(event(f"item-{number}"), topic="item")["total"] == number + 1
    recorder.close()
    assert seen == [1, 2, 3, 4, 5]
    assert [message.payload.count("item-") for message in store.pending()] == [1] * 5
    assert [message.seq for message in store.pending()] == sorted(message.seq for message in store.pending())


def test_the_item_is_committed_when_record_returns_and_the_fsync_runs_beside_the_loop(store, tmp_path):
    gate = threading.Event()
    synced = threading.Event()

    class SlowDisk:
        def record_item(self, item, topic, durable):
            assert durable is False  # no fsync on the sorting thread
            return store.record_item(item, topic=topic, durable=durable)

        def sync(self):
            gate.wait(5)
            store.sync()
            synced.set()

    recorder = Recorder(SlowDisk())
    recorder.record(event("a"), topic=None)
    # What a restarted process would read after a kill -9:
    assert read_counts(tmp_path / "smartbin.db")["total"] == 1 and not synced.is_set()
    gate.set()
    recorder.wait()
    assert synced.is_set()
    recorder.close()


def test_the_next_item_waits_for_the_previous_fsync(store):
    order = []

    class OrderedStore:
        def record_item(self, item, topic, durable):
            order.append(("commit", item["id"]))
            return store.record_item(item, topic=topic, durable=durable)

        def sync(self):
            order.append(("fsync start", None))
            store.sync()
            order.append(("fsync done", None))

    recorder = Recorder(OrderedStore())
    recorder.record(event("a"), topic=None)
    recorder.record(event("b"), topic=None)
    recorder.close()
    assert order == [("commit", "a"), ("fsync start", None), ("fsync done", None),
                     ("commit", "b"), ("fsync start", None), ("fsync done", None)]


def test_a_failed_commit_is_raised_by_record_itself(store):
    class FullDisk:
        def record_item(self, item, topic, durable):
            raise StoreError("disk full")

    recorder = Recorder(FullDisk())
    with pytest.raises(StoreError, match="disk full"):
        recorder.record(event("a"), topic=None)
    recorder.close()


def test_a_failed_fsync_is_raised_on_the_sorting_thread_once(store):
    class BrokenSync:
        def record_item(self, item, topic, durable):
            return store.record_item(item, topic=topic, durable=durable)

        def sync(self):
            raise StoreError("I/O error")

    recorder = Recorder(BrokenSync())
    recorder.record(event("a"), topic=None)
    with pytest.raises(StoreError, match="I/O error"):
        recorder.wait()
    recorder.wait()  # reported once, not again
    recorder.close()
    recorder.close()
