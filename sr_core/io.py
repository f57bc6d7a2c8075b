"""The one image loader and saver of SR Studio.

Every entry point (CLI, app, trainer, evaluation) reads images through :func:`load_image` so that they all
see the same thing: a fully decoded PIL image in one of :data:`CANONICAL_MODES`, upright (EXIF orientation
applied), checked against a pixel limit before any decoding, and every failure reported as an
:class:`~sr_core.errors.ImageLoadError` that names the file. :func:`save_image` writes atomically.

PIL has no 16-bit colour mode, so 16-bit data survives only as greyscale ``"I;16"``; 16-bit colour arrays are
scaled to 8 bit on input.
"""

from __future__ import annotations

import contextlib
import errno
import io
import logging
import os
import pathlib
import stat
import struct
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from sr_core.atomic import atomic_path
from sr_core.constants import DEFAULT_MAX_PIXELS
from sr_core.errors import ImageLoadError, ImageTooLargeError, SRError
from sr_core.png import write_png

__all__ = [
    "CANONICAL_MODES",
    "DEFAULT_MAX_PIXELS",
    "describe",
    "from_array",
    "load_image",
    "save_image",
    "to_array",
    "to_uint8",
]

logger = logging.getLogger(__name__)

CANONICAL_MODES: tuple[str, ...] = ("L", "LA", "RGB", "RGBA", "I;16")

_CHANNELS = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4, "I;16": 1}
_MODE_FOR_CHANNELS = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}
_ORIENTATION_TAG = 0x0112
_FLOAT_TOLERANCE = 1e-5

# Pillow keeps its decompression-bomb limit and truncated-image switch in process-wide globals. This module leaves
# them alone unless an image needs otherwise (see _pillow_settings); they are changed only while this lock is held,
# and always restored.
_PIL_GLOBALS_LOCK = threading.RLock()
# What Image.open takes to mean "not this format" when it tries one plugin after another.
_NOT_THIS_FORMAT = (SyntaxError, IndexError, TypeError, struct.error)

# Modes each writer accepts without losing data; anything else is converted first (see _fit_mode_for_format).
_WRITABLE_MODES: dict[str, frozenset[str]] = {
    "PNG": frozenset(CANONICAL_MODES),
    "TIFF": frozenset(CANONICAL_MODES),
    "JPEG": frozenset({"L", "RGB"}),
    "JPEG2000": frozenset({"L", "LA", "RGB", "RGBA", "I;16"}),
    "WEBP": frozenset({"RGB", "RGBA"}),
    "BMP": frozenset({"L", "RGB"}),
    "GIF": frozenset({"L", "RGB", "RGBA"}),
    "PPM": frozenset({"L", "RGB", "I;16"}),
    "TGA": frozenset({"L", "LA", "RGB", "RGBA"}),
}
_DEFAULT_WRITABLE = frozenset({"L", "RGB"})
_SAVE_OPTIONS: dict[str, dict[str, Any]] = {
    "JPEG": {"quality": 95},
    "WEBP": {"quality": 95},
}
# PNG level 1 goes through sr_core.png (Paeth filter, zlib's run-length strategy, row ranges deflated on several
# threads): on a 1024x1024 SR output about 0.8x Pillow's level-1 CPU time on one thread and half its wall time on
# two, at the same size (bench/png_encode.py).
_PNG_FAST_LEVEL = 1
# Decoding EPS runs Ghostscript on the file: not something to do with untrusted uploads.
_BLOCKED_READ_FORMATS = frozenset({"EPS"})
_ICC_FORMATS = frozenset({"PNG", "JPEG", "WEBP", "TIFF"})


# --------------------------------------------------------------------------------------------------- helpers


def describe(image: Any) -> str:
    """Short human description such as ``"RGBA 640x480"`` for error messages and the UI."""
    if isinstance(image, Image.Image):
        return f"{image.mode} {image.width}x{image.height}"
    if isinstance(image, np.ndarray):
        return f"{image.dtype} array {'x'.join(str(d) for d in image.shape)}"
    return type(image).__name__


