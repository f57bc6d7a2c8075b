"""sr_core.png: files that Pillow and zlib decode back to the exact pixels, filtered as the PNG spec says."""

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageCms

import sr_core.png as png
from sr_core.png import paeth_filter, write_png


def _chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """(type, payload) of every chunk, checking each CRC independently of the writer."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks, pos = [], 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, payload = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert crc == zlib.crc32(kind + payload), kind
        chunks.append((kind, payload))
        pos += 12 + length
    return chunks


def _encode(pixels: np.ndarray, **kwargs) -> bytes:
    buffer = io.BytesIO()
    write_png(buffer, pixels, **kwargs)
    return buffer.getvalue()


def _paeth_reference(raw: bytes, previous: bytes, bpp: int) -> bytes:
    """The PNG specification's PaethPredictor, byte by byte (section 9.4)."""
    out = bytearray()
    for i, x in enumerate(raw):
        a = raw[i - bpp] if i >= bpp else 0
        b = previous[i]
        c = previous[i - bpp] if i >= bpp else 0
        p = a + b - c
        pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
        predictor = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
        out.append((x - predictor) % 256)
    return bytes(out)


@pytest.mark.parametrize(
    ("shape", "dtype"),
    [
        ((1, 1), np.uint8),
        ((3, 5, 3), np.uint8),
        ((67, 41, 4), np.uint8),
        ((50, 33, 2), np.uint8),
        ((40, 29), np.uint16),
        ((31, 17, 1), np.uint8),
    ],  # fmt: skip
)
@pytest.mark.parametrize("threads", [1, 3])
def test_pillow_decodes_the_exact_pixels(shape, dtype, threads, monkeypatch):
    monkeypatch.setattr(png, "MIN_RANGE_BYTES", 64)  # several row ranges even on small images
    monkeypatch.setattr(png, "BLOCK_BYTES", 100)  # several filter blocks per range
    rng = np.random.default_rng(sum(shape))
    pixels = rng.integers(0, np.iinfo(dtype).max + 1, shape, dtype=dtype)
    decoded = np.asarray(Image.open(io.BytesIO(_encode(pixels, threads=threads))))
    np.testing.assert_array_equal(decoded.reshape(pixels.shape).astype(dtype), pixels)


@pytest.mark.parametrize("mode", ["L", "LA", "RGB", "RGBA", "I;16"])
@pytest.mark.parametrize("whole_copy_bytes", [0, 1 << 20])  # read in row blocks / copied out whole
def test_pil_images_give_the_same_file_as_their_pixels(mode, whole_copy_bytes, monkeypatch):
    monkeypatch.setattr(png, "MIN_RANGE_BYTES", 64)
    monkeypatch.setattr(png, "BLOCK_BYTES", 100)
    monkeypatch.setattr(png, "WHOLE_COPY_BYTES", whole_copy_bytes)
    rng = np.random.default_rng(4)
    if mode == "I;16":
        pixels = rng.integers(0, 65536, (45, 31), dtype=np.uint16)
    else:
        pixels = rng.integers(0, 256, (45, 31, len(mode)), dtype=np.uint8).squeeze()
    image = Image.fromarray(pixels)
    assert image.mode == mode
    from_image = _encode(image, threads=3)
    assert from_image == _encode(pixels, threads=3)
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(from_image))).astype(pixels.dtype), pixels)


def test_the_stream_is_one_valid_zlib_stream_with_the_combined_checksum(monkeypatch):
    monkeypatch.setattr(png, "MIN_RANGE_BYTES", 256)
    monkeypatch.setattr(png, "IDAT_BYTES", 1000)  # several IDAT chunks
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, (120, 70, 3), dtype=np.uint8)
    chunks = _chunks(_encode(pixels, threads=4))
    kinds = [kind for kind, _ in chunks]
    assert kinds[0] == b"IHDR" and kinds[-1] == b"IEND" and kinds.count(b"IDAT") > 2
    assert struct.unpack(">IIBBBBB", chunks[0][1]) == (70, 120, 8, 2, 0, 0, 0)
    filtered = zlib.decompress(b"".join(p for kind, p in chunks if kind == b"IDAT"))  # verifies the Adler-32
    scanlines = np.frombuffer(filtered, np.uint8).reshape(120, 1 + 70 * 3)
    assert (scanlines[:, 0] == 4).all()
    previous = bytes(70 * 3)
    for row, line in zip(pixels.reshape(120, -1), scanlines, strict=True):
        assert line[1:].tobytes() == _paeth_reference(row.tobytes(), previous, 3)
        previous = row.tobytes()


def test_paeth_filter_matches_the_specification_on_16_bit_rows():
    rng = np.random.default_rng(2)
    rows = rng.integers(0, 256, (5, 24), dtype=np.uint8)
    above = rng.integers(0, 256, 24, dtype=np.uint8)
    filtered = paeth_filter(rows, above, bytes_per_pixel=2)
    previous = above.tobytes()
    for row, line in zip(rows, filtered, strict=True):
        assert line[0] == 4 and line[1:].tobytes() == _paeth_reference(row.tobytes(), previous, 2)
        previous = row.tobytes()


def test_icc_profile_is_embedded():
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    image = Image.open(io.BytesIO(_encode(np.zeros((4, 4, 3), np.uint8), icc_profile=profile)))
    assert image.info["icc_profile"] == profile


def test_same_size_as_pillow_level_1_on_photo_like_and_graphic_content():
    y, x = np.mgrid[0:256, 0:384]
    rng = np.random.default_rng(3)
    photo = np.clip(np.stack([x, y, (x + y) // 2], axis=2) * 0.6 + rng.normal(0, 3, (256, 384, 3)), 0, 255)
    graphic = np.full((256, 384, 3), 255, np.uint8)
    graphic[40:200:4, 10:300] = (20, 90, 200)
    for pixels in (photo.astype(np.uint8), graphic):
        reference = io.BytesIO()
        Image.fromarray(pixels).save(reference, format="PNG", compress_level=1, compress_type=zlib.Z_RLE)
        assert len(_encode(pixels)) <= 1.03 * reference.tell()


@pytest.mark.parametrize(("shape", "dtype"), [((4, 4, 5), np.uint8), ((4, 4, 3), np.uint16), ((0, 4), np.uint8),
                                              ((4, 4), np.float32), ((4,), np.uint8)])  # fmt: skip
def test_unsupported_arrays_are_refused_clearly(shape, dtype):
    with pytest.raises(ValueError, match="write_png"):
        _encode(np.zeros(shape, dtype))


@pytest.mark.parametrize("image", [Image.new("P", (4, 4)), Image.new("F", (4, 4)), Image.new("RGB", (0, 4))])
def test_unsupported_images_are_refused_clearly(image):
    with pytest.raises(ValueError, match="write_png"):
        _encode(image)
