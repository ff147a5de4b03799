"""Shared pytest fixtures: generated photos, a tiny real INT8 bundle, a real mosquitto broker.

Everything here is made on the fly: no photo or model from ``../shared`` is needed, so the
suite runs on a clean checkout. Tests that need TrashNet use ``shared_data`` and skip
cleanly when it is absent.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
TINY_LABELS = ("cardboard", "glass", "metal")
TINY_SIZE = 32


def read_all(source, limit=10_000) -> list:
    """Every frame a camera source gives until it ends (a test fails on an endless one)."""
    frames = []
    while (frame := source.read(timeout=5)) is not None:
        frames.append(frame)
        assert len(frames) < limit
    return frames


def make_photo(label_index: int, size=(48, 64), seed: int = 0) -> np.ndarray:
    """A synthetic RGB photo whose dominant colour depends on its class, so a tiny model can learn it."""
    rng = np.random.default_rng(seed)
    height, width = size
    base = np.zeros((height, width, 3), np.float32)
    base[..., label_index % 3] = 200.0
    noise = rng.normal(0, 20, (height, width, 3))
    return np.clip(base + noise + 30, 0, 255).astype(np.uint8)


def pillow_bytes(image, fmt: str, orientation: int | None = None, **options) -> bytes:
    """A Pillow image encoded as ``fmt`` (PNG, WEBP, ...), optionally tagged with an EXIF orientation."""
    import io

    if orientation is not None:
        exif = image.getexif()
        exif[0x0112] = orientation
        options["exif"] = exif.tobytes()
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def write_class_folders(root: Path, labels=TINY_LABELS, per_class: int = 8, size=(48, 64)) -> Path:
    """Writes ``root/<label>/<label>_<i>.jpg`` photos and returns ``root``."""
    import cv2

    for index, label in enumerate(labels):
        folder = root / label
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            rgb = make_photo(index, size=size, seed=index * 1000 + i)
            cv2.imwrite(str(folder / f"{label}_{i}.jpg"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return root


@pytest.fixture
def photo_folder(tmp_path) -> Path:
    """A small class-folder dataset of generated JPEGs (3 classes x 8 photos, 64x48)."""
    return write_class_folders(tmp_path / "photos")


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory) -> Path:
    """A real full-integer INT8 LiteRT bundle of a tiny CNN trained briefly on generated photos.

    Made with TensorFlow once per session; the edge tests then load it with ai-edge-litert only.
    """
    pytest.importorskip("tensorflow")
    from tests.model_factory import build_tiny_bundle

    return build_tiny_bundle(tmp_path_factory.mktemp("bundle") / "tiny-int8", TINY_LABELS, TINY_SIZE)


@pytest.fixture(scope="module")
def classifier(tiny_bundle):
    """The tiny bundle's ``Classifier`` (one LiteRT thread), one per test module."""
    from edge.classifier import Classifier

    return Classifier.from_path(tiny_bundle, threads=1)


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """``../shared`` (or ``SMARTBIN_SHARED``); skips the test when absent."""
    path = Path(os.environ.get("SMARTBIN_SHARED", REPO_ROOT.parent / "shared"))
    if not (path / "data" / "trashnet").is_dir():
        pytest.skip(f"TrashNet data not found under {path} (set SMARTBIN_SHARED)")
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Mosquitto:
    """A real mosquitto broker on 127.0.0.1 that a test can stop and start again on the same port."""

    def __init__(self, workdir: Path, port: int | None = None):
        self.binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(self.binary).exists():
            pytest.skip("mosquitto is not installed (apt-get install -y mosquitto)")
        self.port = port or free_port()
        self.workdir = workdir
        self.config = workdir / "mosquitto.conf"
        self.config.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
            f"max_packet_size 1048576\nlog_dest stderr\n"
        )
        self.process: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> Mosquitto:
        self.process = subprocess.Popen(
            [self.binary, "-c", str(self.config)],
            stdout=subprocess.DEVNULL, stderr=open(self.workdir / "mosquitto.log", "ab"),
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"mosquitto did not start on port {self.port}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.process = None


@pytest.fixture
def mosquitto(tmp_path):
    """A running broker; ``mosquitto.stop()`` / ``mosquitto.start()`` simulate an outage."""
    broker = Mosquitto(tmp_path).start()
    yield broker
    broker.stop()


@pytest.fixture
def mosquitto_stopped(tmp_path):
    """A broker configured on a free port but not running yet (call ``.start()``)."""
    broker = Mosquitto(tmp_path)
    yield broker
    broker.stop()