def _check_pixels(width: int, height: int, max_pixels: int | None, label: str) -> None:
    if max_pixels is not None and width * height > max_pixels:
        raise ImageTooLargeError(
            f"{label}: image is {width}x{height} ({width * height:,} pixels), over the limit of "
            f"{max_pixels:,} pixels; pass a larger max_pixels (or None) to load it anyway",
            width=width,
            height=height,
            limit=max_pixels,
        )


def _pillow_pixels(size: tuple[int, int]) -> int:
    """Pixels as Pillow's bomb check counts them (an empty side counts as one)."""
    return max(1, size[0]) * max(1, size[1])


def _pillow_lets_through(pixels: int) -> bool:
    """Whether Pillow's current bomb limit passes an image of ``pixels`` with neither a warning nor an error."""
    limit = Image.MAX_IMAGE_PIXELS
    return limit is None or pixels <= limit


@contextlib.contextmanager
def _pillow_settings(pixels: int, max_pixels: int | None) -> Iterator[None]:
    """Let Pillow decode an image of ``pixels`` pixels (already checked against ``max_pixels``), truncated data failing.

    Both settings are process-wide Pillow globals that other threads decode under. They are left alone in the usual
    case; only for an image over Pillow's bomb limit, or while tolerant truncated loading is on, are they changed,
    under the lock and restored on exit. The bomb limit is then raised to ``max_pixels``: never lowered, and None only
    when the caller passed None, so code decoding meanwhile keeps at least Pillow's own protection.
    """
    with _PIL_GLOBALS_LOCK:  # while it is held no load of ours has them changed: these are the values to judge
        untouched = _pillow_lets_through(pixels) and not ImageFile.LOAD_TRUNCATED_IMAGES
    if untouched:  # a load that starts meanwhile may raise the bomb limit, and restores it; never lowers it
        yield
        return
    with _PIL_GLOBALS_LOCK:
        saved = Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES
        if not _pillow_lets_through(pixels):
            Image.MAX_IMAGE_PIXELS = max_pixels
        ImageFile.LOAD_TRUNCATED_IMAGES = False
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES = saved


@contextlib.contextmanager
def _decoding(label: str, max_pixels: int | None) -> Iterator[None]:
    """Report whatever decoding raises as this module's errors (SRError passes through unchanged)."""
    try:
        yield
    except SRError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise _bomb_error(label, max_pixels, exc) from exc
    except Exception as exc:
        raise ImageLoadError(f"{label}: image could not be decoded ({type(exc).__name__}: {exc})") from exc


def _readable_formats() -> list[str]:
    """Every format Pillow can open except those it would hand to an external program (EPS: Ghostscript)."""
    Image.init()
    registered = list(Image.OPEN)  # a snapshot: no longer under a lock, and plugins register into this dict
    return [fmt for fmt in registered if fmt not in _BLOCKED_READ_FORMATS]


def _header_size(fp: Any) -> tuple[int, int] | None:
    """The (width, height) the data in ``fp`` declares, read by the plugins ``Image.open`` would try, in its order.

    ``Image.open`` applies Pillow's global bomb limit while it reads the header (a warning, or an error over twice
    the limit); reading the size first lets this module apply its own limit instead. None when no plugin takes the
    data: ``Image.open`` then says why.
    """
    fp.seek(0)
    prefix = fp.read(16)
    for fmt in _readable_formats():
        factory, accept = Image.OPEN[fmt]
        verdict = accept(prefix) if accept else True
        if not verdict or isinstance(verdict, str):
            continue
        fp.seek(0)
        try:
            return factory(fp, "").size
        except _NOT_THIS_FORMAT:
            continue
        except Exception:
            return None
    return None


def _bomb_error(label: str, max_pixels: int | None, exc: BaseException) -> ImageTooLargeError:
    limit = "no limit" if max_pixels is None else f"the limit of {max_pixels:,} pixels"
    return ImageTooLargeError(
        f"{label}: refused as a possible decompression bomb under {limit} ({exc})", limit=max_pixels
    )


# ------------------------------------------------------------------------------------------ mode handling


_QUANTISE_BLOCK = 1 << 22  # float values converted per block in from_array


def _round(values: np.ndarray) -> np.ndarray:
    """Round non-negative values half up (0.5 -> 1), the usual convention for quantising pixels."""
    return np.floor(values + 0.5)


