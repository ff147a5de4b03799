"""camera: replay simulates a tray, OpenCV reads files/devices with back-off, auto fails clearly, fake hangs on cue."""

from __future__ import annotations

import sys
import threading
import time

import cv2
import numpy as np
import pytest

from edge import imaging
from edge.camera import Frame, FrameSource, open_source
from edge.camera.replay import empty_tray
from edge.errors import CameraError
from tests.conftest import make_photo


def read_all(source, limit=10_000) -> list[Frame]:
    frames = []
    while (frame := source.read(timeout=5)) is not None:
        frames.append(frame)
        assert len(frames) < limit
    return frames


# --- replay -----------------------------------------------------------------------------------


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


# --- opencv -----------------------------------------------------------------------------------


def write_video(path, frames: int = 5, size=(64, 48)) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, size)
    red_in_bgr = np.zeros((size[1], size[0], 3), np.uint8)
    red_in_bgr[..., 2] = 230
    for _ in range(frames):
        writer.write(red_in_bgr)
    writer.release()


def test_opencv_reads_a_video_file_as_rgb_then_ends(tmp_path):
    video = tmp_path / "clip.avi"
    write_video(video, frames=5)
    source = open_source("opencv", device=str(video))
    frames = read_all(source)
    source.close()
    assert len(frames) == 5 and [frame.index for frame in frames] == list(range(5))
    image = frames[0].image
    assert image.shape == (48, 64, 3) and image.dtype == np.uint8
    assert image[..., 0].mean() > 200 and image[..., 2].mean() < 40  # red stays red
    np.testing.assert_array_equal(frames[0].thumbnail, imaging.thumbnail(image))  # made on the capture thread
    assert source.read() is None


def test_opencv_gives_up_on_a_dead_device_after_backing_off():
    start = time.perf_counter()
    with pytest.raises(CameraError, match="cannot open camera 99 .*3 attempts"):
        open_source("opencv", device=99, retries=2, backoff_s=0.02)
    assert time.perf_counter() - start >= 0.02 + 0.04


class StalledCapture:
    """A live camera whose driver hangs in read() until released."""

    def __init__(self):
        self.released = threading.Event()

    def isOpened(self):  # noqa: N802 - cv2.VideoCapture's name
        return True

    def read(self):
        self.released.wait(10)
        return False, None

    def release(self):
        self.released.set()


def test_opencv_close_ends_a_read_of_a_stalled_camera_at_once(monkeypatch):
    from edge.camera.opencv import OpenCVSource

    capture = StalledCapture()
    monkeypatch.setattr(OpenCVSource, "_open", lambda self: capture)
    source = open_source("opencv", device=0)
    result = {}
    reader = threading.Thread(target=lambda: result.setdefault("frame", source.read(timeout=30)))
    reader.start()
    time.sleep(0.2)
    start = time.perf_counter()
    source.close()  # what SIGTERM does through Daemon.stop
    reader.join(5)
    capture.release()
    assert not reader.is_alive() and result["frame"] is None
    assert time.perf_counter() - start < 2.0  # not the read's 30 s timeout


def test_opencv_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(CameraError, match="video file not found"):
        open_source("opencv", device=str(tmp_path / "missing.mp4"))


def test_opencv_device_nodes_and_pipelines_are_live_sources_not_missing_files():
    for device in ("/dev/video97", "videotestsrc num-buffers=0 ! appsink"):
        with pytest.raises(CameraError, match="cannot open camera") as error:
            open_source("opencv", device=device, retries=0)
        assert "video file not found" not in str(error.value)


class FramesThen:
    """A live camera that delivers the given frames, then a frame the thumbnail code chokes on."""

    def __init__(self, frames):
        self.frames = list(frames)

    def isOpened(self):  # noqa: N802 - cv2.VideoCapture's name
        return True

    def read(self):
        if self.frames:
            return True, self.frames.pop(0)
        time.sleep(0.01)
        return True, np.zeros((4, 4, 3), np.uint8)

    def set(self, *args):
        return True

    def release(self):
        pass


def test_opencv_converts_grey_and_bgra_frames_and_skips_unusable_ones(monkeypatch):
    from edge.camera.opencv import OpenCVSource

    grey = np.full((48, 64), 90, np.uint8)
    bgra = np.zeros((48, 64, 4), np.uint8)
    bgra[..., 2] = 250  # red in OpenCV's BGRA
    float_frame = np.zeros((48, 64, 3), np.float32)
    capture = FramesThen([float_frame, grey, bgra])
    monkeypatch.setattr(OpenCVSource, "_open", lambda self: capture)
    source = open_source("opencv", device=0)
    try:
        first, second = source.read(timeout=5), source.read(timeout=5)
    finally:
        source.close()
    assert first.image.shape == (48, 64, 3) and (first.image == 90).all()
    assert second.image[..., 0].min() == 250 and second.image[..., 2].max() == 0
    assert source.stats["unreadable"] == 1


def test_a_failing_capture_thread_reaches_the_reader_as_a_camera_error(monkeypatch):
    from edge.camera import opencv

    def broken_thumbnail(rgb):
        raise MemoryError("out of memory in the thumbnail")

    monkeypatch.setattr(opencv.OpenCVSource, "_open", lambda self: FramesThen([]))
    monkeypatch.setattr(opencv.imaging, "thumbnail", broken_thumbnail)
    source = open_source("opencv", device=0)
    try:
        with pytest.raises(CameraError, match="capture failed on 0: out of memory"):
            source.read(timeout=5)
    finally:
        source.close()


