"""camera.replay: a folder of photos shown as items on a simulated tray, decoded off the loop, bad photos skipped."""

from __future__ import annotations

import threading
import time

import cv2
import numpy as np
import pytest

from edge import imaging
from edge.bundle import InputSpec
from edge.camera import FrameSource, open_source
from edge.camera.replay import empty_tray
from edge.errors import CameraError
from tests.conftest import make_photo, read_all


def test_replay_shows_each_photo_as_an_item_between_empty_trays(photo_folder):
    source = open_source("replay", path=photo_folder, empty_frames=3, present_frames=5)
    assert isinstance(source, FrameSource)
    frames = read_all(source)
    assert len(frames) == 24 * (3 + 5) + 3
    assert [frame.index for frame in frames] == list(range(len(frames)))
    first_item = frames[:8]
    assert [frame.truth for frame in first_item] == [None] * 3 + ["cardboard"] * 5
    assert first_item[3].source_id == "cardboard/cardboard_0.jpg"
    assert all(frame.truth is None for frame in frames[-3:])
    assert source.stats == {"frames": len(frames), "unreadable": 0, "retries": 0, "photos": 24}


def test_replay_present_frames_are_the_decoded_photo_exactly(photo_folder):
    source = open_source("replay", path=photo_folder, empty_frames=2, present_frames=2)
    frames = read_all(source)
    photo = imaging.read_image(photo_folder / "glass" / "glass_3.jpg")
    shown = [frame for frame in frames if frame.source_id == "glass/glass_3.jpg"]
    assert len(shown) == 2
    for frame in shown:
        assert frame.truth == "glass"
        assert frame.image.dtype == np.uint8
        np.testing.assert_array_equal(frame.image, photo)


def test_replay_frames_carry_the_detectors_thumbnail_made_off_the_loop(photo_folder):
    frames = read_all(open_source("replay", path=photo_folder, empty_frames=2, present_frames=2))
    for frame in frames[:8] + frames[-2:]:
        assert frame.thumbnail.shape == (48, 64) and frame.thumbnail.dtype == np.float32
        np.testing.assert_array_equal(frame.thumbnail, imaging.thumbnail(frame.image))
        assert not frame.thumbnail.flags.writeable  # shared by every frame of the photo


def test_replay_frames_carry_the_classifiers_input_made_off_the_loop_when_given_its_size(photo_folder):
    spec = InputSpec(height=32, width=40)
    frames = read_all(open_source("replay", path=photo_folder, empty_frames=2, present_frames=2, model_spec=spec))
    photos = [frame for frame in frames if frame.truth is not None]
    assert photos and all(frame.model_input is None for frame in frames if frame.truth is None)
    for frame in photos:
        np.testing.assert_array_equal(frame.model_input, imaging.resize_for_model(frame.image, spec))
        assert not frame.model_input.flags.writeable  # shared by every frame of the photo
    assert all(frame.model_input is None for frame in read_all(open_source("replay", path=photo_folder)))


def test_replay_empty_tray_is_the_same_every_time_at_the_photo_size(photo_folder):
    frames = read_all(open_source("replay", path=photo_folder))
    empties = [frame.image for frame in frames if frame.truth is None]
    assert all(image.shape == (48, 64, 3) for image in empties)
    assert all(np.array_equal(image, empties[0]) for image in empties)
    assert empty_tray(64, 48).std() > 20  # textured, so no photo matches it by accident


def test_replay_photos_come_sorted_by_path_and_walk_subfolders(tmp_path):
    for relative in ("b/z.png", "a/y.JPG", "a/x.jpeg", "top.bmp", "notes.txt"):
        path = tmp_path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".txt":
            path.write_text("not a photo")
        else:
            cv2.imwrite(str(path), make_photo(0))
    frames = read_all(open_source("replay", path=tmp_path, empty_frames=1, present_frames=1))
    shown = [(frame.source_id, frame.truth) for frame in frames if frame.source_id]
    assert shown == [("a/x.jpeg", "a"), ("a/y.JPG", "a"), ("b/z.png", "b"), ("top.bmp", None)]


def test_replay_follows_symlinked_class_folders_once_even_through_a_loop(tmp_path, photo_folder):
    from edge.camera.replay import find_photos

    replay = tmp_path / "replay"
    replay.mkdir()
    (replay / "glass").symlink_to(photo_folder / "glass", target_is_directory=True)
    (replay / "glass" / "again").symlink_to(photo_folder / "glass", target_is_directory=True)  # a loop
    found = [path.relative_to(replay).as_posix() for path in find_photos(replay)]
    assert found == sorted(f"glass/{path.name}" for path in (photo_folder / "glass").glob("*.jpg"))


def test_replay_shuffled_mixes_the_classes_in_the_same_order_every_run(photo_folder):
    def sources():
        frames = read_all(open_source("replay", path=photo_folder, empty_frames=1, present_frames=1, order="shuffled"))
        return [frame.source_id for frame in frames if frame.source_id]

    first = sources()
    assert first == sources()  # a repeatable experiment
    assert sorted(first) == sorted(p.relative_to(photo_folder).as_posix() for p in photo_folder.rglob("*.jpg"))
    assert len({source.split("/")[0] for source in first[:6]}) > 1  # not one class folder after the other
    with pytest.raises(CameraError, match="order must be one of shuffled, sorted"):
        open_source("replay", path=photo_folder, order="random")