def _uint16_image(values: np.ndarray) -> Image.Image:
    arr = np.ascontiguousarray(values, dtype="<u2")
    return Image.frombytes("I;16", (arr.shape[1], arr.shape[0]), arr.tobytes())


def _has_palette_alpha(image: Image.Image) -> bool:
    if image.info.get("transparency") is not None:
        return True
    palette = image.palette
    return palette is not None and palette.mode == "RGBA"


def _lab_to_rgb(image: Image.Image) -> Image.Image:
    try:
        return image.convert("RGB")
    except ValueError:
        from PIL import ImageCms

        transform = ImageCms.buildTransform(ImageCms.createProfile("LAB"), ImageCms.createProfile("sRGB"), "LAB", "RGB")
        return ImageCms.applyTransform(image, transform)


def _canonicalize(image: Image.Image, label: str) -> Image.Image:
    """Return a new image in a canonical mode with the same content (the input is not modified)."""
    mode = image.mode
    if mode in ("L", "RGB") and image.info.get("transparency") is not None:
        out = image.convert("LA" if mode == "L" else "RGBA")
    elif mode in ("L", "LA", "RGB", "RGBA", "I;16"):
        out = image.copy()
    elif mode == "1":
        out = image.convert("LA" if image.info.get("transparency") is not None else "L")
    elif mode == "P":
        out = image.convert("RGBA" if _has_palette_alpha(image) else "RGB")
    elif mode == "PA":
        out = image.convert("RGBA")
    elif mode == "La":
        out = image.convert("LA")
    elif mode in ("RGBa", "RGBX"):
        out = image.convert("RGBA" if mode == "RGBa" else "RGB")
    elif mode in ("CMYK", "YCbCr", "HSV"):
        out = image.convert("RGB")
        out.info.pop("icc_profile", None)
    elif mode == "LAB":
        out = _lab_to_rgb(image)
        out.info.pop("icc_profile", None)
    elif mode.startswith("I;16") or mode == "I":
        out = _uint16_image(np.clip(np.asarray(image).astype(np.int64), 0, 65535))
        out.info = {k: v for k, v in image.info.items() if k != "transparency"}
    elif mode == "F":
        values = np.asarray(image, dtype=np.float64)
        if not np.isfinite(values).all():
            raise ImageLoadError(f"{label}: 32-bit float image contains NaN or infinite values")
        lo, hi = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
        if lo < 0 or hi > 65535:
            raise ImageLoadError(
                f"{label}: 32-bit float image has values {lo:g}..{hi:g}, outside 0..65535; "
                "it cannot be represented as a 16-bit image"
            )
        out = _uint16_image(_round(values))
        out.info = dict(image.info)
    else:
        try:
            out = image.convert("RGB")
        except (ValueError, OSError) as exc:
            raise ImageLoadError(f"{label}: unsupported image mode {mode!r}") from exc
        logger.info("%s: converted unusual mode %s to RGB", label, mode)
    if out.mode not in CANONICAL_MODES:  # defensive: every branch above must produce a canonical mode
        raise ImageLoadError(f"{label}: could not convert mode {mode!r} to a supported mode")
    return out


def _upright(original: Image.Image, canonical: Image.Image, label: str) -> Image.Image:
    """Apply the EXIF orientation of ``original`` to ``canonical`` in place and remove the tag from it.

    The tag is read from ``original`` because TIFF keeps it in the file's own tags, which copies lose.
    """
    try:
        orientation = original.getexif().get(_ORIENTATION_TAG, 1)
    except Exception as exc:  # a corrupt EXIF block must not make an otherwise fine image unreadable
        logger.warning("%s: ignoring unreadable EXIF data (%s)", label, exc)
        return canonical
    if orientation not in range(2, 9):
        return canonical
    try:
        canonical.getexif()[_ORIENTATION_TAG] = orientation
        ImageOps.exif_transpose(canonical, in_place=True)
    except Exception as exc:
        logger.warning("%s: could not apply EXIF orientation %s (%s)", label, orientation, exc)
    return canonical


def _finish(image: Image.Image, label: str) -> Image.Image:
    return _upright(image, _canonicalize(image, label), label)


# -------------------------------------------------------------------------------------------- sources


