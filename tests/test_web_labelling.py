"""Labelling the bin's review photos on the web page: listed with the model's guess, moved into
class folders training can use, or discarded; nothing outside the review folder is reachable."""

from __future__ import annotations

import json
import socket

import numpy as np
import pytest

from edge.review import ReviewFolder, read_name
from edge.web import labelling
from edge.web.labelling import LabelDesk, LabelError
from tests.conftest import TINY_LABELS
from tests.web_support import request, serving

pytestmark = pytest.mark.timeout(60)


def saved(state_dir, item_id, label, confidence):
    frame = np.full((48, 64, 3), 120, np.uint8)
    return ReviewFolder(state_dir / "review").save(frame, item_id, label, confidence).name


# ---- the review folder's names ------------------------------------------------------------------

def test_a_review_name_gives_back_the_guess_even_when_ids_and_labels_hold_underscores(tmp_path):
    name = saved(tmp_path, "item_7f3a", "tetra_pak", 0.41)
    info = read_name(name, ["tetra", "tetra_pak", "glass"])
    assert info["guess"] == "tetra_pak" and info["confidence"] == 0.41
    assert info["taken"].endswith("+00:00") and info["name"] == name


def test_the_guess_is_the_longest_label_that_ends_the_name(tmp_path):
    name = saved(tmp_path, "item-3", "brown_glass", 0.2)
    assert read_name(name, ["glass", "brown_glass"])["guess"] == "brown_glass"


def test_labels_whose_file_name_forms_coincide_give_no_guess_rather_than_a_wrong_one(tmp_path):
    name = saved(tmp_path, "item-1", "бумага", 0.3)  # non-Latin labels all become "-" in the name
    assert read_name(name, ["стекло", "металл", "бумага"])["guess"] is None


def test_a_guess_the_current_model_does_not_have_is_none_and_strange_names_are_no_review_photos(tmp_path):
    assert read_name(saved(tmp_path, "a", "battery", 0.3), ["glass"])["guess"] is None
    for name in ["notes.txt", "../x_glass_0.41.jpg", "20261399T101530123456_a_glass_0.41.jpg", ".x.jpg.part",
                 "20261128T101530123456_a_glass_0.41.jpg\n", "20261128T101530123456_a_glass_\u0661.\u0662\u0660.jpg"]:
        assert read_name(name, ["glass"]) is None


# ---- the desk: plain folders ------------------------------------------------------------------

def test_the_listing_is_newest_first_and_counts_what_waits_and_what_is_labelled(tmp_path):
    first = saved(tmp_path, "one", "glass", 0.41)
    second = saved(tmp_path, "two", "metal", 0.52)
    desk = LabelDesk(tmp_path)
    desk.label(first, "cardboard", TINY_LABELS)
    listing = desk.listing(TINY_LABELS)
    assert [photo["name"] for photo in listing["photos"]] == [second] and listing["waiting"] == 1
    assert listing["labelled"] == {"cardboard": 1} and listing["labels"] == list(TINY_LABELS)
    assert (tmp_path / "labelled" / "cardboard" / first).is_file()
    assert not (tmp_path / "review" / first).exists()


def test_a_guess_an_earlier_model_made_is_shown_as_the_class_this_models_label_map_merged_it_into(tmp_path):
    saved(tmp_path, "one", "trash", 0.3)
    listing = LabelDesk(tmp_path).listing(["glass", "rest"], {"trash": "rest", "battery": "elsewhere"})
    assert [photo["guess"] for photo in listing["photos"]] == ["rest"]


def test_only_the_models_labels_are_accepted_and_a_gone_photo_is_a_404(tmp_path):
    name = saved(tmp_path, "one", "glass", 0.41)
    desk = LabelDesk(tmp_path)
    with pytest.raises(LabelError, match="not one of the model's labels") as refused:
        desk.label(name, "battery", TINY_LABELS)
    assert refused.value.status == 400
    with pytest.raises(LabelError) as refused:
        desk.label(name, "../../etc", [*TINY_LABELS, "../../etc"])
    assert refused.value.status == 400 and (tmp_path / "review" / name).is_file()
    desk.discard(name)
    with pytest.raises(LabelError) as refused:
        desk.label(name, "glass", TINY_LABELS)
    assert refused.value.status == 404
    labelled = saved(tmp_path, "two", "glass", 0.41)
    desk.label(labelled, "glass", TINY_LABELS)
    with pytest.raises(LabelError) as refused:  # labelled by someone else meanwhile: not "discarded"
        desk.discard(labelled)
    assert refused.value.status == 404 and (tmp_path / "labelled" / "glass" / labelled).is_file()


def test_labelling_never_replaces_a_photo_already_labelled_under_the_same_name(tmp_path):
    desk = LabelDesk(tmp_path)
    name = saved(tmp_path, "one", "glass", 0.41)
    earlier = tmp_path / "labelled" / "glass" / name
    earlier.parent.mkdir(parents=True)
    earlier.write_bytes(b"labelled before")  # e.g. copied back into review/ by hand and labelled again
    (earlier.parent / name.replace(".jpg", "-2.jpg")).write_bytes(b"and again")
    assert desk.label(name, "glass", TINY_LABELS)["saved_as"] == name.replace(".jpg", "-3.jpg")
    assert earlier.read_bytes() == b"labelled before"
    moved = earlier.parent / name.replace(".jpg", "-3.jpg")
    assert moved.read_bytes()[:2] == b"\xff\xd8" and not (tmp_path / "review" / name).exists()
    # The same photo labelled into the same class again (copied back by hand): one copy, not two.
    (tmp_path / "review" / name).write_bytes(moved.read_bytes())
    assert desk.label(name, "glass", TINY_LABELS)["saved_as"] == moved.name
    assert len(list(earlier.parent.iterdir())) == 3


