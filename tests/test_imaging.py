"""imaging: decode, resize per the manifest, JPEG thumbnails, small grey frames for the detector."""

from __future__ import annotations

import os

import cv2
import numpy as np
import pytest

from edge import image_header, imaging
from edge.bundle import InputSpec
from tests.conftest import make_photo, pillow_bytes


def png_bytes(rgb: np.ndarray) -> bytes:
    return cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))[1].tobytes()


def test_decode_returns_rgb_in_the_original_colours():
    rgb = np.zeros((4, 6, 3), np.uint8)
    rgb[..., 0] = 255  # pure red
    decoded = imaging.decode_image(png_bytes(rgb))
    assert decoded.dtype == np.uint8 and decoded.shape == (4, 6, 3)
    np.testing.assert_array_equal(decoded, rgb)


@pytest.mark.parametrize("data", [b"", b"hello, not an image", png_bytes(make_photo(0))[:40]])
def test_decode_rejects_empty_foreign_and_truncated_bytes(data):
    with pytest.raises(ValueError, match="not a readable image"):
        imaging.decode_image(data)


def test_read_image_names_the_path_of_a_bad_file(tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8garbage")
    with pytest.raises(ValueError, match="broken.jpg"):
        imaging.read_image(bad)
    with pytest.raises(ValueError, match="missing.jpg"):
        imaging.read_image(tmp_path / "missing.jpg")


def test_read_image_refuses_pipes_devices_and_folders_before_opening_them(tmp_path):
    fifo = tmp_path / "camera.jpg"
    os.mkfifo(fifo)  # opening it would wait for a writer for ever
    for path, shown in ((fifo, "camera.jpg"), ("/dev/zero", "/dev/zero"), (tmp_path, tmp_path.name)):
        with pytest.raises(ValueError, match=f"{shown}: not a regular file"):
            imaging.read_image(path)


def test_read_image_refuses_a_file_larger_than_any_photo_without_reading_all_of_it(tmp_path, monkeypatch):
    monkeypatch.setattr(imaging, "MAX_FILE_BYTES", 1000)
    huge = tmp_path / "huge.jpg"
    with open(huge, "wb") as handle:
        handle.truncate(64 * 2**20)  # sparse: takes no disk
    with pytest.raises(ValueError, match="huge.jpg: larger than .* MB, more than any photo"):
        imaging.read_image(huge)


def jpeg_bytes(rgb: np.ndarray, quality: int = 90) -> bytes:
    return cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes()


def test_decode_without_min_side_is_pixel_exact_at_full_size():
    data = jpeg_bytes(make_photo(1, size=(120, 160)))
    expected = cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(imaging.decode_image(data), expected)


@pytest.mark.parametrize("min_side, shape", [
    (150, (150, 200, 3)),    # 1/8 still leaves 150 on the shorter side
    (151, (300, 400, 3)),    # 1/8 would be too small: 1/4
    (300, (300, 400, 3)),
    (301, (600, 800, 3)),    # 1/2
    (601, (1200, 1600, 3)),  # no reduction keeps 601: full size
])
def test_decode_with_min_side_shrinks_a_large_jpeg_as_far_as_the_shorter_side_allows(min_side, shape):
    data = jpeg_bytes(make_photo(2, size=(1200, 1600)))
    decoded = imaging.decode_image(data, min_side=min_side)
    assert decoded.shape == shape and decoded.dtype == np.uint8
    # Still the same photo in RGB order: class 2 is mostly blue.
    assert decoded[..., 2].mean() > 150 > decoded[..., 0].mean()


def test_decode_with_min_side_keeps_other_formats_and_small_photos_at_full_size():
    photo = make_photo(0, size=(200, 300))
    np.testing.assert_array_equal(imaging.decode_image(png_bytes(photo), min_side=20), photo)
    assert imaging.decode_image(jpeg_bytes(photo), min_side=224).shape == (200, 300, 3)


def test_read_image_passes_min_side_on(tmp_path):
    path = tmp_path / "big.jpg"
    path.write_bytes(jpeg_bytes(make_photo(0, size=(800, 600))))
    assert imaging.read_image(path, min_side=75).shape == (100, 75, 3)
    assert imaging.read_image(path).shape == (800, 600, 3)


def test_decode_refuses_an_image_that_would_unpack_past_max_pixels_from_its_header():
    ok, png = cv2.imencode(".png", np.zeros((2000, 1500, 3), np.uint8))  # 3 MP in a few kB
    with pytest.raises(ValueError, match=r"too large: 1500x2000 pixels \(limit 1 megapixels\)"):
        imaging.decode_image(png.tobytes(), max_pixels=1_000_000)
    assert imaging.decode_image(png.tobytes(), max_pixels=3_000_000).shape == (2000, 1500, 3)


def test_max_pixels_counts_a_large_jpeg_at_the_size_it_is_decoded_to():
    ok, jpeg = cv2.imencode(".jpg", np.zeros((3000, 4000, 3), np.uint8))  # 12 MP, decoded at 1/8
    assert imaging.decode_image(jpeg.tobytes(), min_side=224, max_pixels=1_000_000).shape == (375, 500, 3)
    with pytest.raises(ValueError, match="too large"):
        imaging.decode_image(jpeg.tobytes(), max_pixels=1_000_000)


def test_resize_for_model_stretches_the_whole_image_bilinearly():
    rgb = make_photo(1, size=(48, 64))
    spec = InputSpec(height=32, width=32)
    resized = imaging.resize_for_model(rgb, spec)
    assert resized.shape == (32, 32, 3) and resized.dtype == np.uint8
    np.testing.assert_array_equal(resized, cv2.resize(rgb, (32, 32), interpolation=cv2.INTER_LINEAR))


def test_resize_for_model_keeps_an_image_already_at_model_size():
    rgb = make_photo(2, size=(32, 32))
    assert imaging.resize_for_model(rgb, InputSpec(height=32, width=32)) is rgb


def test_encode_jpeg_round_trips_and_limits_the_longer_side():
    rgb = make_photo(0, size=(300, 400))
    thumbnail = imaging.decode_image(imaging.encode_jpeg(rgb, max_side=100))
    assert thumbnail.shape == (75, 100, 3)
    full = imaging.decode_image(imaging.encode_jpeg(rgb, quality=95))
    assert full.shape == rgb.shape
    assert np.abs(full.astype(int) - rgb).mean() < 15


def test_to_small_grey_gives_float32_at_the_requested_width_and_height():
    grey = imaging.to_small_grey(make_photo(0, size=(480, 640)), size=(64, 48))
    assert grey.dtype == np.float32 and grey.shape == (48, 64)
    white = imaging.to_small_grey(np.full((10, 10, 3), 255, np.uint8), size=(5, 5))
    assert np.allclose(white, 255.0)


@pytest.mark.parametrize("height, width", [(512, 384), (1080, 1920), (100, 70)])
def test_to_small_grey_is_an_area_average_of_the_frame(height, width):
    rgb = cv2.resize(make_photo(1, size=(60, 80), seed=3), (width, height), interpolation=cv2.INTER_LINEAR)
    direct = cv2.resize(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), (64, 48), interpolation=cv2.INTER_AREA)
    difference = np.abs(imaging.to_small_grey(rgb, size=(64, 48)) - direct)
    assert difference.max() <= 3 and difference.mean() < 0.5