def test_close_waits_for_the_decoder_so_an_exit_right_after_cannot_abort_in_opencv(photo_folder):
    # A bin refused at start-up (its web port taken) exits at once; a decoder still inside OpenCV then
    # made it abort with 134 now and then, which systemd restarts, instead of exiting 2.
    source = open_source("replay", path=photo_folder, loop=True)
    source.read()
    source.close()
    assert not [thread for thread in threading.enumerate() if thread.name == "replay-decoder" and thread.is_alive()]


def test_replay_skips_and_counts_unreadable_photos(photo_folder, caplog):
    (photo_folder / "glass" / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    source = open_source("replay", path=photo_folder, empty_frames=1, present_frames=1)
    frames = read_all(source)
    assert "glass/broken.jpg" not in {frame.source_id for frame in frames}
    assert source.stats["unreadable"] == 1 and source.stats["photos"] == 24
    assert "broken.jpg" in caplog.text


def test_replay_skips_a_photo_that_would_unpack_to_more_pixels_than_any_camera_gives(photo_folder, caplog):
    import cv2

    cv2.imwrite(str(photo_folder / "glass" / "bomb.png"), np.zeros((10000, 4100), np.uint8))  # 41 MP in ~40 KB
    source = open_source("replay", path=photo_folder, empty_frames=1, present_frames=1)
    frames = read_all(source)
    assert "glass/bomb.png" not in {frame.source_id for frame in frames}
    assert source.stats["unreadable"] == 1 and "too large" in caplog.text


def test_replay_paces_frames_at_the_requested_fps(photo_folder):
    source = open_source("replay", path=photo_folder, fps=100)
    start = time.perf_counter()
    for _ in range(11):
        source.read()
    assert time.perf_counter() - start >= 0.09


def test_replay_loops_when_asked(photo_folder):
    source = open_source("replay", path=photo_folder, empty_frames=1, present_frames=1, loop=True)
    frames = [source.read() for _ in range(24 * 2 * 2 + 2)]
    assert frames[1].source_id == frames[24 * 2 + 1].source_id == "cardboard/cardboard_0.jpg"
    source.close()
    assert source.read() is None


def test_replay_decodes_the_next_photo_while_the_current_one_is_on_the_tray(photo_folder):
    source = open_source("replay", path=photo_folder, empty_frames=1, present_frames=1)
    source.read()
    deadline = time.monotonic() + 5
    while source._decoded.empty() and time.monotonic() < deadline:  # the decoder works ahead on its own
        time.sleep(0.01)
    assert source._decoded.full()
    source.close()


def test_replay_close_from_another_thread_ends_a_waiting_read(photo_folder):
    source = open_source("replay", path=photo_folder, empty_frames=1, present_frames=1, loop=True)
    source.read()
    closer = threading.Timer(0.2, source.close)
    closer.start()
    started = time.monotonic()
    while source.read() is not None:
        assert time.monotonic() - started < 5
    closer.join()
    source._decoder.join(timeout=2)
    assert not source._decoder.is_alive()


def test_replay_of_a_missing_or_empty_folder_is_a_camera_error(tmp_path):
    with pytest.raises(CameraError, match="replay folder not found"):
        open_source("replay", path=tmp_path / "nope")
    with pytest.raises(CameraError, match="no photos"):
        open_source("replay", path=tmp_path)
    (tmp_path / "one.jpg").write_bytes(b"x")
    with pytest.raises(CameraError, match="one.jpg is a file; replay takes a folder of photos"):
        open_source("replay", path=tmp_path / "one.jpg")
    gone = tmp_path / "gone"
    gone.mkdir()
    (gone / "a.jpg").symlink_to(tmp_path / "moved-away.jpg")
    with pytest.raises(CameraError, match="its 1 photo links point to files that are gone"):
        open_source("replay", path=gone)


def test_replay_names_photos_in_formats_the_bin_does_not_read(tmp_path, photo_folder, caplog):
    (tmp_path / "phone").mkdir()
    (tmp_path / "phone" / "IMG_0001.HEIC").write_bytes(b"heic bytes")
    with pytest.raises(CameraError, match=r"no photos .* under .*phone; 1 file \(\.heic 1\) in formats the bin "
                                          r"does not read \(convert them to JPEG or PNG\)"):
        open_source("replay", path=tmp_path / "phone")
    (photo_folder / "glass" / "clip.gif").write_bytes(b"GIF89a")
    with caplog.at_level("WARNING"):
        open_source("replay", path=photo_folder).close()
    assert "replay: leaving out 1 file (.gif 1) in formats the bin does not read" in caplog.text


def test_replay_decoder_failure_reaches_the_reader_instead_of_hanging_it(photo_folder, monkeypatch):
    from edge.camera import replay

    def out_of_memory(_rgb):
        raise MemoryError("no room for the thumbnail")

    monkeypatch.setattr(replay.imaging, "thumbnail", out_of_memory)
    source = open_source("replay", path=photo_folder)
    with pytest.raises(MemoryError, match="no room"):
        read_all(source)
    source.close()


# Photos too small or too thin to draw the tray at their size: one pixel, icons, a strip, a needle.
ODD_SIZES = [(1, 1), (8, 8), (16, 12), (10000, 10), (3, 2000)]  # width, height


def odd_photo_folder(root, odd_size, position):
    """Eight 512x384 photos in class folders, and one photo of ``odd_size`` first or in the middle."""
    for index in range(8):
        folder = root / ("glass" if index < 4 else "metal")
        folder.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / f"{index}.jpg"), make_photo(index, size=(384, 512), seed=index))
    width, height = odd_size
    odd = "cardboard/odd.jpg" if position == "first" else "glass/3b-odd.jpg"  # sorted: first, or after glass/3.jpg
    (root / odd).parent.mkdir(exist_ok=True)
    cv2.imwrite(str(root / odd), make_photo(1, size=(height, width)))
    return odd