def test_a_full_labelled_folder_refuses_more_until_it_is_copied_off(tmp_path, monkeypatch):
    monkeypatch.setattr(labelling, "MAX_LABELLED", 1)
    desk = LabelDesk(tmp_path)
    desk.label(saved(tmp_path, "one", "glass", 0.41), "glass", TINY_LABELS)
    with pytest.raises(LabelError, match="copy them off") as refused:
        desk.label(saved(tmp_path, "two", "glass", 0.41), "glass", TINY_LABELS)
    assert refused.value.status == 507


def test_a_symlink_in_the_review_folder_is_not_served(tmp_path):
    (tmp_path / "review").mkdir()
    (tmp_path / "secret").write_text("x")
    (tmp_path / "review" / "20261128T101530123456_a_glass_0.41.jpg").symlink_to(tmp_path / "secret")
    with pytest.raises(LabelError):
        LabelDesk(tmp_path).photo("20261128T101530123456_a_glass_0.41.jpg")


# ---- over HTTP ----------------------------------------------------------------------------------

@pytest.fixture
def server(classifier, tmp_path):
    with serving(classifier, tmp_path) as web:
        yield web


def post(server, name, body, headers=None):
    return request(f"{server.url}api/review/{name}", "POST", json.dumps(body).encode(),
                   {"Content-Type": "application/json", **(headers or {})})


def test_the_page_lists_serves_labels_and_discards_review_photos(server, tmp_path):
    keep, drop = saved(tmp_path, "one", "glass", 0.41), saved(tmp_path, "two", "metal", 0.33)
    status, _, listing = request(server.url + "api/review")
    assert status == 200 and [photo["guess"] for photo in listing["photos"]] == ["metal", "glass"]
    status, headers, photo = request(f"{server.url}api/review/{keep}")
    assert status == 200 and headers["Content-Type"] == "image/jpeg" and photo[:2] == b"\xff\xd8"

    status, _, result = post(server, keep, {"label": "cardboard"})
    assert status == 200 and result["labelled"] == {"cardboard": 1}
    status, _, result = post(server, drop, {"discard": True})
    assert status == 200 and result["discarded"] is True
    assert [path.name for path in (tmp_path / "labelled" / "cardboard").iterdir()] == [keep]
    assert list((tmp_path / "review").iterdir()) == []


@pytest.mark.parametrize("body, status", [({"label": "battery"}, 400), ({"discard": False}, 400),
                                          ({"label": "glass", "discard": True}, 400), (["glass"], 400)])
def test_a_wrong_request_is_a_clear_400_and_changes_nothing(server, tmp_path, body, status):
    name = saved(tmp_path, "one", "glass", 0.41)
    answer, _, result = post(server, name, body)
    assert answer == status and "error" in result and (tmp_path / "review" / name).is_file()


def test_paths_outside_the_review_folder_and_other_pages_cannot_reach_it(server, tmp_path):
    name = saved(tmp_path, "one", "glass", 0.41)
    for path in ["..%2Fsecret", "%2E%2E", "x.jpg"]:
        assert request(f"{server.url}api/review/{path}")[0] == 404
    not_json = request(f"{server.url}api/review/{name}", "POST", b"label=glass",
                       {"Content-Type": "application/x-www-form-urlencoded"})
    assert not_json[0] == 415  # what a form on another site could send without asking
    assert post(server, name, {"label": "glass"}, {"Origin": "http://evil.example"})[0] == 403
    assert (tmp_path / "review" / name).is_file()


def test_a_deep_or_big_request_is_a_clear_refusal(server, tmp_path):
    name = saved(tmp_path, "one", "glass", 0.41)
    deep = b"[" * 2000 + b"]" * 2000  # as deep as the size limit allows
    status, _, result = request(f"{server.url}api/review/{name}", "POST", deep, {"Content-Type": "application/json"})
    assert status == 400 and "error" in result
    big = json.dumps({"label": "x" * 5000}).encode()
    status, _, result = request(f"{server.url}api/review/{name}", "POST", big, {"Content-Type": "application/json"})
    assert status == 413 and "at most 4096 bytes" in result["error"]


def test_on_a_network_bind_only_the_bins_own_names_may_touch_review_photos(classifier, tmp_path):
    name = saved(tmp_path, "one", "glass", 0.41)
    with serving(classifier, tmp_path, host="0.0.0.0") as web:
        port = web.url.rsplit(":", 1)[1].strip("/")
        rebound = {"Host": f"attacker.example:{port}", "Origin": f"http://attacker.example:{port}"}
        assert request(f"{web.url}api/review", headers=rebound)[0] == 403
        assert post(web, name, {"label": "metal"}, rebound)[0] == 403  # DNS rebinding: its own Origin matches
        assert request(f"{web.url}api/review", headers={"Host": f"127.0.0.1:{port}"})[0] == 200
        own_name = socket.gethostname().lower()  # what a phone on the LAN reaches it as: bin.local, bin
        assert post(web, name, {"label": "metal"}, {"Host": f"{own_name}:{port}"})[0] == 200
