"""Fast PNG writer for SR outputs: Paeth-filtered row ranges deflated on several threads into one zlib stream.

Pillow filters and deflates a PNG on one thread, choosing a filter per row by trying all five; at its fastest level
that is most of a 1024x1024 x4 output's save time. Here each thread filters a contiguous range of rows with the
Paeth filter (the one Pillow picks for nearly every row of a photo, and exact on flat or blocky graphics) and
deflates it with zlib's run-length strategy, ending its piece on a byte boundary with a sync flush, so the pieces
concatenate into one valid zlib stream (as pigz does); the Adler-32 checksums of the pieces are combined.
Files come out within about 1% of Pillow's level-1 size.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
from PIL import Image

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
ZLIB_HEADER = b"\x78\x01"  # deflate, 32 KiB window, fastest-level flag; (0x78 * 256 + 0x01) % 31 == 0
MAX_THREADS = 4
MIN_RANGE_BYTES = 1 << 20  # a thread per at least this many raw bytes: below, starting it costs more than it saves
BLOCK_BYTES = 1 << 16  # rows filtered at a time, so the filter's int16 temporaries stay in cache (fastest here)
IDAT_BYTES = 1 << 20
WHOLE_COPY_BYTES = 64 << 20  # PIL images up to this size are copied out whole (well under 1 ms per MB); larger
# ones are read in row blocks, which bounds the memory but serialises the threads on Pillow's crop
_COLOUR_TYPES = {1: 0, 2: 4, 3: 2, 4: 6}  # channels -> grey, grey + alpha, RGB, RGBA
_IMAGE_MODES = ("L", "LA", "RGB", "RGBA", "I;16")
_ADLER_BASE = 65521
_PAETH = 4


@dataclass(frozen=True)
class _ByteRows:
    """An image's rows in PNG byte order, read a block at a time so the writer never copies the whole image."""

    read: Callable[[int, int], np.ndarray]  # (start, stop) -> (stop - start, stride) uint8
    width: int
    height: int
    depth: int
    channels: int

    @property
    def stride(self) -> int:
        return self.width * self.channels * self.depth // 8


def write_png(
    file: BinaryIO, pixels: np.ndarray | Image.Image, *, icc_profile: bytes | None = None, threads: int | None = None
) -> None:
    """Write ``pixels`` to ``file`` as a PNG: a uint8 (H, W) or (H, W, 1-4 channels) array, a uint16 (H, W) grey
    array, or a PIL image in mode L, LA, RGB, RGBA or I;16 (over :data:`WHOLE_COPY_BYTES` read in row blocks).

    ``icc_profile`` is embedded as an iCCP chunk. ``threads`` defaults to the CPUs this process may use, at most
    :data:`MAX_THREADS`, and never more than one per :data:`MIN_RANGE_BYTES` of pixels.
    """
    rows = _image_rows(pixels) if isinstance(pixels, Image.Image) else _array_rows(pixels)
    file.write(PNG_SIGNATURE)
    header = struct.pack(">IIBBBBB", rows.width, rows.height, rows.depth, _COLOUR_TYPES[rows.channels], 0, 0, 0)
    _write_chunk(file, b"IHDR", [header])
    if icc_profile:
        _write_chunk(file, b"iCCP", [b"ICC Profile\x00\x00", zlib.compress(icc_profile)])
    pieces = _deflate_ranges(rows, thread_count(rows.height * rows.stride, threads))
    stream = [ZLIB_HEADER, *(piece for piece, _, _ in pieces), _adler_bytes(pieces)]
    for parts in _chunked(stream, IDAT_BYTES):
        _write_chunk(file, b"IDAT", parts)
    _write_chunk(file, b"IEND", [])


def _array_rows(pixels: np.ndarray) -> _ByteRows:
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    if pixels.ndim != 3 or pixels.shape[2] not in _COLOUR_TYPES or 0 in pixels.shape:
        raise ValueError(f"write_png expects (H, W) or (H, W, 1-4) pixels, got shape {pixels.shape}")
    height, width, channels = pixels.shape
    if pixels.dtype == np.uint8:
        return _ByteRows(lambda a, b: np.ascontiguousarray(pixels[a:b]).reshape(b - a, -1), width, height, 8, channels)
    if pixels.dtype == np.uint16 and channels == 1:

        def read(a: int, b: int) -> np.ndarray:
            return np.ascontiguousarray(pixels[a:b], dtype=">u2").view(np.uint8).reshape(b - a, -1)

        return _ByteRows(read, width, height, 16, 1)
    raise ValueError(f"write_png writes uint8 pixels or uint16 greyscale, got {pixels.dtype} with {channels} channels")


def _image_rows(image: Image.Image) -> _ByteRows:
    if image.mode not in _IMAGE_MODES:
        raise ValueError(f"write_png writes PIL images in mode {', '.join(_IMAGE_MODES)}, got {image.mode}")
    if 0 in image.size:
        raise ValueError(f"write_png expects a non-empty image, got {image.width}x{image.height}")
    first = _array_rows(np.asarray(image.crop((0, 0, image.width, 1))))  # checks the layout on one row
    if image.height * first.stride <= WHOLE_COPY_BYTES:
        return _array_rows(np.asarray(image))

    def read(a: int, b: int) -> np.ndarray:
        return _array_rows(np.asarray(image.crop((0, a, image.width, b)))).read(0, b - a)

    return _ByteRows(read, image.width, image.height, first.depth, first.channels)