# --- picamera2 (a stand-in for the module: the real one needs a Pi) ----------------------------


class FakePicamera2:
    """Records what the source asks of picamera2; frames are [B, G, R] (or [R, G, B, X]) like the real one."""

    format_given = "RGB888"
    start_error: Exception | None = None
    timeouts = 0
    last = None

    def __init__(self):
        self.calls, self.camera_config = [], None
        FakePicamera2.last = self

    def create_video_configuration(self, main, controls):
        return {"main": dict(main), "controls": controls}

    def configure(self, config):
        self.camera_config = {**config, "main": {**config["main"], "format": self.format_given}}

    def start(self):
        self.calls.append("start")
        if self.start_error is not None:
            raise self.start_error

    def capture_array(self, name, wait=True):
        return name

    def wait(self, job, timeout):
        if FakePicamera2.timeouts:
            FakePicamera2.timeouts -= 1
            raise TimeoutError
        pixel = [10, 20, 30] if self.format_given in ("RGB888", "XRGB8888") else [30, 20, 10]  # R=30, G=20, B=10
        pixel += [255] if self.format_given.startswith("X") else []
        return np.tile(np.array(pixel, np.uint8), (4, 6, 1))

    def cancel_all_and_flush(self):
        self.calls.append("flush")

    def stop(self):
        self.calls.append("stop")

    def close(self):
        self.calls.append("close")


@pytest.fixture
def picamera2(monkeypatch):
    import types

    module = types.ModuleType("picamera2")
    module.Picamera2 = FakePicamera2
    monkeypatch.setitem(sys.modules, "picamera2", module)
    monkeypatch.setattr(FakePicamera2, "format_given", "RGB888")
    monkeypatch.setattr(FakePicamera2, "start_error", None)
    monkeypatch.setattr(FakePicamera2, "timeouts", 0)
    return FakePicamera2


@pytest.mark.parametrize("given", ["RGB888", "XRGB8888", "BGR888", "XBGR8888"])
def test_picamera_frames_are_rgb_whatever_byte_order_the_camera_was_configured_with(picamera2, given):
    picamera2.format_given = given
    source = open_source("picamera2", width=6, height=4)
    try:
        frame = source.read(timeout=1)
    finally:
        source.close()
    assert frame.image.shape == (4, 6, 3) and frame.image[0, 0].tolist() == [30, 20, 10]


def test_a_picamera_that_fails_to_start_is_closed_so_the_fallback_finds_it_free(picamera2):
    picamera2.start_error = RuntimeError("Failed to start camera: Device or resource busy")
    with pytest.raises(CameraError, match="cannot start the camera: Failed to start camera"):
        open_source("picamera2")
    assert picamera2.last.calls[-1] == "close"


def test_a_picamera_timeout_flushes_the_stuck_capture_then_retries(picamera2):
    picamera2.timeouts = 1
    source = open_source("picamera2", width=6, height=4, backoff_s=0.001)
    try:
        assert source.read(timeout=0.1) is not None
        assert picamera2.last.calls == ["start", "flush"] and source.stats["retries"] == 1
    finally:
        source.close()


def test_closing_a_picamera_flushes_then_closes_without_a_stop_that_could_hang(picamera2):
    source = open_source("picamera2")
    source.close()
    source.close()
    assert picamera2.last.calls == ["start", "flush", "close"]


# --- auto, fake, registry ---------------------------------------------------------------------


def test_auto_without_any_camera_suggests_replay():
    with pytest.raises(CameraError, match="--replay DIR") as raised:
        open_source("auto", device=99, backoff_s=0.01)
    assert "picamera2" in str(raised.value) and "\n" not in str(raised.value)


def test_unknown_kind_and_unknown_options_are_camera_errors(photo_folder):
    with pytest.raises(CameraError, match="unknown camera kind 'webcam'"):
        open_source("webcam")
    with pytest.raises(CameraError, match="colour"):
        open_source("replay", path=photo_folder, colour="red")


def test_fake_yields_its_frames_then_ends():
    images = [make_photo(i) for i in range(3)]
    source = open_source("fake", frames=images)
    frames = read_all(source)
    assert [frame.index for frame in frames] == [0, 1, 2]
    assert all(np.array_equal(frame.image, image) for frame, image in zip(frames, images))


def test_fake_takes_a_function_of_the_frame_index():
    source = open_source("fake", frames=lambda i: make_photo(0) if i < 4 else None)
    assert len(read_all(source)) == 4


def test_fake_hangs_after_block_after_and_times_out_like_a_stalled_camera():
    source = open_source("fake", frames=lambda i: make_photo(0), block_after=2)
    assert source.read(timeout=1) is not None and source.read(timeout=1) is not None
    start = time.perf_counter()
    with pytest.raises(CameraError, match="camera timeout"):
        source.read(timeout=0.1)
    assert 0.1 <= time.perf_counter() - start < 1.0
    source.close()
    assert source.read(timeout=5) is None  # closing wakes a blocked reader


def test_replay_decoder_failure_reaches_the_reader_instead_of_hanging_it(photo_folder, monkeypatch):
    from edge.camera import replay

    def out_of_memory(_rgb):
        raise MemoryError("no room for the thumbnail")

    monkeypatch.setattr(replay.imaging, "thumbnail", out_of_memory)
    source = open_source("replay", path=photo_folder)
    with pytest.raises(MemoryError, match="no room"):
        read_all(source)
    source.close()
