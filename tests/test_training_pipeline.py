"""training.pipeline gives the model exactly the pixels the bin gives it: the bin's own decoder and resize."""

import numpy as np
import pytest

pytest.importorskip("tensorflow")

import tensorflow as tf  # noqa: E402

from edge import imaging  # noqa: E402
from edge.bundle import InputSpec  # noqa: E402
from training.pipeline import load_image, make_dataset  # noqa: E402


def photo(path, orientation: int | None = None) -> None:
    """A 64x48 JPEG whose four quadrants differ, so any turn or flip shows; optionally EXIF-tagged."""
    from PIL import Image

    rng = np.random.default_rng(0)
    pixels = np.zeros((48, 64, 3), np.uint8)
    pixels[:24, :32], pixels[:24, 32:], pixels[24:, :32], pixels[24:, 32:] = (200, 30, 30), (30, 200, 30), \
        (30, 30, 200), (220, 220, 40)
    pixels = np.clip(pixels.astype(int) + rng.integers(-20, 20, pixels.shape), 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels)
    exif = image.getexif()
    if orientation is not None:
        exif[0x0112] = orientation
    image.save(path, quality=90, exif=exif)


def bin_input(path, size: int) -> np.ndarray:
    spec = InputSpec(height=size, width=size, dtype="uint8", scale=1.0, zero_point=0)
    return imaging.resize_for_model(imaging.read_image(path), spec)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_training_sees_each_exif_orientation_exactly_as_the_bin_does(tmp_path, orientation):
    path = tmp_path / f"o{orientation}.jpg"
    photo(path, orientation)
    trained = load_image(tf.constant(str(path)), 32).numpy()
    assert np.array_equal(trained, bin_input(path, 32))
    import cv2

    upright = cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    assert upright.shape[:2] == ((48, 64) if orientation <= 4 else (64, 48))  # OpenCV turned it
    assert np.array_equal(trained, cv2.resize(upright, (32, 32), interpolation=cv2.INTER_LINEAR))


def test_a_jpeg_is_decoded_and_stretched_exactly_as_the_bin_does(tmp_path):
    path = tmp_path / "plain.jpg"
    photo(path)
    assert np.array_equal(load_image(tf.constant(str(path)), 48).numpy(), bin_input(path, 48))


def test_a_dataset_turns_each_photo_by_its_own_orientation(tmp_path):
    for name, orientation in (("a", 6), ("b", None)):
        (tmp_path / "glass").mkdir(exist_ok=True)
        photo(tmp_path / "glass" / f"{name}.jpg", orientation)
    ds = make_dataset(tmp_path, [("glass/a.jpg", "glass"), ("glass/b.jpg", "glass")], ["glass"], 32, 2)
    images = next(iter(ds))[0].numpy()
    assert np.abs(images[0] - images[1]).mean() > 20  # the tagged one was turned


def _saved(path, pixels, mode, fmt, **options):
    from PIL import Image

    Image.fromarray(pixels, mode).save(path, format=fmt, **options)
    return path


@pytest.mark.parametrize("name, mode, fmt, options", [
    ("rgba.png", "RGBA", "PNG", {}),
    ("grey-alpha.png", "LA", "PNG", {}),
    ("rgba.webp", "RGBA", "WEBP", {"lossless": True}),
    ("rgba-lossy.webp", "RGBA", "WEBP", {"quality": 90}),
    ("rgb.webp", "RGB", "WEBP", {"lossless": True}),
])
def test_training_composes_transparency_on_white_to_the_bins_integers(tmp_path, name, mode, fmt, options):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (48, 64, len(mode)), dtype=np.uint8)
    if len(mode) in (2, 4):
        pixels[..., -1] = rng.choice([0, 90, 255], (48, 64))  # clear, half and opaque pixels
    path = _saved(tmp_path / name, pixels, mode, fmt, **options)
    trained = load_image(tf.constant(str(path)), 40).numpy()
    assert np.array_equal(trained, bin_input(path, 40))