def test_to_small_grey_averages_sensor_noise_away_even_for_hd_frames():
    rgb = cv2.resize(make_photo(2, size=(60, 80), seed=4), (1920, 1080), interpolation=cv2.INTER_LINEAR)
    noise = np.random.default_rng(5).normal(0, 3, rgb.shape).round()
    noisy = np.clip(rgb.astype(np.int16) + noise, 0, 255).astype(np.uint8)
    change = np.abs(imaging.to_small_grey(noisy, size=(64, 48)) - imaging.to_small_grey(rgb, size=(64, 48)))
    assert change.mean() < 0.6  # the detector calls a frame still below a mean change of 2.0


def test_each_view_is_the_frame_as_is_mirrored_flipped_or_turned():
    frame = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    assert imaging.view(frame, "original") is frame
    np.testing.assert_array_equal(imaging.view(frame, "mirrored"), frame[:, ::-1])
    np.testing.assert_array_equal(imaging.view(frame, "flipped"), frame[::-1])
    np.testing.assert_array_equal(imaging.view(frame, "turned"), np.rot90(frame, 2))
    assert all(imaging.view(frame, name).flags.c_contiguous for name in imaging.VIEWS)
    with pytest.raises(ValueError, match="unknown view 'sideways'"):
        imaging.view(frame, "sideways")


