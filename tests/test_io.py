"""Tests for sr_core.io: every fixture is generated here with PIL, numpy or hand-written PNG bytes."""

from __future__ import annotations

import io
import os
import struct
import sys
import threading
import warnings
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from sr_core.errors import ImageLoadError, ImageTooLargeError, SRError
from sr_core.io import (
    CANONICAL_MODES,
    DEFAULT_MAX_PIXELS,
    describe,
    from_array,
    load_image,
    save_image,
    to_array,
    to_uint8,
)

ORIENTATION = 0x0112
RNG = np.random.default_rng(1234)


# ------------------------------------------------------------------------------------------- fixtures


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_bytes(
    width: int, height: int, *, bit_depth: int = 8, color_type: int = 0, idat: bytes | None = b""
) -> bytes:
    """A PNG assembled by hand (no PIL), so its header and data are exactly what the test says."""
    out = b"\x89PNG\r\n\x1a\n" + _chunk(
        b"IHDR", struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    )
    if idat is not None:
        out += _chunk(b"IDAT", idat)
    return out + _chunk(b"IEND", b"")


def _png16_gray(values: np.ndarray) -> bytes:
    """Hand-encoded 16-bit greyscale PNG of ``values`` (big-endian samples, filter 0 on every row)."""
    rows = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in values)
    return _png_bytes(values.shape[1], values.shape[0], bit_depth=16, color_type=0, idat=zlib.compress(rows))