@pytest.mark.parametrize("name, mode, options", [
    ("palette-4bit.png", "P", {"bits": 4}),
    ("bilevel.png", "1", {}),
    ("grey-colour-key.png", "L", {"transparency": 7}),  # OpenCV ignores a grey picture's colour key
    ("palette.bmp", "P", {}),
])
def test_opaque_and_low_bit_depth_pictures_train_as_the_bin_decodes_them(tmp_path, name, mode, options):
    from PIL import Image

    rng = np.random.default_rng(1)
    picture = Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8))
    picture = picture.convert("P", palette=Image.Palette.ADAPTIVE, colors=16) if mode == "P" else picture.convert(mode)
    path = tmp_path / name
    picture.save(path, **options)
    import cv2

    as_colour = cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    assert np.array_equal(imaging.read_image(path), as_colour)  # opaque: nothing composed
    assert np.array_equal(load_image(tf.constant(str(path)), 40).numpy(), bin_input(path, 40))


def test_a_transparent_png_turned_by_its_exif_trains_upright_once(tmp_path):
    from PIL import Image

    rgba = np.zeros((48, 64, 4), np.uint8)
    rgba[:24, :32] = (200, 30, 30, 255)
    image = Image.fromarray(rgba, "RGBA")
    exif = image.getexif()
    exif[0x0112] = 6
    path = tmp_path / "turned.png"
    image.save(path, exif=exif.tobytes())
    trained = load_image(tf.constant(str(path)), 32).numpy()
    assert np.array_equal(trained, bin_input(path, 32))
    assert trained[:4, -4:].mean(axis=(0, 1)).tolist() == [200, 30, 30]  # the red corner turned to the top right


def test_a_dataset_of_every_format_runs_in_graph_mode_as_the_bin_sees_each_photo(tmp_path):
    from PIL import Image

    (tmp_path / "glass").mkdir()
    rng = np.random.default_rng(2)
    pixels = rng.integers(0, 256, (30, 40, 4), dtype=np.uint8)
    photo(tmp_path / "glass" / "a.jpg", 6)
    Image.fromarray(pixels, "RGBA").save(tmp_path / "glass" / "b.png")
    Image.fromarray(pixels, "RGBA").save(tmp_path / "glass" / "c.webp", lossless=True)
    Image.fromarray(pixels[..., :3]).save(tmp_path / "glass" / "d.bmp")
    names = ["a.jpg", "b.png", "c.webp", "d.bmp"]
    ds = make_dataset(tmp_path, [(f"glass/{name}", "glass") for name in names], ["glass"], 24, 4)
    images = next(iter(ds))[0].numpy()
    for image, name in zip(images, names):
        assert np.array_equal(image, bin_input(tmp_path / "glass" / name, 24).astype(np.float32)), name


def test_an_image_over_the_bins_pixel_limit_is_refused_not_decoded(tmp_path):
    from training.pipeline import as_the_bin_sees_it

    with pytest.raises(ValueError, match="too large"):
        as_the_bin_sees_it(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\x3e\x80\0\0\x3e\x80\x01\0\0\0\0", 32)


def test_a_photo_gone_after_the_scan_is_skipped_in_training_not_a_crash_mid_epoch(tmp_path):
    from tests.conftest import write_class_folders

    data = write_class_folders(tmp_path / "data", per_class=3)
    items = sorted((str(path.relative_to(data)), path.parent.name) for path in data.rglob("*.jpg"))
    training = make_dataset(data, items, ["cardboard", "glass", "metal"], 32, batch_size=2, training=True)
    scoring = make_dataset(data, items, ["cardboard", "glass", "metal"], 32, batch_size=2)
    (data / items[0][0]).unlink()  # deleted by hand while the run starts
    seen = sum(int(images.shape[0]) for images, _ in training)
    assert seen == 8  # 9 photos, one gone, in full batches of 2
    with pytest.raises(tf.errors.OpError):  # scoring never drops a photo: labels must stay aligned
        for _ in scoring:
            pass