@pytest.mark.parametrize("name", imaging.VIEWS)
@pytest.mark.parametrize("shape", [(48, 64, 3), (32, 32, 3)], ids=["stretched", "model-size"])
def test_view_into_writes_what_view_of_the_resized_frame_returns(name, shape):
    frame = np.random.default_rng(2).integers(0, 256, shape, dtype=np.uint8)
    out, scratch = np.zeros((32, 32, 3), np.uint8), np.zeros((32, 32, 3), np.uint8)
    imaging.view_into(frame, name, out, scratch)
    expected = imaging.view(imaging.resize_for_model(frame, InputSpec(height=32, width=32)), name)
    np.testing.assert_array_equal(out, expected)


def test_view_into_refuses_unknown_views_and_buffers_opencv_cannot_write_into():
    frame = np.random.default_rng(4).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    out, scratch = np.zeros((32, 32, 3), np.uint8), np.zeros((32, 32, 3), np.uint8)
    with pytest.raises(ValueError, match="unknown view 'sideways'"):
        imaging.view_into(frame, "sideways", out, scratch)
    for bad_out, bad_scratch in ((np.zeros((32, 64, 3), np.uint8)[:, ::2], scratch),
                                 (out, np.zeros((32, 32, 3), np.float32)), (out, np.zeros((16, 16, 3), np.uint8))):
        with pytest.raises(ValueError, match="C-contiguous H x W x 3 uint8"):
            imaging.view_into(frame, "mirrored", bad_out, bad_scratch)


def test_views_are_parsed_from_a_comma_separated_list_and_unknown_names_refused():
    assert imaging.parse_views(" original, mirrored ,") == ["original", "mirrored"]
    for text in ("", " , ", "original,sideways"):
        with pytest.raises(ValueError, match="expected views from original, mirrored, flipped, turned"):
            imaging.parse_views(text)


def test_stray_bytes_between_jpeg_segments_do_not_hide_its_size_from_the_pixel_limit():
    # libjpeg (so OpenCV) skips a stray byte between segments and decodes on; the size check must too.
    ok, encoded = cv2.imencode(".jpg", np.zeros((1200, 1600, 3), np.uint8))
    data = encoded.tobytes()
    app0_end = 4 + int.from_bytes(data[4:6], "big")
    odd = data[:app0_end] + b"\x00" + data[app0_end:]
    assert cv2.imdecode(np.frombuffer(odd, np.uint8), cv2.IMREAD_COLOR).shape == (1200, 1600, 3)
    assert image_header.jpeg_size(odd) == (1200, 1600)
    with pytest.raises(ValueError, match="too large: 1600x1200 pixels"):
        imaging.decode_image(odd, max_pixels=1_000_000)


def test_a_format_whose_size_cannot_be_read_first_is_refused_under_a_pixel_limit():
    ok, tiff = cv2.imencode(".tiff", np.zeros((20, 30, 3), np.uint8))  # OpenCV decodes it; no header reader here
    assert imaging.decode_image(tiff.tobytes()).shape == (20, 30, 3)
    with pytest.raises(ValueError, match="size cannot be read"):
        imaging.decode_image(tiff.tobytes(), max_pixels=1_000_000)


def test_a_junk_ff00_cannot_steer_the_size_reading_to_a_fake_frame_header():
    # libjpeg skips FF 00 between segments; read as a segment length it could jump over the real
    # frame header to a fake 1x1 one hidden in an APP segment, and the pixel limit would pass a bomb.
    import struct

    ok, encoded = cv2.imencode(".jpg", np.zeros((1200, 1600, 3), np.uint8))
    data = encoded.tobytes()
    segments, position = [], 2
    while data[position + 1] != 0xDA:
        length = int.from_bytes(data[position + 2:position + 4], "big")
        segments.append(data[position:position + 2 + length])
        position += 2 + length
    segments.append(data[position:])
    sof = next(i for i, segment in enumerate(segments) if segment[1] == 0xC0)
    fake_sof = b"\xff\xc0\x00\x11\x08\x00\x01\x00\x01\x03\x01\x22\x00\x02\x11\x01\x03\x11\x01"
    hiding = b"\xff\xe5" + struct.pack(">H", 6 + len(fake_sof)) + b"pad!" + fake_sof
    middle = b"".join(segments[1:sof + 1]) + hiding
    junk = b"\xff\x00" + struct.pack(">H", 2 + len(middle) - len(fake_sof))
    crafted = b"\xff\xd8" + segments[0] + junk + middle + b"".join(segments[sof + 1:])
    assert cv2.imdecode(np.frombuffer(crafted, np.uint8), cv2.IMREAD_COLOR).shape == (1200, 1600, 3)
    assert image_header.jpeg_size(crafted) == (1200, 1600)
    with pytest.raises(ValueError, match="too large"):
        imaging.decode_image(crafted, max_pixels=1_000_000)