def _from_numpy(array: np.ndarray, label: str, max_pixels: int | None) -> Image.Image:
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (1, 2, 3, 4)):
        raise ImageLoadError(
            f"{label}: array of shape {array.shape} is not an image; expected HxW or HxWxC with C in 1..4"
        )
    height, width = array.shape[:2]
    if height == 0 or width == 0:
        raise ImageLoadError(f"{label}: array of shape {array.shape} has no pixels")
    _check_pixels(width, height, max_pixels, label)
    channels = 1 if array.ndim == 2 else array.shape[2]
    data = array.reshape(height, width) if channels == 1 else array

    if array.dtype == np.bool_:
        data = data.astype(np.uint8) * 255
    elif array.dtype == np.uint16:
        if channels == 1:
            return _uint16_image(data)
        data = _round(data / 257.0).astype(np.uint8)
    elif np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(data).all():
            raise ImageLoadError(f"{label}: float array contains NaN or infinite values")
        lo, hi = float(data.min()), float(data.max())
        if lo < -_FLOAT_TOLERANCE or hi > 1 + _FLOAT_TOLERANCE:
            raise ImageLoadError(f"{label}: float array has values {lo:g}..{hi:g}; expected values in [0, 1]")
        data = _round(np.clip(data.astype(np.float64), 0.0, 1.0) * 255.0).astype(np.uint8)
    elif array.dtype != np.uint8:
        raise ImageLoadError(
            f"{label}: unsupported array dtype {array.dtype}; expected uint8, uint16, bool or float in [0, 1]"
        )
    data = np.ascontiguousarray(data, dtype=np.uint8)
    return Image.frombytes(_MODE_FOR_CHANNELS[channels], (width, height), data.tobytes())


def _from_pil(image: Image.Image, label: str, max_pixels: int | None, copy: bool) -> Image.Image:
    _check_pixels(image.width, image.height, max_pixels, label)
    with _decoding(label, max_pixels):
        with _pillow_settings(_pillow_pixels(image.size), max_pixels):
            image.load()
        return image if not copy and _ready(image) else _finish(image, label)


def _ready(image: Image.Image) -> bool:
    """Whether a caller's image can be read as it is: one frame, a canonical mode with no transparency key, and no
    EXIF rotation to apply."""
    if image.mode not in CANONICAL_MODES or "transparency" in image.info or getattr(image, "n_frames", 1) != 1:
        return False
    try:
        return image.getexif().get(_ORIENTATION_TAG, 1) == 1
    except Exception:  # a corrupt EXIF block: _finish reports it
        return False


def _open(fp: Any, label: str) -> Image.Image:
    """``Image.open`` over the readable formats, with an unrecognised file reported as not an image."""
    try:
        return Image.open(fp, formats=_readable_formats())
    except UnidentifiedImageError as exc:
        raise ImageLoadError(f"{label}: not an image (unknown or unsupported format, or a damaged header)") from exc


def _load_pixels(image: Image.Image, label: str) -> None:
    """Decode the pixel data; an OSError here means missing or damaged data."""
    try:
        image.load()
    except OSError as exc:
        raise ImageLoadError(
            f"{label}: image data could not be decoded; the file may be truncated or corrupt ({exc})"
        ) from exc


def _decode_stream(fp: Any, label: str, max_pixels: int | None) -> Image.Image:
    """Size-check (from the header), open, decode and canonicalise the image in ``fp`` (left open for the caller)."""
    with _decoding(label, max_pixels):
        size = _header_size(fp)
        if size is not None:
            _check_pixels(*size, max_pixels, label)
        with _pillow_settings(_pillow_pixels(size or (1, 1)), max_pixels):
            image = _open(fp, label)
            _check_pixels(image.width, image.height, max_pixels, label)  # in case the header told nothing
            if getattr(image, "n_frames", 1) > 1:
                logger.debug("%s: %d frames, using the first", label, image.n_frames)
            _load_pixels(image, label)
        return _finish(image, label)