def _png_ihdr(data: bytes) -> tuple[int, int, int, int]:
    """(width, height, bit depth, colour type) read straight from a PNG's IHDR chunk."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    width, height, depth, color = struct.unpack(">IIBB", data[16:26])
    return width, height, depth, color


def _rgb(height: int = 24, width: int = 32) -> np.ndarray:
    return RNG.integers(0, 256, size=(height, width, 3), dtype=np.uint8)


def _pillow_state() -> tuple[int | None, bool]:
    return Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES


U16_VALUES = np.array(
    [
        [0, 1, 2, 255, 256, 257],
        [1000, 32767, 32768, 65279, 65534, 65535],
        [12345, 54321, 7, 65280, 511, 40000],
    ],
    dtype=np.uint16,
)


# ----------------------------------------------------------------------------------- modes from files


def test_constants() -> None:
    assert CANONICAL_MODES == ("L", "LA", "RGB", "RGBA", "I;16")
    assert DEFAULT_MAX_PIXELS == 100_000_000


@pytest.mark.parametrize(
    ("mode", "shape"), [("L", (20, 30)), ("LA", (20, 30, 2)), ("RGB", (20, 30, 3)), ("RGBA", (20, 30, 4))]
)
def test_8bit_modes_round_trip_exactly(tmp_path: Path, mode: str, shape: tuple[int, ...]) -> None:
    pixels = RNG.integers(0, 256, size=shape, dtype=np.uint8)
    src = Image.frombytes(mode, (30, 20), pixels.tobytes())
    path = tmp_path / f"img_{mode}.png"
    src.save(path)

    loaded = load_image(path)
    assert loaded.mode == mode and loaded.size == (30, 20)
    np.testing.assert_array_equal(np.asarray(loaded).reshape(shape), pixels)

    arr = to_array(loaded)
    assert arr.dtype == np.float32 and arr.shape == (20, 30, len(mode))
    np.testing.assert_allclose(arr, pixels.reshape(20, 30, -1) / 255.0, atol=1e-7)

    out = save_image(from_array(arr, mode), tmp_path / "out" / f"again_{mode}.png")
    again = load_image(out)
    assert again.mode == mode
    np.testing.assert_array_equal(np.asarray(again).reshape(shape), pixels)


def test_palette_without_transparency_becomes_rgb(tmp_path: Path) -> None:
    palette = RNG.integers(0, 256, size=(256, 3), dtype=np.uint8)
    index = RNG.integers(0, 256, size=(16, 24), dtype=np.uint8)
    src = Image.frombytes("P", (24, 16), index.tobytes())
    src.putpalette(palette.tobytes())
    src.save(tmp_path / "p.png")

    loaded = load_image(tmp_path / "p.png")
    assert loaded.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(loaded), palette[index])


@pytest.mark.parametrize("per_index", [False, True], ids=["single-index", "per-index-alpha"])
def test_palette_with_transparency_becomes_rgba(tmp_path: Path, per_index: bool) -> None:
    palette = RNG.integers(0, 256, size=(4, 3), dtype=np.uint8)
    index = np.tile(np.arange(4, dtype=np.uint8), (8, 4))
    src = Image.frombytes("P", (16, 8), index.tobytes())
    src.putpalette(palette.tobytes())
    alphas = (
        np.array([0, 80, 160, 255], dtype=np.uint8) if per_index else np.array([0, 255, 255, 255], np.uint8)
    )
    transparency = alphas.tobytes() if per_index else 0
    src.save(tmp_path / "pt.png", transparency=transparency)

    loaded = load_image(tmp_path / "pt.png")
    assert loaded.mode == "RGBA"
    got = np.asarray(loaded)
    np.testing.assert_array_equal(got[..., 3], alphas[index])
    opaque = alphas[index] > 0
    np.testing.assert_array_equal(got[..., :3][opaque], palette[index][opaque])


def test_gif_first_frame_with_transparency(tmp_path: Path) -> None:
    palette = [0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * (253 * 3)
    frames = [Image.new("P", (10, 6), 1), Image.new("P", (10, 6), 2)]  # red, then green
    for frame in frames:
        frame.putpalette(palette)
    frames[0].putpixel((0, 0), 0)
    frames[0].save(
        tmp_path / "anim.gif", save_all=True, append_images=frames[1:], transparency=0, duration=50
    )
    assert Image.open(tmp_path / "anim.gif").n_frames == 2

    loaded = load_image(tmp_path / "anim.gif")
    assert loaded.mode == "RGBA" and loaded.size == (10, 6)
    got = np.asarray(loaded)
    assert got[0, 0, 3] == 0
    np.testing.assert_array_equal(got[3, 5], [255, 0, 0, 255])


def test_bilevel_becomes_l(tmp_path: Path) -> None:
    bits = RNG.integers(0, 2, size=(9, 13)).astype(bool)
    src = Image.frombytes("1", (13, 9), np.packbits(bits, axis=1).tobytes())
    src.save(tmp_path / "one.png")

    loaded = load_image(tmp_path / "one.png")
    assert loaded.mode == "L"
    np.testing.assert_array_equal(np.asarray(loaded), np.where(bits, 255, 0))


def test_cmyk_becomes_rgb(tmp_path: Path) -> None:
    cmyk = RNG.integers(0, 256, size=(12, 10, 4), dtype=np.uint8)
    Image.frombytes("CMYK", (10, 12), cmyk.tobytes()).save(tmp_path / "c.tif")

    loaded = load_image(tmp_path / "c.tif")
    assert loaded.mode == "RGB"
    np.testing.assert_array_equal(
        np.asarray(loaded), np.asarray(Image.frombytes("CMYK", (10, 12), cmyk.tobytes()).convert("RGB"))
    )


def test_cmyk_jpeg(tmp_path: Path) -> None:
    cmyk = np.zeros((16, 16, 4), dtype=np.uint8)
    cmyk[..., 0] = 255  # pure cyan ink -> RGB (0, 255, 255)
    Image.frombytes("CMYK", (16, 16), cmyk.tobytes()).save(tmp_path / "c.jpg", quality=95)
    loaded = load_image(tmp_path / "c.jpg")
    assert loaded.mode == "RGB"
    assert np.abs(np.asarray(loaded).astype(int) - [0, 255, 255]).max() <= 6


# ------------------------------------------------------------------------------------------- 16-bit


def test_16bit_png_exact_through_array_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "gray16.png"
    path.write_bytes(_png16_gray(U16_VALUES))

    loaded = load_image(path)
    assert loaded.mode == "I;16"
    np.testing.assert_array_equal(np.asarray(loaded), U16_VALUES)

    arr = to_array(loaded)
    assert arr.dtype == np.float32 and arr.shape == (3, 6, 1)
    np.testing.assert_allclose(arr[..., 0], U16_VALUES / 65535.0, rtol=0, atol=1e-7)

    rebuilt = from_array(arr, "I;16")
    assert rebuilt.mode == "I;16"
    out = save_image(rebuilt, tmp_path / "gray16_out.png")
    width, height, depth, color = _png_ihdr(out.read_bytes())
    assert (width, height, depth, color) == (6, 3, 16, 0)

    again = load_image(out)
    assert again.mode == "I;16"
    np.testing.assert_array_equal(np.asarray(again), U16_VALUES)


def test_every_16bit_and_8bit_value_survives_to_array_and_back() -> None:
    every16 = np.arange(65536, dtype=np.uint16).reshape(256, 256)
    rebuilt = from_array(to_array(load_image(every16)), "I;16")
    np.testing.assert_array_equal(np.asarray(rebuilt), every16)
    every8 = np.arange(256, dtype=np.uint8).reshape(16, 16)
    np.testing.assert_array_equal(np.asarray(from_array(to_array(load_image(every8)), "L")), every8)


def test_16bit_png_written_from_numpy_via_pil(tmp_path: Path) -> None:
    Image.fromarray(U16_VALUES).save(tmp_path / "np16.png")
    assert _png_ihdr((tmp_path / "np16.png").read_bytes())[2] == 16
    loaded = load_image(tmp_path / "np16.png")
    assert loaded.mode == "I;16"
    np.testing.assert_array_equal(np.asarray(loaded), U16_VALUES)


@pytest.mark.parametrize("mode", ["I;16B", "I;16L"])
def test_16bit_variants_keep_values(mode: str) -> None:
    dtype = ">u2" if mode == "I;16B" else "<u2"
    src = Image.frombytes(mode, (6, 3), U16_VALUES.astype(dtype).tobytes())
    loaded = load_image(src)
    assert loaded.mode == "I;16"
    np.testing.assert_array_equal(np.asarray(loaded), U16_VALUES)


def test_32bit_int_is_clipped_to_16bit() -> None:
    values = np.array([[-5, 0, 300, 70000]], dtype=np.int32)
    loaded = load_image(Image.frombytes("I", (4, 1), values.astype("<i4").tobytes()))
    assert loaded.mode == "I;16"
    np.testing.assert_array_equal(np.asarray(loaded), [[0, 0, 300, 65535]])


def test_float_mode_fits_or_fails() -> None:
    fits = np.array([[0.0, 1.4, 1000.6, 65535.0]], dtype=np.float32)
    loaded = load_image(Image.frombytes("F", (4, 1), fits.astype("<f4").tobytes()))
    assert loaded.mode == "I;16"
    np.testing.assert_array_equal(np.asarray(loaded), [[0, 1, 1001, 65535]])

    too_big = np.array([[0.0, 70000.0]], dtype=np.float32)
    with pytest.raises(ImageLoadError, match="65535"):
        load_image(Image.frombytes("F", (2, 1), too_big.astype("<f4").tobytes()), name="float.tif")


# ----------------------------------------------------------------------------------- other PIL modes


def test_premultiplied_and_padded_modes() -> None:
    rgba = Image.new("RGBA", (4, 2), (200, 100, 50, 128))
    loaded = load_image(rgba.convert("RGBa"))
    assert loaded.mode == "RGBA"
    assert np.abs(np.asarray(loaded).astype(int) - [200, 100, 50, 128]).max() <= 2

    la = load_image(Image.new("LA", (3, 3), (120, 64)).convert("La"))
    assert la.mode == "LA"
    assert np.abs(np.asarray(la).astype(int) - [120, 64]).max() <= 4

    assert load_image(Image.new("RGB", (3, 3), (1, 2, 3)).convert("RGBX")).mode == "RGB"
    assert load_image(Image.new("PA", (3, 3))).mode == "RGBA"


@pytest.mark.parametrize("mode", ["YCbCr", "HSV", "LAB"])
def test_colour_spaces_become_rgb(mode: str) -> None:
    red = Image.new("RGB", (4, 4), (255, 0, 0))
    source = red.convert(mode) if mode != "LAB" else Image.new("LAB", (4, 4), (138, 208, 195))
    loaded = load_image(source)
    assert loaded.mode == "RGB"
    r, g, b = np.asarray(loaded)[0, 0].astype(int)
    assert r > 200 and g < 60 and b < 60


def test_pil_source_is_not_modified_or_shared() -> None:
    src = Image.new("P", (5, 5), 1)
    src.putpalette([0, 0, 0, 9, 8, 7] + [0] * 762)
    loaded = load_image(src)
    assert src.mode == "P" and loaded.mode == "RGB"
    same_mode = Image.new("RGB", (5, 5))
    assert load_image(same_mode) is not same_mode


# ------------------------------------------------------------------------------------- EXIF orientation


def _quadrants(height: int, width: int) -> np.ndarray:
    """Four flat colours in 16-pixel-aligned quadrants, so JPEG keeps them recognisable."""
    arr = np.zeros((height, width, 3), dtype=np.uint8)
    h, w = height // 2, width // 2
    arr[:h, :w] = (255, 0, 0)
    arr[:h, w:] = (0, 255, 0)
    arr[h:, :w] = (0, 0, 255)
    arr[h:, w:] = (255, 255, 0)
    return arr


def test_jpeg_exif_orientation_6_is_applied(tmp_path: Path) -> None:
    stored = _quadrants(32, 64)
    exif = Image.Exif()
    exif[ORIENTATION] = 6
    Image.fromarray(stored).save(tmp_path / "rot.jpg", exif=exif.tobytes(), quality=95)

    loaded = load_image(tmp_path / "rot.jpg")
    assert loaded.size == (32, 64)  # width, height swapped
    expected = np.rot90(stored, k=-1)  # orientation 6: rotate 90 degrees clockwise to display
    diff = np.abs(np.asarray(loaded).astype(int) - expected.astype(int))
    assert diff.mean() < 6
    assert loaded.getexif().get(ORIENTATION) in (None, 1)

    out = save_image(loaded, tmp_path / "upright.jpg")
    assert load_image(out).size == (32, 64)


EXIF_REFERENCE = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.transpose(1, 0, 2),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: a[::-1, ::-1].transpose(1, 0, 2),
    8: lambda a: np.rot90(a, 1),
}


@pytest.mark.parametrize("orientation", sorted(EXIF_REFERENCE))
@pytest.mark.parametrize("fmt", ["png", "tif"])
def test_every_exif_orientation_lossless(tmp_path: Path, orientation: int, fmt: str) -> None:
    stored = _rgb(5, 8)
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    Image.fromarray(stored).save(tmp_path / f"o.{fmt}", exif=exif)

    loaded = load_image(tmp_path / f"o.{fmt}")
    np.testing.assert_array_equal(np.asarray(loaded), EXIF_REFERENCE[orientation](stored))
    assert loaded.getexif().get(ORIENTATION) in (None, 1)


def test_orientation_applied_to_pil_source_once() -> None:
    stored = _rgb(4, 6)
    buf = io.BytesIO()
    exif = Image.Exif()
    exif[ORIENTATION] = 8
    Image.fromarray(stored).save(buf, "PNG", exif=exif)
    opened = Image.open(io.BytesIO(buf.getvalue()))
    first = load_image(opened)
    np.testing.assert_array_equal(np.asarray(first), np.rot90(stored, 1))
    np.testing.assert_array_equal(np.asarray(load_image(first)), np.rot90(stored, 1))


# ------------------------------------------------------------------------------------------- sources


def test_sources_bytes_bytearray_memoryview_stream_and_paths(tmp_path: Path) -> None:
    pixels = _rgb()
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "PNG")
    data = buf.getvalue()
    path = tmp_path / "src.png"
    path.write_bytes(data)

    written = io.BytesIO()
    written.write(data)  # position left at the end: streams are read from their start, as Pillow does
    sources = [data, bytearray(data), memoryview(data), io.BytesIO(data), written, path, str(path)]
    for source in sources:
        loaded = load_image(source)
        assert loaded.mode == "RGB"
        np.testing.assert_array_equal(np.asarray(loaded), pixels)
    with open(path, "rb") as fh:
        np.testing.assert_array_equal(np.asarray(load_image(fh)), pixels)
        assert not fh.closed


def test_loaded_image_is_independent_of_the_file(tmp_path: Path) -> None:
    path = tmp_path / "gone.png"
    Image.fromarray(_rgb()).save(path)
    loaded = load_image(path)
    os.remove(path)
    assert np.asarray(loaded.transpose(Image.Transpose.ROTATE_90)).shape == (32, 24, 3)


@pytest.mark.parametrize(
    ("shape", "mode"),
    [((6, 5), "L"), ((6, 5, 1), "L"), ((6, 5, 2), "LA"), ((6, 5, 3), "RGB"), ((6, 5, 4), "RGBA")],
)
def test_numpy_uint8_sources(shape: tuple[int, ...], mode: str) -> None:
    arr = RNG.integers(0, 256, size=shape, dtype=np.uint8)
    loaded = load_image(arr)
    assert loaded.mode == mode and loaded.size == (5, 6)
    np.testing.assert_array_equal(np.asarray(loaded).reshape(shape), arr)


def test_numpy_uint16_and_float_sources() -> None:
    gray16 = load_image(U16_VALUES)
    assert gray16.mode == "I;16"
    np.testing.assert_array_equal(np.asarray(gray16), U16_VALUES)

    rgb16 = RNG.integers(0, 65536, size=(4, 5, 3)).astype(np.uint16)
    loaded = load_image(rgb16)
    assert loaded.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(loaded), np.floor(rgb16 / 257.0 + 0.5).astype(np.uint8))

    floats = RNG.random((4, 5, 3)).astype(np.float32)
    loaded = load_image(floats)
    assert loaded.mode == "RGB"
    assert np.abs(np.asarray(loaded).astype(float) - floats * 255).max() <= 0.5 + 1e-4

    assert np.asarray(load_image(np.array([[True, False]]))).tolist() == [[255, 0]]


@pytest.mark.parametrize(
    "array",
    [
        np.zeros((4,), np.uint8),
        np.zeros((4, 4, 5), np.uint8),
        np.zeros((2, 4, 4, 3), np.uint8),
        np.zeros((0, 4, 3), np.uint8),
        np.zeros((4, 4), np.int64),
        np.zeros((4, 4), np.complex64),
        np.full((4, 4), 2.0, np.float32),
        np.full((4, 4), -0.5, np.float64),
        np.full((4, 4), np.nan, np.float32),
    ],
    ids=["1d", "5ch", "4d", "empty", "int64", "complex", "float>1", "float<0", "nan"],
)
def test_numpy_bad_arrays(array: np.ndarray) -> None:
    with pytest.raises(ImageLoadError, match="<array>"):
        load_image(array)


def test_unsupported_source_type() -> None:
    with pytest.raises(ImageLoadError, match="int"):
        load_image(42)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------- limits


def _zero_bomb_png(side: int) -> bytes:
    """A valid 1-bit PNG of zeros, side x side: a few dozen KB of file that decode to side**2 pixels."""
    row = b"\x00" * (1 + (side + 7) // 8)
    comp = zlib.compressobj(9)
    idat = b"".join(comp.compress(row) for _ in range(side)) + comp.flush()
    return _png_bytes(side, side, bit_depth=1, color_type=0, idat=idat)


def test_decompression_bomb_png_is_refused(tmp_path: Path) -> None:
    data = _zero_bomb_png(20000)
    assert len(data) < 200_000
    path = tmp_path / "bomb.png"
    path.write_bytes(data)
    before = _pillow_state()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ImageTooLargeError) as info:
            load_image(path)
    message = str(info.value)
    assert "bomb.png" in message and "20000x20000" in message and "100,000,000" in message
    assert _pillow_state() == before


def test_limit_is_checked_from_header_before_decoding() -> None:
    # IHDR says 20000x12000 but there is no pixel data at all: decoding would fail as truncated.
    header_only = _png_bytes(20000, 12000, idat=None)
    with pytest.raises(ImageTooLargeError, match="20000x12000"):
        load_image(header_only, name="huge.png")
    with pytest.raises(ImageLoadError) as info:
        load_image(header_only, name="huge.png", max_pixels=None)
    assert not isinstance(info.value, ImageTooLargeError)


def test_custom_limit_names_size_limit_and_file(tmp_path: Path) -> None:
    path = tmp_path / "small.png"
    Image.fromarray(_rgb(30, 40)).save(path)
    with pytest.raises(ImageTooLargeError) as info:
        load_image(path, max_pixels=1000)
    message = str(info.value)
    assert "small.png" in message and "40x30" in message and "1,000" in message
    assert load_image(path, max_pixels=1200).size == (40, 30)
    with pytest.raises(ImageTooLargeError, match="<array>"):
        load_image(np.zeros((30, 40), np.uint8), max_pixels=1000)
    with pytest.raises(ImageTooLargeError):
        load_image(Image.new("RGB", (40, 30)), max_pixels=1000)


def test_gif_whose_frame_outgrows_its_screen_is_refused() -> None:
    buf = io.BytesIO()
    Image.new("P", (300, 300), 1).save(buf, "GIF")
    data = bytearray(buf.getvalue())
    data[6:10] = struct.pack("<HH", 10, 10)  # logical screen claims 10x10; the frame inside is 300x300
    with pytest.raises(ImageTooLargeError, match="300x300"):
        load_image(bytes(data), max_pixels=50_000, name="liar.gif")


def test_our_limit_overrides_pillows_global(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "pillow_limit.png"
    Image.fromarray(_rgb(64, 64)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(Image.DecompressionBombError):  # plain Pillow refuses this image now
        Image.open(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_image(path, max_pixels=10_000).size == (64, 64)
        assert load_image(path, max_pixels=None).size == (64, 64)
    assert Image.MAX_IMAGE_PIXELS == 1000


def test_concurrent_loads_restore_pillow_globals(tmp_path: Path) -> None:
    path = tmp_path / "c.png"
    Image.fromarray(_rgb(40, 50)).save(path)
    before = _pillow_state()

    def one(limit: int) -> str:
        try:
            return load_image(path, max_pixels=limit).mode
        except ImageTooLargeError:
            return "refused"

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(one, [1000, 10_000] * 8))
    assert results == ["refused", "RGB"] * 8
    assert _pillow_state() == before


def _watch_pillow(work: Callable[[], None]) -> tuple[set[int | None], list[bool], bool]:
    """Run ``work`` while another thread keeps decoding a small bomb through plain PIL and reading its globals.

    Returns the values of ``Image.MAX_IMAGE_PIXELS`` that thread saw, whether each of its opens was refused, and
    whether it ever saw a warnings filter turning DecompressionBombWarning into an error.
    """
    bomb = _zero_bomb_png(2000)  # 4,000,000 pixels in a few KB
    seen: set[int | None] = set()
    refused: list[bool] = []
    error_filter = False
    stop = threading.Event()

    def watch() -> None:
        nonlocal error_filter
        while not stop.is_set():
            seen.add(Image.MAX_IMAGE_PIXELS)
            error_filter |= any(f[0] == "error" and f[2] is Image.DecompressionBombWarning for f in warnings.filters)
            try:
                Image.open(io.BytesIO(bomb)).close()
                refused.append(False)
            except Image.DecompressionBombError:
                refused.append(True)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads often, so the watcher runs in the middle of every load
    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        work()
    finally:
        stop.set()
        watcher.join()
        sys.setswitchinterval(interval)
    return seen, refused, error_filter


def test_other_threads_keep_pillows_bomb_limit(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    pillow_limit = 10_000  # stands for Pillow's default, so that a small file is "large" for Pillow
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", pillow_limit)
    small, large = tmp_path / "small.png", tmp_path / "large.png"
    Image.fromarray(_rgb(60, 80)).save(small)  # 4,800 pixels: within Pillow's limit
    Image.fromarray(_rgb(150, 200)).save(large)  # 30,000 pixels: Pillow alone refuses it (over twice its limit)

    def usual_loads() -> None:
        for _ in range(40):
            assert load_image(small, max_pixels=5_000).size == (80, 60)
            with pytest.raises(ImageTooLargeError):
                load_image(large, max_pixels=5_000)

    seen, refused, error_filter = _watch_pillow(usual_loads)
    assert seen == {pillow_limit}  # a limit at or below Pillow's never touches Pillow's global
    assert refused and all(refused) and not error_filter

    def large_limit_loads() -> None:
        for _ in range(40):
            assert load_image(large, max_pixels=1_000_000).size == (200, 150)

    seen, refused, error_filter = _watch_pillow(large_limit_loads)
    assert None not in seen and min(v for v in seen if v is not None) >= pillow_limit
    assert seen <= {pillow_limit, 1_000_000}  # raised to the caller's limit at most, never disabled
    assert refused and all(refused) and not error_filter  # 4,000,000 pixels is over even the raised limit
    assert pillow_limit == Image.MAX_IMAGE_PIXELS  # restored


def test_image_within_our_limit_but_over_pillows_gives_no_warning(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    path = tmp_path / "between.png"
    Image.fromarray(_rgb(30, 40)).save(path)  # 1,200 pixels: Pillow itself would only warn
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert load_image(path, max_pixels=10_000).size == (40, 30)
        with pytest.raises(ImageTooLargeError):
            load_image(path, max_pixels=1_100)
    assert not [w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)]
    assert Image.MAX_IMAGE_PIXELS == 1000


def test_too_large_error_carries_size_and_limit(tmp_path: Path) -> None:
    path = tmp_path / "small.png"
    Image.fromarray(_rgb(30, 40)).save(path)
    with pytest.raises(ImageTooLargeError) as info:
        load_image(path, max_pixels=1000)
    assert (info.value.width, info.value.height, info.value.limit) == (40, 30, 1000)
    with pytest.raises(ImageTooLargeError) as info:
        load_image(_zero_bomb_png(20000), name="bomb.png")  # also over twice Pillow's own limit
    assert (info.value.width, info.value.height, info.value.limit) == (20000, 20000, DEFAULT_MAX_PIXELS)
    with pytest.raises(ImageTooLargeError) as info:
        load_image(np.zeros((30, 40), np.uint8), max_pixels=1000)
    assert (info.value.width, info.value.height, info.value.limit) == (40, 30, 1000)
    plain = ImageTooLargeError("just a message")  # still constructible the old way
    assert str(plain) == "just a message" and plain.width is None and plain.limit is None


def test_invalid_max_pixels() -> None:
    with pytest.raises(SRError):
        load_image(np.zeros((2, 2), np.uint8), max_pixels=0)


# ------------------------------------------------------------------------------------------- failures


def _assert_load_error(source: object, needle: str, **kwargs: object) -> ImageLoadError:
    with pytest.raises(ImageLoadError) as info:
        load_image(source, **kwargs)  # type: ignore[arg-type]
    assert type(info.value) is ImageLoadError
    assert needle in str(info.value)
    return info.value


def test_text_file(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello, not an image\n")
    err = _assert_load_error(path, "notes.txt")
    assert "not an image" in str(err) and err.__cause__ is not None


def test_empty_file_and_empty_bytes(tmp_path: Path) -> None:
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    assert "empty" in str(_assert_load_error(path, "empty.png"))
    assert "empty" in str(_assert_load_error(b"", "<bytes>"))
    assert "empty" in str(_assert_load_error(io.BytesIO(), "<bytes>"))


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fmt: str) -> None:
    buf = io.BytesIO()
    Image.fromarray(_rgb(64, 64)).save(buf, fmt)
    data = buf.getvalue()
    path = tmp_path / f"cut.{fmt.lower()}"
    path.write_bytes(data[: len(data) // 2])
    assert Image.open(path).size == (64, 64)  # the header alone is fine; only decoding can find the cut

    err = _assert_load_error(path, f"cut.{fmt.lower()}")
    assert "truncated" in str(err) and isinstance(err.__cause__, OSError)
    # Even if some other code enabled Pillow's tolerant mode, a cut file must not load as a half image.
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    _assert_load_error(path, f"cut.{fmt.lower()}")
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True


def test_truncated_bytes_use_given_name() -> None:
    buf = io.BytesIO()
    Image.fromarray(_rgb()).save(buf, "PNG")
    cut = buf.getvalue()[:-40]
    _assert_load_error(cut, "<bytes>")
    _assert_load_error(cut, "upload.png", name="upload.png")


def test_eps_is_not_handed_to_ghostscript(tmp_path: Path) -> None:
    path = tmp_path / "vector.eps"
    Image.new("RGB", (8, 8), (1, 2, 3)).save(path)
    assert Image.open(path).format == "EPS"  # Pillow itself would open it and call Ghostscript to decode
    err = _assert_load_error(path, "vector.eps")
    assert "not an image" in str(err)


def test_missing_path_and_directory(tmp_path: Path) -> None:
    missing = tmp_path / "nope.png"
    err = _assert_load_error(missing, "nope.png")
    assert "not found" in str(err) and isinstance(err.__cause__, FileNotFoundError)
    folder = tmp_path / "a_folder.png"
    folder.mkdir()
    assert "directory" in str(_assert_load_error(folder, "a_folder.png"))


def test_corrupt_pixel_data(tmp_path: Path) -> None:
    path = tmp_path / "garbage_idat.png"
    path.write_bytes(_png_bytes(8, 8, idat=b"this is not zlib data"))
    _assert_load_error(path, "garbage_idat.png")


# ------------------------------------------------------------------------------------------- saving


def test_save_rgba_png_keeps_alpha(tmp_path: Path) -> None:
    pixels = RNG.integers(0, 256, size=(7, 9, 4), dtype=np.uint8)
    out = save_image(Image.fromarray(pixels), tmp_path / "a" / "b" / "alpha.PNG")
    assert out == tmp_path / "a" / "b" / "alpha.PNG"
    assert _png_ihdr(out.read_bytes())[3] == 6  # colour type 6: RGB + alpha
    reread = Image.open(out)
    assert reread.mode == "RGBA"
    np.testing.assert_array_equal(np.asarray(reread), pixels)


def test_save_jpeg_flattens_alpha_over_white(tmp_path: Path) -> None:
    rgba = np.zeros((16, 32, 4), dtype=np.uint8)
    rgba[:, :16] = (255, 0, 0, 255)  # opaque red
    rgba[:, 16:] = (0, 0, 255, 0)  # fully transparent blue
    out = save_image(Image.fromarray(rgba), tmp_path / "flat.jpg")
    reread = Image.open(out)
    assert reread.format == "JPEG" and reread.mode == "RGB"
    got = np.asarray(reread).astype(int)
    assert np.abs(got[4:12, 2:10] - [255, 0, 0]).max() <= 8
    assert np.abs(got[4:12, 22:30] - [255, 255, 255]).max() <= 8

    la = Image.frombytes("LA", (2, 1), bytes([0, 255, 0, 0])).resize((32, 16), Image.Resampling.NEAREST)
    reread_la = Image.open(save_image(la, tmp_path / "la.jpeg"))
    assert reread_la.mode == "L"
    gray = np.asarray(reread_la).astype(int)
    assert gray[8, 4] <= 8 and gray[8, 28] >= 247


def test_save_16bit_to_8bit_format_scales(tmp_path: Path) -> None:
    img = from_array(np.full((8, 8), 0.5, np.float32), "I;16")
    reread = Image.open(save_image(img, tmp_path / "g.bmp"))
    assert reread.mode == "L"
    assert np.asarray(reread)[0, 0] == round(32768 / 257)


def test_save_other_formats(tmp_path: Path) -> None:
    rgba = Image.fromarray(RNG.integers(0, 256, size=(8, 8, 4), dtype=np.uint8))
    for name in ("x.webp", "x.tif", "x.bmp", "x.gif", "x.tga"):
        out = save_image(rgba, tmp_path / name)
        assert load_image(out).size == (8, 8)
    gray16 = from_array(np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8), "I;16")
    tif = load_image(save_image(gray16, tmp_path / "g16.tiff"))
    assert tif.mode == "I;16"
    np.testing.assert_array_equal(np.asarray(tif), np.asarray(gray16))


def test_save_overwrite_rules(tmp_path: Path) -> None:
    target = tmp_path / "exists.png"
    save_image(Image.new("RGB", (4, 4), (1, 2, 3)), target)
    before = target.read_bytes()

    with pytest.raises(SRError, match="exists.png") as info:
        save_image(Image.new("RGB", (4, 4), (9, 9, 9)), target, overwrite=False)
    assert isinstance(info.value.__cause__, FileExistsError)
    assert target.read_bytes() == before

    save_image(Image.new("RGB", (4, 4), (9, 9, 9)), target)
    assert np.asarray(Image.open(target))[0, 0].tolist() == [9, 9, 9]

    fresh = save_image(Image.new("L", (2, 2)), tmp_path / "fresh.png", overwrite=False)
    assert fresh.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exists.png", "fresh.png"]


def test_failed_save_leaves_existing_file_and_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "keep.jpg"
    save_image(Image.new("RGB", (8, 8), (10, 20, 30)), target)
    before = target.read_bytes()
    too_wide = Image.new("RGB", (70_000, 1))  # JPEG cannot hold more than 65,535 columns: the encoder fails
    with pytest.raises(SRError, match="keep.jpg"):
        save_image(too_wide, target)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["keep.jpg"]


def test_save_bad_targets(tmp_path: Path) -> None:
    img = Image.new("RGB", (2, 2))
    with pytest.raises(SRError, match="suffix"):
        save_image(img, tmp_path / "no_suffix")
    with pytest.raises(SRError, match="suffix"):
        save_image(img, tmp_path / "weird.notaformat")
    (tmp_path / "dir.png").mkdir()
    with pytest.raises(SRError, match="directory"):
        save_image(img, tmp_path / "dir.png")
    with pytest.raises(SRError):
        save_image(np.zeros((2, 2), np.uint8), tmp_path / "arr.png")  # type: ignore[arg-type]


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
def test_saved_file_permissions_follow_umask(tmp_path: Path) -> None:
    out = save_image(Image.new("L", (2, 2)), tmp_path / "perm.png")
    mask = os.umask(0)
    os.umask(mask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~mask


# ------------------------------------------------------------------------------------- array helpers


def test_from_array_clips_and_rounds() -> None:
    arr = np.array([[-0.3, 0.0, 0.5 / 255, 0.49 / 255, 1.0, 1.7]], np.float32)
    assert np.asarray(from_array(arr, "L")).tolist() == [[0, 0, 1, 0, 255, 255]]
    assert np.asarray(from_array(arr[..., None], "L")).tolist() == [[0, 0, 1, 0, 255, 255]]
    i16 = np.asarray(from_array(np.array([[0.5 / 65535, 1.0, 2.0]]), "I;16"))
    assert i16.tolist() == [[1, 65535, 65535]]


@pytest.mark.parametrize(
    ("array", "mode"),
    [
        (np.zeros((4, 4, 3), np.float32), "RGBA"),
        (np.zeros((4, 4), np.float32), "RGB"),
        (np.zeros((4, 4, 3), np.uint8), "RGB"),
        (np.zeros((4, 4, 3), np.float32), "CMYK"),
        (np.full((4, 4), np.nan, np.float32), "L"),
    ],
    ids=["channels", "2d-for-rgb", "uint8", "bad-mode", "nan"],
)
def test_from_array_rejects(array: np.ndarray, mode: str) -> None:
    with pytest.raises(SRError):
        from_array(array, mode)


def test_to_array_accepts_non_canonical_modes() -> None:
    arr = to_array(Image.new("1", (3, 2), 1))
    assert arr.shape == (2, 3, 1) and float(arr.min()) == 1.0


def test_to_uint8() -> None:
    rgba = RNG.integers(0, 256, size=(5, 6, 4), dtype=np.uint8)
    out = to_uint8(Image.fromarray(rgba))
    assert out.dtype == np.uint8 and out.shape == (5, 6, 3)
    np.testing.assert_array_equal(out, rgba[..., :3])

    la = RNG.integers(0, 256, size=(5, 6, 2), dtype=np.uint8)
    np.testing.assert_array_equal(to_uint8(Image.frombytes("LA", (6, 5), la.tobytes())), la[..., 0])

    gray = to_uint8(load_image(U16_VALUES))
    assert gray.shape == U16_VALUES.shape and gray.dtype == np.uint8
    np.testing.assert_array_equal(gray, np.floor(U16_VALUES / 257.0 + 0.5).astype(np.uint8))
    gray[0, 0] = 1  # writable


def test_describe() -> None:
    assert describe(Image.new("RGBA", (640, 480))) == "RGBA 640x480"
    assert describe(Image.new("I;16", (3, 2))) == "I;16 3x2"
    assert describe(np.zeros((2, 3, 4), np.float32)) == "float32 array 2x3x4"


def test_save_image_quality_for_lossy_formats(tmp_path):
    y, x = np.mgrid[0:64, 0:64]
    image = Image.fromarray(np.stack([x * 4, y * 4, (x * y) % 256], axis=2).astype(np.uint8))
    # Independent reference: Pillow writing JPEG at the same quality gives the same pixels.
    image.save(tmp_path / "ref.jpg", quality=30)
    saved = save_image(image, tmp_path / "q30.jpg", quality=30)
    np.testing.assert_array_equal(np.asarray(Image.open(saved)), np.asarray(Image.open(tmp_path / "ref.jpg")))
    default = save_image(image, tmp_path / "q95.jpg")
    assert saved.stat().st_size < default.stat().st_size
    png_with_quality = save_image(image, tmp_path / "a.png", quality=30).read_bytes()
    assert png_with_quality == save_image(image, tmp_path / "b.png").read_bytes()  # lossless formats ignore it
    for bad in (0, 101, 50.0, True):
        with pytest.raises(SRError, match="quality"):
            save_image(image, tmp_path / "bad.jpg", quality=bad)
    assert not (tmp_path / "bad.jpg").exists()


def test_png_level_1_is_lossless_and_smaller_than_plain_zlib_level_1(tmp_path):
    """Level 1 (the CLI default) writes with zlib's run-length strategy: same pixels, smaller than LZ77 level 1."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:256, 0:256]
    smooth = np.stack([x, y, (x + y) // 2], axis=2) + rng.normal(0, 2, (256, 256, 3))
    graphic = np.full((256, 256, 3), 255, np.uint8)
    for i in range(0, 256, 32):
        graphic[i : i + 20, i : i + 40] = (i, 80, 200)
        graphic[i + 24 : i + 26, 8:200] = 0
    images = {
        "smooth": Image.fromarray(np.clip(smooth, 0, 255).astype(np.uint8)),
        "graphic": Image.fromarray(graphic),
        "gray16": Image.fromarray((x * 256 + y).astype(np.uint16)),
    }
    for name, image in images.items():
        saved = save_image(image, tmp_path / f"{name}.png", png_compression=1)
        reference = io.BytesIO()
        image.save(reference, format="PNG", compress_level=1)
        np.testing.assert_array_equal(np.asarray(Image.open(saved)), np.asarray(image))
        if name != "gray16":
            assert saved.stat().st_size < reference.tell(), name