def _pillow_bytes(pixels: np.ndarray, mode: str, fmt: str, orientation: int | None = None, **options) -> bytes:
    image = pytest.importorskip("PIL.Image").fromarray(pixels, mode)
    return pillow_bytes(image, fmt, orientation, **options)


def test_transparent_pixels_are_shown_on_white_not_as_the_colour_they_hide():
    rgba = np.zeros((6, 8, 4), np.uint8)
    rgba[...] = (0, 0, 0, 0)            # fully transparent black: IMREAD_COLOR alone would show black
    rgba[0, 0] = (10, 200, 30, 255)     # opaque: exact
    rgba[0, 1] = (0, 0, 0, 128)         # half-transparent black: mid grey
    decoded = imaging.decode_image(_pillow_bytes(rgba, "RGBA", "PNG"))
    assert decoded.shape == (6, 8, 3)
    assert tuple(decoded[0, 0]) == (10, 200, 30)
    assert tuple(decoded[0, 1]) == (127, 127, 127)
    assert (decoded[1:] == 255).all()


@pytest.mark.parametrize("mode, fmt, options", [
    ("LA", "PNG", {}), ("P", "PNG", {"transparency": 0}), ("RGBA", "WEBP", {"lossless": True}),
])
def test_every_kind_of_transparency_is_composed_on_white(mode, fmt, options):
    if mode == "LA":
        pixels = np.zeros((6, 8, 2), np.uint8)
    elif mode == "P":
        pixels = np.zeros((6, 8), np.uint8)  # palette index 0 everywhere, marked transparent
    else:
        pixels = np.zeros((6, 8, 4), np.uint8)
        pixels[0, 0] = (1, 2, 3, 255)  # one opaque pixel, or the encoder drops the alpha
    decoded = imaging.decode_image(_pillow_bytes(pixels, mode, fmt, **options))
    assert decoded.shape == (6, 8, 3) and (decoded[1:] == 255).all()


def test_a_sixteen_bit_transparent_png_is_composed_from_its_high_bytes():
    rgba = np.zeros((4, 4, 4), np.uint16)
    rgba[..., :3] = 0x1234
    rgba[0, 0, 3] = 0xFFFF
    decoded = imaging.decode_image(png_bytes_bgra(rgba))
    assert tuple(decoded[0, 0]) == (0x12, 0x12, 0x12) and (decoded[1:] == 255).all()


def png_bytes_bgra(bgra: np.ndarray) -> bytes:
    return cv2.imencode(".png", bgra)[1].tobytes()


@pytest.mark.parametrize("fmt, options", [("PNG", {}), ("WEBP", {"lossless": True})])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_a_transparent_image_is_turned_upright_as_opencv_turns_an_opaque_one(fmt, options, orientation):
    rng = np.random.default_rng(orientation)
    rgba = rng.integers(0, 256, (6, 8, 4), dtype=np.uint8)
    rgba[..., 3] = 254  # nearly opaque: composed within one level of the colour OpenCV decodes itself
    data = _pillow_bytes(rgba, "RGBA", fmt, orientation, **options)
    upright = cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    decoded = imaging.decode_image(data)
    assert decoded.shape == upright.shape  # turned exactly when this OpenCV turns the opaque file
    assert np.abs(decoded.astype(int) - upright.astype(int)).max() <= 1
    if fmt == "PNG":  # every OpenCV in use turns a PNG (4.x leaves a WebP's orientation alone)
        assert decoded.shape == ((6, 8, 3) if orientation <= 4 else (8, 6, 3))


def test_an_opaque_png_is_decoded_as_before():
    rgb = make_photo(3, size=(20, 30))
    assert np.array_equal(imaging.decode_image(png_bytes(rgb)), rgb)