def _from_path(path: str | os.PathLike, label: str, max_pixels: int | None) -> Image.Image:
    try:
        with open(path, "rb") as fp:
            info = os.fstat(fp.fileno())
            if stat.S_ISREG(info.st_mode) and info.st_size == 0:
                raise ImageLoadError(f"{label}: file is empty")
            return _decode_stream(fp, label, max_pixels)
    except FileNotFoundError as exc:
        raise ImageLoadError(f"{label}: file not found") from exc
    except IsADirectoryError as exc:
        raise ImageLoadError(f"{label}: is a directory, not an image file") from exc
    except PermissionError as exc:
        if os.path.isdir(path):
            raise ImageLoadError(f"{label}: is a directory, not an image file") from exc
        raise ImageLoadError(f"{label}: permission denied") from exc
    except OSError as exc:
        raise ImageLoadError(f"{label}: cannot read file ({exc.strerror or exc})") from exc


def _from_stream(stream: Any, label: str, max_pixels: int | None) -> Image.Image:
    """Decode a binary stream from its start (as Pillow does); unseekable streams are read into memory."""
    try:
        seekable = stream.seekable() if hasattr(stream, "seekable") else hasattr(stream, "seek")
        if not seekable:
            stream = io.BytesIO(stream.read())
        stream.seek(0)
        empty = not stream.read(1)
        stream.seek(0)
    except SRError:
        raise
    except Exception as exc:
        raise ImageLoadError(f"{label}: cannot read stream ({exc})") from exc
    if empty:
        raise ImageLoadError(f"{label}: no data (empty stream)")
    return _decode_stream(stream, label, max_pixels)


def _label(source: Any, name: str | None) -> str:
    if name is not None:
        return name
    if isinstance(source, (str, os.PathLike)):
        return str(os.fsdecode(source))
    if isinstance(source, np.ndarray):
        return "<array>"
    if isinstance(source, Image.Image):
        filename = getattr(source, "filename", None)
        return filename if isinstance(filename, str) and filename else "<image>"
    stream_name = getattr(source, "name", None)
    if isinstance(stream_name, str) and stream_name:
        return stream_name
    return "<bytes>"


def load_image(
    source: str | os.PathLike | bytes | bytearray | memoryview | io.IOBase | Image.Image | np.ndarray,
    *,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    name: str | None = None,
    copy: bool = True,
) -> Image.Image:
    """Load any supported source as a decoded, upright PIL image in one of :data:`CANONICAL_MODES`.

    ``source`` is a path, encoded bytes, a binary file-like object (read from its start and left open), a
    PIL image (never modified; copied unless ``copy=False``, see below) or a numpy array: uint8/bool HxW[xC];
    uint16 HxW -> ``"I;16"``; uint16 with colour channels -> scaled to 8 bit (PIL has no 16-bit colour mode);
    float in [0, 1] -> 8 bit.
    Images with more than ``max_pixels`` pixels are refused from the header, before decoding (``None``
    disables the limit). A limit above Pillow's own bomb limit overrides it for this image only; Pillow's
    process-wide limit is never lowered, and disabled only while decoding an image over it with ``None``.
    ``name`` replaces the file name in error messages. ``copy=False``: a PIL image that is already canonical and
    upright (one frame, no transparency key, no EXIF rotation) is returned itself, for callers that only read it,
    so a large image is not held twice.
    Only the first frame of animated images is returned.

    Raises ImageTooLargeError over the limit, ImageLoadError for anything that is not a readable image.
    """
    label = _label(source, name)
    if max_pixels is not None and (isinstance(max_pixels, bool) or max_pixels < 1):
        raise SRError(f"max_pixels must be a positive integer or None, got {max_pixels!r}")
    if isinstance(source, Image.Image):
        image = _from_pil(source, label, max_pixels, copy)
    elif isinstance(source, np.ndarray):
        image = _from_numpy(source, label, max_pixels)
    elif isinstance(source, (str, os.PathLike)):
        image = _from_path(source, label, max_pixels)
    elif isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise ImageLoadError(f"{label}: no data (empty bytes)")
        image = _from_stream(io.BytesIO(source), label, max_pixels)
    elif hasattr(source, "read"):
        image = _from_stream(source, label, max_pixels)
    else:
        raise ImageLoadError(f"{label}: cannot load an image from a {type(source).__name__}")
    return image


# --------------------------------------------------------------------------------------------- arrays


def _ensure_canonical(image: Image.Image) -> Image.Image:
    if not isinstance(image, Image.Image):
        raise SRError(f"expected a PIL image, got {describe(image)}")
    return image if image.mode in CANONICAL_MODES else _canonicalize(image, describe(image))


