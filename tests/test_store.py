"""The SQLite store: one transaction per item, idempotent ids, outbox, reset, durability across kill -9."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap

import pytest

from edge.errors import StoreError
from edge.store import Store


def event(item_id: str, label="glass", bin_name="glass") -> dict:
    return {"id": item_id, "ts": 1.0, "label": label, "bin": bin_name, "confidence": 0.9, "rejected": False}


@pytest.fixture
def store(tmp_path):
    store = Store(tmp_path / "state" / "smartbin.db")
    yield store
    store.close()


def test_an_item_bumps_label_bin_and_total_since_install_and_since_reset(store):
    store.record_item(event("a"))
    counts = store.record_item(event("b", "cardboard", "paper"))
    assert counts["labels"] == {"cardboard": 1, "glass": 1}
    assert counts["bins"] == {"glass": 1, "paper": 1}
    assert counts["total"] == 2
    assert counts["since_reset"]["total"] == 2


def test_the_same_id_is_counted_and_queued_once(store):
    store.record_item(event("a"))
    counts = store.record_item(event("a"))
    assert counts["total"] == 1
    assert [m.topic for m in store.pending()] == ["item"]


def test_reset_zeroes_only_the_since_reset_block(store):
    store.record_item(event("a"))
    counts = store.reset_counts()
    assert counts["total"] == 1
    assert counts["since_reset"]["total"] == 0 and counts["since_reset"]["bins"] == {}
    assert store.record_item(event("b"))["since_reset"]["total"] == 1


def test_outbox_keeps_order_until_delivered(store):
    for name in "abc":
        store.record_item(event(name))
    pending = store.pending()
    assert [m.seq for m in pending] == sorted(m.seq for m in pending)
    store.mark_delivered([pending[0].seq])
    assert [m.seq for m in store.pending()] == [m.seq for m in pending[1:]]
    assert store.outbox_size() == 2


def test_without_mqtt_nothing_is_queued(store):
    assert store.record_item(event("a"), topic=None)["total"] == 1
    assert store.outbox_size() == 0


def test_the_database_is_in_wal_mode_and_survives_reopening(tmp_path):
    path = tmp_path / "smartbin.db"
    Store(path).record_item(event("a"))
    reopened = Store(path)
    assert reopened.counts()["total"] == 1
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_full_outbox_drops_the_oldest_and_counts_the_drop(tmp_path):
    store = Store(tmp_path / "db", max_outbox=2)
    for name in "abcd":
        store.record_item(event(name))
    assert store.outbox_size() == 2
    assert [json.loads(message.payload)["id"] for message in store.pending()] == ["c", "d"]
    assert store.counts()["total"] == 4
    assert store.meta("outbox_dropped") == "2" and store.outbox_dropped == 2
    store.close()
    assert Store(tmp_path / "db").outbox_dropped == 2  # survives a restart


def test_the_outbox_size_follows_every_insert_delivery_and_drop_without_a_query(tmp_path):
    store = Store(tmp_path / "db", max_outbox=3)
    for name in "abcde":
        store.record_item(event(name))
    store.record_item(event("f"), topic=None)  # MQTT off: nothing queued
    store.mark_delivered([store.pending()[0].seq, 10_000])  # an unknown seq deletes nothing
    real = sqlite3.connect(tmp_path / "db").execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
    assert store.outbox_size() == real == 2
    store.close()
    assert Store(tmp_path / "db").outbox_size() == 2


def test_a_full_disk_is_a_store_error_with_the_real_cause_and_keeps_nothing_of_the_item(store):
    big = {**event("first"), "top3": "x" * 3000}
    store.record_item(big)
    pages = store._db.execute("PRAGMA page_count").fetchone()[0]
    store._db.execute(f"PRAGMA max_page_count={pages}")  # as if the SD card were full
    with pytest.raises(StoreError, match=r"smartbin\.db: cannot record an item: database or disk is full"):
        for number in range(50):
            store.record_item({**big, "id": f"more-{number}"})
    counts, queued = store.counts()["total"], store.outbox_size()
    store._db.execute("PRAGMA max_page_count=1073741823")
    store.record_item(event("after"))  # the store works again once there is room
    assert store.counts()["total"] == counts + 1 and store.outbox_size() == queued + 1
    assert not store.has_item("more-49")


def test_a_commit_without_fsync_is_made_durable_by_sync(tmp_path):
    store = Store(tmp_path / "db")
    store.record_item(event("a"), durable=False)
    store.sync()
    assert store.meta("synced_at") is not None and store.counts()["total"] == 1
    store.close()


def test_an_amended_item_carries_the_new_field_in_its_log_and_its_undelivered_message(store):
    store.record_item(event("a"))
    store.amend_item("a", flap_error="GPIO busy")
    assert store.recent(1)[0]["flap_error"] == "GPIO busy"
    assert json.loads(store.pending()[0].payload)["flap_error"] == "GPIO busy"
    store.amend_item("never-recorded", flap_error="x")  # nothing to amend: no error


@pytest.mark.timeout(60)
@pytest.mark.parametrize("durable", [True, False], ids=["fsynced", "committed-without-fsync"])
def test_kill_9_in_a_write_loop_never_loses_or_double_counts(tmp_path, durable):
    path = tmp_path / "smartbin.db"
    script = textwrap.dedent(f"""
        import sys
        from edge.store import Store
        store = Store({str(path)!r})
        i = 0
        while True:
            store.record_item({{"id": f"x{{i}}", "ts": i, "label": "glass", "bin": "glass", "confidence": 1.0}},
                              durable={durable})
            print(i, flush=True)
            i += 1
    """)
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    acknowledged = -1
    for line in child.stdout:
        acknowledged = int(line)
        if acknowledged >= 30:
            break
    os.kill(child.pid, signal.SIGKILL)
    child.wait(10)
    store = Store(path)
    counts = store.counts()
    items = sqlite3.connect(path).execute("SELECT COUNT(*), COUNT(DISTINCT id) FROM items").fetchone()
    outbox = store.outbox_size()
    # Every item the child reported as recorded is counted; the counts, items and outbox agree exactly.
    assert counts["total"] >= acknowledged + 1
    assert counts["total"] == items[0] == items[1] == outbox


def test_the_item_log_keeps_the_newest_items_while_counts_keep_every_one(tmp_path):
    store = Store(tmp_path / "smartbin.db", max_items=3)
    for i in range(5):
        counts = store.record_item({**event(f"id-{i}"), "ts": float(i)})
    assert counts["total"] == 5 and store.outbox_size() == 5
    assert [e["id"] for e in store.recent(10)] == ["id-4", "id-3", "id-2"]
    assert store.has_item("id-4") and not store.has_item("id-0")
    store.close()


def test_a_state_folder_that_cannot_be_made_is_a_store_error_naming_the_database(tmp_path):
    from edge.errors import StoreError

    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(StoreError, match="smartbin.db: cannot open the state database"):
        Store(tmp_path / "file" / "state" / "smartbin.db")


def test_an_item_committed_without_fsync_reaches_mqtt_only_once_it_survives_a_power_cut(store):
    store.record_item(event("a"), durable=False)
    assert store.pending() == [] and store.outbox_size() == 1
    store.sync()
    assert [json.loads(message.payload)["id"] for message in store.pending()] == ["a"]


def test_the_published_counts_leave_out_an_item_until_it_survives_a_power_cut(store):
    store.record_item(event("a"))
    store.record_item(event("b"), durable=False)
    assert store.counts()["total"] == 2  # what the bin has sorted
    assert store.durable_counts()["total"] == 1  # what MQTT may publish: a power cut cannot take it back
    store.sync()
    assert store.durable_counts()["total"] == 2


def test_a_reset_is_published_at_once_with_every_item_before_it(store):
    store.record_item(event("a"), durable=False)
    store.reset_counts()
    counts = store.durable_counts()
    assert (counts["total"], counts["since_reset"]["total"]) == (1, 0)
    assert [json.loads(message.payload)["id"] for message in store.pending()] == ["a"]


def test_reopening_flushes_what_a_killed_process_committed_without_fsync_before_mqtt_sees_it(tmp_path, monkeypatch):
    path = tmp_path / "smartbin.db"
    script = textwrap.dedent(f"""
        import os
        from edge.store import Store
        store = Store({str(path)!r})
        store.record_item({{"id": "a", "ts": 1, "label": "glass", "bin": "glass", "confidence": 1.0}}, durable=False)
        os._exit(0)  # killed: no sync, no close
    """)
    subprocess.run([sys.executable, "-c", script], check=True, timeout=30)
    flushed = []
    real_fsync = os.fsync

    def spy(descriptor):
        flushed.append(os.path.basename(os.readlink(f"/proc/self/fd/{descriptor}")))
        real_fsync(descriptor)

    monkeypatch.setattr("edge.store.os.fsync", spy)
    store = Store(path)
    assert {"smartbin.db", "smartbin.db-wal"} <= set(flushed)
    assert [json.loads(message.payload)["id"] for message in store.pending()] == ["a"]
    assert store.durable_counts()["total"] == 1
    store.close()


@pytest.mark.timeout(60)
def test_an_outside_reader_such_as_a_live_backup_leaves_the_log_in_place_so_kill_9_loses_nothing(tmp_path):
    path = tmp_path / "smartbin.db"
    script = textwrap.dedent(f"""
        import sys
        from edge.store import Store
        store = Store({str(path)!r})
        for batch in range(2):
            for i in range(10):
                store.record_item({{"id": f"{{batch}}-{{i}}", "ts": i, "label": "glass", "bin": "glass",
                                   "confidence": 1.0}})
            print("recorded", flush=True)
            sys.stdin.readline()
    """)
    child = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline() == "recorded\n"
        # What docs/reliability.md suggests for a backup of a running bin, then a look with sqlite3.
        with contextlib.closing(sqlite3.connect(path)) as outside, \
                contextlib.closing(sqlite3.connect(tmp_path / "backup.db")) as backup:
            outside.backup(backup)
            assert outside.execute("SELECT COUNT(*) FROM items").fetchone()[0] == 10
        assert (tmp_path / "smartbin.db-wal").exists()  # the bin still writes to a log that exists
        child.stdin.write("\n")
        child.stdin.flush()
        assert child.stdout.readline() == "recorded\n"
    finally:
        child.kill()
        child.wait(10)
    store = Store(path)
    assert store.counts()["total"] == 20 and store.outbox_size() == 20
    store.close()


def test_the_outbox_drops_only_when_it_holds_max_outbox_messages_even_with_delivered_gaps(tmp_path):
    store = Store(tmp_path / "db", max_outbox=4)
    for name in "abcd":
        store.record_item(event(name))
    b, c = store.pending()[1:3]
    store.mark_delivered([b.seq, c.seq])
    store.record_item(event("e"))  # 3 queued: nothing to drop
    assert store.outbox_dropped == 0 and [json.loads(m.payload)["id"] for m in store.pending()] == ["a", "d", "e"]
    store.record_item(event("f"))
    store.record_item(event("g"))  # 5 would be queued: the oldest goes
    assert store.outbox_dropped == 1 and [json.loads(m.payload)["id"] for m in store.pending()] == ["d", "e", "f", "g"]
    store.close()


def test_checkpoints_run_in_sync_never_inside_an_items_commit(store, monkeypatch):
    import edge.store

    monkeypatch.setattr(edge.store, "CHECKPOINT_EVERY_WRITES", 3)
    assert store._db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
    statements = []
    store._db.set_trace_callback(statements.append)
    for number in range(5):
        store.record_item(event(f"item-{number}"), durable=False)
    assert not any("checkpoint" in statement for statement in statements)
    store.sync()
    assert any("wal_checkpoint(PASSIVE)" in statement for statement in statements)


def test_a_corrupt_database_is_an_error_that_says_what_to_do_and_is_not_retried(tmp_path):
    from edge.errors import StoreUnusableError

    path = tmp_path / "smartbin.db"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreUnusableError, match="smartbin.db: the state database is damaged .* move it aside"):
        Store(path)


def test_another_programs_database_is_refused_before_the_first_query_and_is_not_retried(tmp_path):
    import sqlite3

    from edge.errors import StoreUnusableError

    path = tmp_path / "smartbin.db"
    with contextlib.closing(sqlite3.connect(path)) as other:  # a table of our name, other columns
        other.execute("CREATE TABLE items (id TEXT PRIMARY KEY, title TEXT)")
        other.commit()
    with pytest.raises(StoreUnusableError, match="not a smartbin state database \\(its table 'items' has no "
                                                 "column bin, confidence, event"):
        Store(path)


def test_a_second_store_on_the_same_folder_is_refused_naming_the_first(tmp_path):
    from edge.errors import StoreUnusableError

    first = Store(tmp_path / "smartbin.db")
    with pytest.raises(StoreUnusableError, match=f"another smartbin \\(pid {os.getpid()}\\) is using this state"):
        Store(tmp_path / "smartbin.db")
    first.close()
    Store(tmp_path / "smartbin.db").close()  # free again once the first one closed


def test_read_counts_sees_what_a_restarted_process_would_while_the_store_is_open(tmp_path):
    from edge.store import read_counts

    store = Store(tmp_path / "smartbin.db")
    store.record_item({"id": "a", "ts": 1.0, "label": "glass", "bin": "glass", "confidence": 0.9}, topic=None)
    assert read_counts(tmp_path / "smartbin.db") == store.counts()
    store.close()


def test_the_newest_item_comes_by_insertion_and_only_once_the_outbox_is_empty(tmp_path):
    store = Store(tmp_path / "smartbin.db")
    store.record_item({"id": "before-reboot", "ts": 2000.0, "label": "glass", "bin": "glass", "confidence": 0.9})
    store.record_item({"id": "after-reboot", "ts": 1000.0, "label": "paper", "bin": "paper", "confidence": 0.8})
    assert store.newest_item_if_delivered() is None  # still queued for the broker
    store.mark_delivered([message.seq for message in store.pending()])
    assert store.newest_item_if_delivered()["id"] == "after-reboot"  # the clock stepped back, the order did not
    store.close()


def refuse_writing_the_lock_file(monkeypatch) -> None:
    """smartbin.lock can be opened for reading only, as for a user that did not create it."""
    import builtins

    real_open = builtins.open

    def as_the_service_user(path, mode="r", *args, **kwargs):
        if str(path).endswith("smartbin.lock") and mode != "r":
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, mode, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", as_the_service_user)


def test_a_lock_file_left_by_root_does_not_stop_the_service_user(tmp_path, monkeypatch):
    from edge.errors import StoreUnusableError

    (tmp_path / "smartbin.lock").write_text("1")  # what `sudo smartbin run` leaves behind
    refuse_writing_the_lock_file(monkeypatch)
    first = Store(tmp_path / "smartbin.db")  # locked through a read-only handle
    with pytest.raises(StoreUnusableError, match="another smartbin"):
        Store(tmp_path / "smartbin.db")
    first.close()


def test_a_read_only_state_folder_is_named_as_such(tmp_path, monkeypatch):
    refuse_writing_the_lock_file(monkeypatch)  # no smartbin.lock yet, and none can be made
    with pytest.raises(StoreError, match="cannot open the state database: Permission denied"):
        Store(tmp_path / "smartbin.db")


def test_a_file_where_the_state_folder_should_be_is_for_a_person_to_fix_not_a_restart(tmp_path):
    from edge.errors import StoreUnusableError

    (tmp_path / "state").write_text("not a folder")
    with pytest.raises(StoreUnusableError, match="is not a folder"):
        Store(tmp_path / "state" / "smartbin.db")
