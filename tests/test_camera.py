"""camera: OpenCV reads files/devices with back-off, picamera2 gives RGB, auto fails clearly, fake hangs on cue.

The replay source has its own file, ``test_camera_replay.py``.
"""

from __future__ import annotations

import sys
import threading
import time

import cv2
import numpy as np
import pytest

from edge import imaging
from edge.bundle import InputSpec
from edge.camera import open_source
from edge.errors import CameraError
from tests.conftest import make_photo, read_all


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
    assert frames[0].model_input is None  # nobody asked for the classifier's input
    assert source.read() is None


def test_opencv_frames_carry_the_classifiers_input_made_on_the_capture_thread_when_given_its_size(tmp_path):
    video = tmp_path / "clip.avi"
    write_video(video, frames=3)
    spec = InputSpec(height=32, width=32)
    frames = read_all(open_source("opencv", device=str(video), model_spec=spec))
    assert len(frames) == 3
    for frame in frames:
        np.testing.assert_array_equal(frame.model_input, imaging.resize_for_model(frame.image, spec))


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


@pytest.mark.parametrize("content", [b"", b"not a video at all" * 50], ids=["empty", "garbage"])
def test_opencv_a_video_file_that_cannot_be_read_is_bad_input_at_once_not_a_camera_to_wait_for(tmp_path, content):
    from edge.errors import MissingInputError

    video = tmp_path / "clip.avi"
    video.write_bytes(content)
    start = time.perf_counter()
    with pytest.raises(MissingInputError, match="cannot read video file .*clip.avi"):  # exit 2: no restart loop
        open_source("opencv", device=str(video), retries=5, backoff_s=0.5)
    assert time.perf_counter() - start < 0.5  # no back-off: waiting cannot mend a file


def test_opencv_a_folder_is_not_a_camera_and_the_error_points_to_replay(tmp_path):
    from edge.errors import MissingInputError

    with pytest.raises(MissingInputError, match="is a folder, not a video file or camera .*--replay"):
        open_source("opencv", device=str(tmp_path))


def test_opencv_a_recording_that_ends_early_is_reported(tmp_path, caplog, monkeypatch):
    from edge.camera.opencv import OpenCVSource

    video = tmp_path / "clip.avi"
    write_video(video, frames=5)
    real_open = OpenCVSource._open

    def claims_more(self):
        capture = real_open(self)
        return None if capture is None else _Claiming(capture, frames=50)

    monkeypatch.setattr(OpenCVSource, "_open", claims_more)
    source = open_source("opencv", device=str(video))
    assert len(read_all(source)) == 5
    source.close()
    assert "ended after 5 of its 50 frames (damaged?)" in caplog.text


class _Claiming:
    """A recording whose header promises more frames than it holds (damaged in the middle)."""

    def __init__(self, capture, frames: int):
        self.capture, self.frames = capture, frames

    def get(self, prop):
        return self.frames if prop == cv2.CAP_PROP_FRAME_COUNT else self.capture.get(prop)

    def __getattr__(self, name):
        return getattr(self.capture, name)


def test_opencv_a_recording_behind_a_url_ends_once_instead_of_playing_again(tmp_path):
    # Reopened like a live stream, a 3-item clip given as a URL was sorted again and again.
    video = tmp_path / "clip.avi"
    write_video(video, frames=5)
    source = open_source("opencv", device=video.as_uri(), retries=1, backoff_s=0.01)
    frames = read_all(source)
    source.close()
    assert len(frames) == 5 and source.stats["retries"] == 0
    cut = tmp_path / "cut.avi"  # damaged: its frame count says more than it holds
    write_video(tmp_path / "long.avi", frames=23)
    data = (tmp_path / "long.avi").read_bytes()
    cut.write_bytes(data[:len(data) * 6 // 10])
    source = open_source("opencv", device=cut.as_uri(), retries=1, backoff_s=0.01)
    frames = read_all(source)
    source.close()
    assert 0 < len(frames) < 23 and source.stats["retries"] == 0  # played once, not again and again


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