def pixel_peak(mode: str) -> float:
    """The largest pixel value of a canonical mode: 65535 for I;16, else 255."""
    return 65535.0 if mode == "I;16" else 255.0


def to_pixels(image: Image.Image) -> np.ndarray:
    """The image's integer pixels as an HxWxC array (uint8, or uint16 for I;16), channels as in :func:`to_array`.

    Images in other modes are first converted as :func:`load_image` would.
    """
    image = _ensure_canonical(image)
    values = np.asarray(image)
    if image.mode == "I;16":
        values = values.astype(np.uint16, copy=False)
    return values.reshape(image.height, image.width, _CHANNELS[image.mode])


def to_array(image: Image.Image) -> np.ndarray:
    """Float32 HxWxC array in [0, 1]; C is 1 (L, I;16), 2 (LA), 3 (RGB) or 4 (RGBA). I;16 is divided by 65535.

    Images in other modes are first converted as :func:`load_image` would.
    """
    image = _ensure_canonical(image)
    return to_pixels(image).astype(np.float32) / np.float32(pixel_peak(image.mode))


def from_array(array: np.ndarray, mode: str) -> Image.Image:
    """Inverse of :func:`to_array`: clip a float array to [0, 1], round to 8 or 16 bit, build ``mode``.

    ``array`` is HxW or HxWxC with C matching ``mode`` (one of :data:`CANONICAL_MODES`).
    """
    if mode not in CANONICAL_MODES:
        raise SRError(f"mode must be one of {', '.join(CANONICAL_MODES)}, got {mode!r}")
    array = np.asarray(array)
    if not np.issubdtype(array.dtype, np.floating):
        raise SRError(f"from_array expects a float array in [0, 1], got dtype {array.dtype}")
    channels = _CHANNELS[mode]
    if array.ndim == 3 and array.shape[2] == channels:
        array = array.reshape(array.shape[0], array.shape[1]) if channels == 1 else array
    elif not (array.ndim == 2 and channels == 1):
        raise SRError(f"array of shape {array.shape} does not match mode {mode} ({channels} channel(s))")
    height, width = array.shape[:2]
    if height == 0 or width == 0:
        raise SRError(f"array of shape {array.shape} has no pixels")
    if np.isnan(array).any():
        raise SRError("array contains NaN values")
    peak, dtype = pixel_peak(mode), np.dtype("<u2") if mode == "I;16" else np.dtype(np.uint8)
    data = np.empty(array.shape, dtype=dtype)
    rows = max(1, _QUANTISE_BLOCK // max(1, array[0].size))
    for top in range(0, height, rows):  # row blocks keep float64 temporaries small for huge outputs
        block = np.clip(array[top : top + rows].astype(np.float64), 0.0, 1.0)
        data[top : top + rows] = _round(block * peak)
    return Image.frombytes(mode, (width, height), memoryview(data).cast("B"))


def _i16_to_l(image: Image.Image) -> Image.Image:
    scaled = _round(np.asarray(image).astype(np.float64) / 257.0).astype(np.uint8)
    return Image.frombytes("L", image.size, np.ascontiguousarray(scaled).tobytes())


def to_uint8(image: Image.Image) -> np.ndarray:
    """8-bit view for metrics and display: HxWx3 RGB, or HxW for greyscale (L, LA, I;16). Alpha is dropped."""
    image = _ensure_canonical(image)
    if image.mode == "I;16":
        return np.array(_i16_to_l(image))
    if image.mode == "LA":
        return np.array(image.getchannel("L"))
    if image.mode == "RGBA":
        return np.array(image.convert("RGB"))
    return np.array(image)


# --------------------------------------------------------------------------------------------- saving


def _flatten(image: Image.Image, mode: str) -> Image.Image:
    """Composite an image with alpha over white, giving ``mode`` (L or RGB)."""
    background = Image.new(mode, image.size, 255 if mode == "L" else (255, 255, 255))
    background.paste(image.convert(mode), mask=image.getchannel("A"))
    return background


def _fit_mode_for_format(image: Image.Image, fmt: str) -> Image.Image:
    allowed = _WRITABLE_MODES.get(fmt, _DEFAULT_WRITABLE)
    if image.mode == "I;16" and "I;16" not in allowed:
        image = _i16_to_l(image)
    if image.mode == "LA" and "LA" not in allowed:
        image = image.convert("RGBA") if "RGBA" in allowed else _flatten(image, "L" if "L" in allowed else "RGB")
    if image.mode == "RGBA" and "RGBA" not in allowed:
        image = _flatten(image, "RGB")
    if image.mode == "L" and "L" not in allowed:
        image = image.convert("RGB")
    return image


def _is_gray(mode: str) -> bool:
    return mode in ("1", "L", "LA", "La", "I", "F") or mode.startswith("I;16")


def _format_for(path: pathlib.Path) -> str:
    extensions = Image.registered_extensions()
    fmt = extensions.get(path.suffix.lower())
    if fmt is None:
        raise SRError(f"{path}: cannot tell the image format from the suffix {path.suffix!r}; use e.g. .png")
    if fmt not in Image.SAVE:
        raise SRError(f"{path}: Pillow cannot write {fmt} files")
    return fmt


def _exists_error(path: pathlib.Path) -> tuple[SRError, FileExistsError]:
    cause = FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(path))
    return SRError(f"{path}: file already exists and overwrite=False"), cause