@pytest.mark.parametrize("position", ["first", "middle"])
@pytest.mark.parametrize("odd_size", ODD_SIZES, ids=[f"{w}x{h}" for w, h in ODD_SIZES])
def test_replay_of_a_tiny_or_thin_photo_gives_the_detector_one_item_per_photo(tmp_path, odd_size, position):
    from edge.detector import make_trigger

    odd = odd_photo_folder(tmp_path, odd_size, position)
    source = open_source("replay", path=tmp_path)  # the config's defaults: 4 empty frames, 6 present
    detector = make_trigger("occupancy")  # the config's defaults too
    sorted_items = [settled[-1].source_id for frame in read_all(source) if (settled := detector.update(frame))]
    # Every photo is one item, in order: the odd one is not lost, and it neither ends the run nor
    # merges the photos after it into one item that never leaves.
    shown = [path.relative_to(tmp_path).as_posix() for path in imaging.find_photos(tmp_path)]
    assert odd in shown
    assert sorted_items == shown
    assert source.stats["photos"] == 9 and source.stats["unreadable"] == 0


@pytest.mark.parametrize("odd_size", ODD_SIZES, ids=[f"{w}x{h}" for w, h in ODD_SIZES])
def test_replay_shows_the_same_tray_to_the_detector_around_a_tiny_or_thin_photo(tmp_path, odd_size):
    odd = odd_photo_folder(tmp_path, odd_size, "first")
    frames = read_all(open_source("replay", path=tmp_path, empty_frames=2, present_frames=1, tray_size=(320, 240)))
    before_odd = frames[:2]
    assert frames[2].source_id == odd and frames[2].image.shape[:2] == odd_size[::-1]  # the photo itself, unchanged
    # Drawn on so few pixels the tray pattern would look like something else: the tray comes at tray_size.
    assert all(frame.image.shape == (240, 320, 3) for frame in before_odd)
    usual_tray = imaging.thumbnail(empty_tray(512, 384))
    for frame in frames:
        np.testing.assert_array_equal(frame.thumbnail, imaging.thumbnail(frame.image))
        if frame.source_id is None:
            assert np.abs(frame.thumbnail - usual_tray).max() <= 10  # the detector's threshold is 25


def test_replay_tray_size_is_at_least_the_detectors_thumbnail(tmp_path):
    # A tray_size smaller than the thumbnail would be as unlike the tray as a tiny photo's.
    cv2.imwrite(str(tmp_path / "dot.png"), make_photo(0, size=(1, 1)))
    frames = read_all(open_source("replay", path=tmp_path, empty_frames=1, present_frames=1, tray_size=(8, 8)))
    trays = [frame.image for frame in frames if frame.source_id is None]
    assert len(trays) == 2 and all(tray.shape == (48, 64, 3) for tray in trays)


def test_a_file_name_that_is_not_utf8_reaches_the_events_as_valid_text(tmp_path):
    import json
    import os

    folder = os.fsencode(tmp_path / "paper")
    os.mkdir(folder)
    ok, encoded = cv2.imencode(".jpg", make_photo(0))
    with open(os.path.join(folder, b"bad\xffname.jpg"), "wb") as out:  # a name from an old camera card
        out.write(encoded.tobytes())
    frames = read_all(open_source("replay", path=tmp_path, empty_frames=1, present_frames=1))
    shown = {frame.source_id for frame in frames if frame.source_id}
    assert shown == {"paper/bad\ufffdname.jpg"}
    json.dumps(sorted(shown), ensure_ascii=False).encode("utf-8")  # what a dashboard's parser gets: strict UTF-8


def test_closing_a_slow_replay_wakes_a_read_waiting_for_its_frame(photo_folder):
    source = open_source("replay", path=photo_folder, fps=0.05)  # one frame every 20 s
    assert source.read() is not None
    threading.Timer(0.2, source.close).start()
    started = time.monotonic()
    assert source.read() is None
    assert time.monotonic() - started < 2.0  # not the 20 s interval: a stop is quick at any pace