def test_a_tall_transparent_image_is_composed_alike_in_every_strip_of_rows():
    rgba = np.zeros((2 * imaging.BLEND_ROWS + 37, 5, 4), np.uint8)
    rgba[..., :3] = 40
    rgba[::2, :, 3] = 255  # even rows opaque, odd rows clear
    decoded = imaging.decode_image(_pillow_bytes(rgba, "RGBA", "PNG"))
    assert (decoded[::2] == 40).all() and (decoded[1::2] == 255).all()


def test_a_transparent_image_is_refused_by_the_memory_it_takes_to_compose():
    rgba = np.zeros((100, 100, 4), np.uint8)
    rgba[..., 3] = 128
    data = _pillow_bytes(rgba, "RGBA", "PNG")
    assert imaging.decode_image(data, max_pixels=10_000 * 7 // 3 + 1).shape == (100, 100, 3)
    with pytest.raises(imaging.ImageTooLarge, match="with transparency take the memory of"):
        imaging.decode_image(data, max_pixels=20_000)  # 10 000 pixels, but 4 bytes each as stored


def _jpeg(width: int, height: int, progressive: bool, subsampling: int) -> bytes:
    import io

    image = pytest.importorskip("PIL.Image")  # Pillow comes with [train]; an [edge]-only check skips these
    buffer = io.BytesIO()
    image.new("RGB", (width, height), (120, 130, 140)).save(buffer, "JPEG", progressive=progressive,
                                                            subsampling=subsampling)
    return buffer.getvalue()


def test_a_progressive_jpeg_counts_the_coefficients_libjpeg_holds_at_full_size():
    # 4:2:0: luma 125 x 100 blocks (126 x 100 as libjpeg rounds them up to its sampling factor 2),
    # each chroma 63 x 50; 64 coefficients of 2 bytes per block.
    assert image_header.jpeg_coefficient_bytes(_jpeg(1000, 800, True, 2)) == (12_600 + 2 * 3_150) * 128
    assert image_header.jpeg_coefficient_bytes(_jpeg(1000, 800, False, 2)) == 0  # decoded a band at a time


def _sequential_jpeg_head(width: int, height: int, channels_per_scan: int) -> bytes:
    """A baseline JPEG's headers: a 3-channel 4:4:4 frame, then a scan of ``channels_per_scan`` of them."""
    import struct

    def segment(marker: int, payload: bytes) -> bytes:
        return b"\xff" + bytes([marker]) + struct.pack(">H", len(payload) + 2) + payload

    frame = struct.pack(">BHHB", 8, height, width, 3) + b"".join(bytes([i + 1, 0x11, 0]) for i in range(3))
    scan = bytes([channels_per_scan]) + b"".join(bytes([i + 1, 0]) for i in range(channels_per_scan)) + b"\x00\x3f\x00"
    return b"\xff\xd8" + segment(0xC0, frame) + segment(0xDA, scan) + bytes(64)


def test_a_sequential_jpeg_with_one_scan_per_channel_counts_its_coefficients_too():
    # libjpeg buffers the whole picture when the channels come in separate scans (a 1.7 MB
    # 8000x6000 file took 278 MB at 1/8 scale); one interleaved scan is decoded a band at a time.
    assert image_header.jpeg_coefficient_bytes(_sequential_jpeg_head(1000, 800, 1)) == 3 * 125 * 100 * 128
    assert image_header.jpeg_coefficient_bytes(_sequential_jpeg_head(1000, 800, 3)) == 0
    with pytest.raises(imaging.ImageTooLarge, match="takes the memory of 2 megapixels while it is decoded"):
        imaging.decode_image(_sequential_jpeg_head(1000, 800, 1), min_side=100, max_pixels=1_000_000)


def test_a_progressive_jpeg_is_refused_by_its_decoding_memory_even_at_a_reduced_scale():
    # A small progressive file can need gigabytes (16000x12000: 1.1 GB) although decoded at 1/8.
    progressive, baseline = _jpeg(1000, 800, True, 0), _jpeg(1000, 800, False, 0)
    assert imaging.decode_image(baseline, min_side=100, max_pixels=1_000_000).shape == (100, 125, 3)
    with pytest.raises(imaging.ImageTooLarge, match=r"a progressive JPEG of 1000x800 pixels takes the memory of "
                                                    r"2 megapixels while it is decoded \(limit 1 megapixels\)"):
        imaging.decode_image(progressive, min_side=100, max_pixels=1_000_000)
    assert imaging.decode_image(progressive, min_side=100, max_pixels=2_000_000).shape == (100, 125, 3)