def save_image(
    image: Image.Image,
    path: str | os.PathLike,
    *,
    overwrite: bool = True,
    quality: int | None = None,
    png_compression: int | None = None,
) -> pathlib.Path:
    """Write ``image`` to ``path`` atomically (temp file in the same folder, then rename) and return the path.

    The format comes from the suffix. PNG and TIFF keep every canonical mode, 16-bit greyscale included;
    formats without alpha (JPEG, BMP) get the image composited over white; formats without 16-bit support get
    it scaled to 8 bit. JPEG and WebP are written at ``quality`` (1-100, default 95; other formats ignore it), PNG
    at zlib level ``png_compression`` (0-9, default Pillow's 6; 1 writes several times faster, through
    :func:`sr_core.png.write_png` on several threads).
    Parent folders are created. With ``overwrite=False`` an existing file is never replaced (SRError caused by
    FileExistsError).
    """
    if not isinstance(image, Image.Image):
        raise SRError(f"save_image expects a PIL image, got {describe(image)}")
    if quality is not None and (isinstance(quality, bool) or not isinstance(quality, int) or not 1 <= quality <= 100):
        raise SRError(f"quality must be a whole number from 1 to 100, got {quality!r}")
    if png_compression is not None and (isinstance(png_compression, bool) or png_compression not in range(10)):
        raise SRError(f"png_compression must be a whole number from 0 to 9, got {png_compression!r}")
    target = pathlib.Path(path)
    fmt = _format_for(target)
    if target.is_dir():
        raise SRError(f"{target}: is a directory")
    if not overwrite and target.exists():
        err, cause = _exists_error(target)
        raise err from cause

    try:
        prepared = _fit_mode_for_format(_ensure_canonical(image), fmt)
    except SRError:
        raise
    except Exception as exc:
        raise SRError(f"{target}: cannot convert {describe(image)} for {fmt} ({exc})") from exc
    options = dict(_SAVE_OPTIONS.get(fmt, {}))
    if quality is not None and "quality" in options:
        options["quality"] = quality
    if png_compression is not None and fmt == "PNG":
        options["compress_level"] = png_compression
    icc = image.info.get("icc_profile")
    if icc and fmt in _ICC_FORMATS and _is_gray(prepared.mode) == _is_gray(image.mode):
        options["icc_profile"] = icc

    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SRError(f"{target}: cannot create folder {target.parent} ({exc.strerror or exc})") from exc

    try:
        with atomic_path(target, overwrite=overwrite) as tmp:
            if fmt == "PNG" and png_compression == _PNG_FAST_LEVEL:
                with open(tmp, "wb") as file:
                    write_png(file, prepared, icc_profile=options.get("icc_profile"))
            else:
                prepared.save(tmp, format=fmt, **options)
    except FileExistsError as exc:
        raise _exists_error(target)[0] from exc
    except Exception as exc:
        raise SRError(f"{target}: could not write {describe(prepared)} as {fmt} ({exc})") from exc
    return target