def thread_count(raw_bytes: int, threads: int | None = None) -> int:
    """Threads :func:`write_png` uses for ``raw_bytes`` of pixels when asked for ``threads`` (None: the default)."""
    if threads is None:
        available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        threads = min(MAX_THREADS, available)
    return max(1, min(threads, raw_bytes // MIN_RANGE_BYTES))


def _deflate_ranges(rows: _ByteRows, threads: int) -> list[tuple[bytes, int, int]]:
    """(deflated piece, Adler-32, filtered length) for ``threads`` contiguous row ranges, in order."""
    bounds = np.linspace(0, rows.height, threads + 1).astype(int)
    ranges = [(int(a), int(b), b == bounds[-1]) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    if threads == 1:
        return [_deflate_range(rows, *ranges[0])]
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="sr-png") as pool:
        return list(pool.map(lambda r: _deflate_range(rows, *r), ranges))


def _deflate_range(rows: _ByteRows, start: int, stop: int, last: bool) -> tuple[bytes, int, int]:
    """Filter rows ``start:stop`` block by block and deflate them as one raw-deflate piece of the stream."""
    compressor = zlib.compressobj(1, zlib.DEFLATED, -zlib.MAX_WBITS, 9, zlib.Z_RLE)
    block_rows = max(1, BLOCK_BYTES // rows.stride)
    bytes_per_pixel = rows.channels * rows.depth // 8
    parts, adler, length = [], 1, 0
    for top in range(start, stop, block_rows):
        block = rows.read(max(0, top - 1), min(stop, top + block_rows))
        above, block = (block[0], block[1:]) if top else (None, block)
        filtered = paeth_filter(block, above, bytes_per_pixel)
        adler = zlib.adler32(filtered, adler)
        length += filtered.nbytes
        parts.append(compressor.compress(filtered))
    parts.append(compressor.flush(zlib.Z_FINISH if last else zlib.Z_SYNC_FLUSH))
    return b"".join(parts), adler, length


def paeth_filter(rows: np.ndarray, above: np.ndarray | None, bytes_per_pixel: int) -> np.ndarray:
    """PNG scanlines for ``rows`` ((n, stride) uint8): filter byte 4, then each byte minus its Paeth prediction
    from the bytes left, above and above-left (``above``: the row before ``rows[0]``, None for the image's top)."""
    current = rows.astype(np.int16)
    up = np.empty_like(current)
    up[0] = 0 if above is None else above
    up[1:] = current[:-1]
    left = np.zeros_like(current)
    left[:, bytes_per_pixel:] = current[:, :-bytes_per_pixel]
    up_left = np.zeros_like(current)
    up_left[:, bytes_per_pixel:] = up[:, :-bytes_per_pixel]
    from_up = up - up_left  # prediction - left
    from_left = left - up_left  # prediction - up
    dist_left, dist_up = np.abs(from_up), np.abs(from_left)
    dist_up_left = np.abs(from_up + from_left)
    use_left = (dist_left <= dist_up) & (dist_left <= dist_up_left)
    prediction = np.where(use_left, left, np.where(dist_up <= dist_up_left, up, up_left))
    out = np.empty((rows.shape[0], rows.shape[1] + 1), np.uint8)
    out[:, 0] = _PAETH
    np.subtract(current, prediction, out=current)
    out[:, 1:] = current.astype(np.uint8)
    return out


def _adler_bytes(pieces: list[tuple[bytes, int, int]]) -> bytes:
    """Adler-32 of the concatenated filtered data from each piece's own checksum and length (zlib's
    adler32_combine, which Python's zlib does not expose)."""
    total = 1
    for _, adler, length in pieces:
        low = ((total & 0xFFFF) + (adler & 0xFFFF) - 1) % _ADLER_BASE
        high = ((total >> 16) + (adler >> 16) + length * ((total & 0xFFFF) - 1)) % _ADLER_BASE
        total = (high << 16) | low
    return struct.pack(">I", total)


def _chunked(segments: list[bytes], limit: int) -> Iterator[list[memoryview]]:
    """The concatenation of ``segments`` as lists of slices of at most ``limit`` bytes in all, without copying."""
    chunk, size = [], 0
    for segment in segments:
        view = memoryview(segment)
        while view:
            part, view = view[: limit - size], view[limit - size :]
            chunk.append(part)
            size += len(part)
            if size == limit:
                yield chunk
                chunk, size = [], 0
    if chunk:
        yield chunk


def _write_chunk(file: BinaryIO, kind: bytes, parts: list[bytes] | list[memoryview]) -> None:
    crc = zlib.crc32(kind)
    for part in parts:
        crc = zlib.crc32(part, crc)
    file.write(struct.pack(">I", sum(len(part) for part in parts)) + kind)
    for part in parts:
        file.write(part)
    file.write(struct.pack(">I", crc))
