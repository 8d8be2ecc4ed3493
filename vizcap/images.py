"""One entry point for images: `open_image(source)` -> an RGB PIL image, or `ImageError`.

Used by the Python API, the CLI and the app, so that every front door accepts and refuses the same
things. Preprocessing for the model (`to_model_input`) never crops: the whole image is resized to
the model's square input, so map cell (r, c) of a gh×gw map covers rows r·H/gh … (r+1)·H/gh and
columns c·W/gw … (c+1)·W/gw of the original H×W image.

What comes back is always a fresh 8-bit RGB image, at most MAX_SIDE_KEPT pixels on its longer side:

* accepted files: PNG, JPEG (and camera MPO), GIF, BMP, TIFF, WebP, AVIF, PPM/PGM/PBM and ICO, in
  any pixel format Pillow decodes — 1-bit, grayscale, 16-bit, 32-bit integer and float, palette,
  CMYK, with or without alpha. Animations and multi-page files give their first frame; the EXIF
  orientation is applied; transparent pixels become white; 16-bit values are scaled by 1/257,
  float images in [0, 1] by 255 (other float ranges are stretched to 0…255, NaN becomes black).
* refused with an `ImageError` (a ValueError whose message is one line naming the input): missing
  paths, broken symlinks, directories, devices and pipes, unreadable and empty files, anything that
  is not one of the formats above (text, HTML, PDF, SVG, PostScript, random bytes), truncated or
  damaged files (Pillow's LOAD_TRUNCATED_IMAGES is never switched on here, so a cut-off file is an
  error, not a half-grey picture) and images of more than MAX_PIXELS pixels (checked on the header,
  before any pixel is decoded: decompression bombs cost nothing).
* arrays: H×W, H×W×1, H×W×3 or H×W×4 of uint8, bool, other integers (0…255 as is, 0…65535 as
  16-bit) or floats (0…1 scaled by 255, else clipped to 0…255); NaN or infinite values are refused.

Huge photos are cheap: JPEGs are decoded at reduced size (DCT scaling, "draft" mode), other formats
are reduced by whole factors first (`reducing_gap`), all before any conversion.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import stat
import threading
import warnings

import numpy as np
from PIL import Image, UnidentifiedImageError

MAX_PIXELS = 64_000_000  # width × height above this is refused (possible decompression bomb)
MAX_SIDE_KEPT = 2048  # larger images are downscaled on load (the model sees at most a few hundred px)
ACCEPTED_FORMATS = ("PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP", "AVIF", "PPM", "ICO")

_ORIENTATION = {  # EXIF orientation -> the transpose that shows the picture upright
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
# Image.open warns (rather than fails) for sizes between Pillow's own limit and twice that; we refuse
# those ourselves from the header, so the warning is silenced around the open. `catch_warnings`
# swaps process-wide state, hence the lock (held only while the header is parsed).
_OPEN_LOCK = threading.Lock()


class ImageError(ValueError):
    """An input that is not a usable image; the message is one line naming the input."""


def _printable(text: str) -> str:
    """`text` on one line: control characters (a newline in a file name) are escaped."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)


def _name(source) -> str:
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        return _printable(os.fsdecode(path)) if path else "<empty path>"
    if isinstance(source, Image.Image):
        filename = getattr(source, "filename", "")
        return _printable(str(filename)) if filename else "<PIL image>"
    if isinstance(source, np.ndarray):
        return "<array>"
    if isinstance(source, (bytes, bytearray, memoryview)):
        return "<bytes>"
    filename = getattr(source, "name", None)
    if isinstance(filename, str) and filename:
        return _printable(filename)
    return f"<{type(source).__name__}>"


def _reason(e: BaseException) -> str:
    text = str(e).strip()
    line = text.splitlines()[0] if text else type(e).__name__
    return _printable(line[:200])


def open_image(source, name: str | None = None) -> Image.Image:
    """A path, bytes, a binary file object, a PIL image or an H×W×3 / H×W array -> RGB PIL image.
    `name` is what error messages call the input (default: the path, or a description)."""
    label = _printable(str(name)) if name else _name(source)
    if isinstance(source, np.ndarray):
        return _from_array(source, label)
    if isinstance(source, Image.Image):
        return _from_pil(source, label)
    if isinstance(source, (str, os.PathLike)):
        return _from_path(source, label)
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    elif hasattr(source, "read"):
        try:
            data = source.read()
        except Exception as e:
            raise ImageError(f"{label}: cannot read ({_reason(e)})") from None
        if isinstance(data, str):
            raise ImageError(f"{label}: file object opened in text mode; open images with 'rb'")
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise ImageError(f"{label}: read() returned {type(data).__name__}, not bytes")
        data = bytes(data)
    else:
        raise ImageError(f"{label}: expected a path, bytes, a binary file, a PIL image or an array")
    if not data:
        raise ImageError(f"{label}: empty file")
    return _decode(io.BytesIO(data), label)


def _from_path(source, label: str) -> Image.Image:
    try:
        path = os.fspath(source)
    except TypeError as e:
        raise ImageError(f"{label}: not a usable path ({_reason(e)})") from None
    if not path:
        raise ImageError(f"{label}: no file name given")
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise ImageError(f"{label}: no such file" + (" (broken symlink)" if os.path.islink(path) else "")) from None
    except PermissionError:
        raise ImageError(f"{label}: permission denied") from None
    except (OSError, ValueError) as e:  # a symlink loop, a name too long, a NUL byte, a file used as a folder
        reason = getattr(e, "strerror", None) or _reason(e)
        raise ImageError(f"{label}: cannot open ({_printable(reason)})") from None
    if stat.S_ISDIR(st.st_mode):
        raise ImageError(f"{label}: is a directory, not an image")
    if not stat.S_ISREG(st.st_mode):
        raise ImageError(f"{label}: not a regular file (a device, pipe or socket)")
    if st.st_size == 0:
        raise ImageError(f"{label}: empty file")
    try:
        fp = open(path, "rb")
    except PermissionError:
        raise ImageError(f"{label}: permission denied (file not readable)") from None
    except OSError as e:
        raise ImageError(f"{label}: cannot read ({_printable(e.strerror or _reason(e))})") from None
    with fp:  # read lazily: only the header, then the first frame, are ever read
        return _decode(fp, label)


def _formats() -> tuple[str, ...]:
    """ACCEPTED_FORMATS that this Pillow build can read (AVIF, WebP and TIFF depend on its libraries)."""
    Image.init()
    return tuple(f for f in ACCEPTED_FORMATS if f in Image.OPEN)


def _decode(fp, label: str) -> Image.Image:
    try:
        with _OPEN_LOCK, warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(fp, formats=_formats())
    except Image.DecompressionBombError as e:  # over twice Pillow's own Image.MAX_IMAGE_PIXELS
        found = re.search(r"\((\d+) pixels\)", str(e))
        size = f"{int(found.group(1)):,} pixels" if found else "too many pixels"
        raise ImageError(f"{label}: {size}, over the pixel limit; refused as a possible decompression bomb") from None
    except UnidentifiedImageError:
        raise ImageError(f"{label}: {_sniff(fp)}") from None
    except MemoryError:
        raise ImageError(f"{label}: too large to open") from None
    except Exception as e:  # a plugin choking on a damaged header
        raise ImageError(f"{label}: damaged image ({_reason(e)})") from None
    try:
        _check_size(img, label)
        if max(img.size) > MAX_SIDE_KEPT and img.format in ("JPEG", "MPO"):
            img.draft("RGB", (MAX_SIDE_KEPT, MAX_SIDE_KEPT))  # fast DCT downscale while decoding
        img.load()  # the first frame of animations and multi-page files
        orientation = _orientation(img)
        return _finish(img, label, orientation)
    except ImageError:
        raise
    except MemoryError:
        raise ImageError(f"{label}: too large to decode") from None
    except Exception as e:  # truncated data, a broken stream, an impossible tile...
        raise ImageError(f"{label}: damaged image ({_reason(e)})") from None


_MAGIC = (  # signatures of the accepted formats: a file that starts like one but fails is damaged
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8", "JPEG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"RIFF", "WebP"),
)


def _sniff(fp) -> str:
    """Why an unidentified file is not an image, in a few words."""
    try:
        fp.seek(0)
        head = fp.read(1024)
    except Exception:
        head = b""
    for magic, fmt in _MAGIC:
        if head.startswith(magic) and (fmt != "WebP" or head[8:12] == b"WEBP"):
            return f"damaged image (invalid or cut-off {fmt} header)"
    start = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    accepted = ", ".join(ACCEPTED_FORMATS)
    if start.startswith(b"%pdf"):
        return "a PDF document, not an image"
    if start.startswith(b"%!ps"):
        return "a PostScript/EPS file; convert it to PNG first"
    if b"<svg" in start[:1024]:
        return "an SVG (vector) image; convert it to PNG first"
    if start.startswith((b"<!doctype html", b"<html", b"<head", b"<body")):
        return "an HTML page, not an image"
    if start.startswith(b"pk\x03\x04"):
        return "a ZIP archive, not an image"
    try:
        text = head.decode("utf-8")
        if text and all(ch.isprintable() or ch in "\t\r\n" for ch in text.rstrip("\x00")):
            return "a text file, not an image"
    except UnicodeDecodeError:
        pass
    return f"not an image file (unrecognised format; accepted: {accepted})"


def _check_size(img: Image.Image, label: str) -> None:
    w, h = img.size
    if w * h > MAX_PIXELS:
        raise ImageError(f"{label}: {w}×{h} is {w * h:,} pixels, over the {MAX_PIXELS:,}-pixel limit "
                         "(possible decompression bomb)")
    if w < 1 or h < 1:
        raise ImageError(f"{label}: image has no pixels ({w}×{h})")


def _orientation(img: Image.Image) -> int:
    try:
        value = img.getexif().get(0x0112, 1)
        return int(value) if int(value) in _ORIENTATION else 1
    except Exception:  # a broken EXIF block should not cost the picture
        return 1


def _from_pil(img: Image.Image, label: str) -> Image.Image:
    try:
        _check_size(img, label)
        img.load()  # an Image.open() result that was never loaded may still be truncated
        return _finish(img, label, _orientation(img))
    except ImageError:
        raise
    except MemoryError:
        raise ImageError(f"{label}: too large to decode") from None
    except Exception as e:
        raise ImageError(f"{label}: damaged image ({_reason(e)})") from None


def _finish(img: Image.Image, label: str, orientation: int) -> Image.Image:
    """Any Pillow mode, any size -> upright RGB, at most MAX_SIDE_KEPT on the longer side, no metadata."""
    mode = img.mode
    sixteen = mode.startswith("I;16")
    if sixteen:
        img = img.convert("I")
    elif mode in ("P", "PA"):
        img = img.convert("RGBA" if mode == "PA" or "transparency" in img.info else "RGB")
    elif mode in ("LA", "La", "RGBa"):
        img = img.convert("RGBA")
    elif mode == "1":
        img = img.convert("L")
    elif mode not in ("L", "RGB", "RGBA", "I", "F"):
        try:
            img = img.convert("RGB")  # CMYK, YCbCr, RGBX, LAB, HSV, ...
        except ValueError:
            raise ImageError(f"{label}: unsupported pixel format {mode}") from None
    if max(img.size) > MAX_SIDE_KEPT:
        scale = MAX_SIDE_KEPT / max(img.size)
        size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
        img = img.resize(size, Image.BILINEAR, reducing_gap=2.0)  # whole-factor reduction first: fast
    if img.mode in ("I", "F"):
        img = _to_8bit(img, label, sixteen)
    if orientation in _ORIENTATION:
        img = img.transpose(_ORIENTATION[orientation])
    if img.mode == "RGBA":
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))  # transparent -> white
        img = Image.alpha_composite(background, img)
    out = img.convert("RGB")
    if out is img:
        out = img.copy()
    out.info.clear()  # the orientation is applied and the alpha spent: a second open_image is a no-op
    return out


def _to_8bit(img: Image.Image, label: str, sixteen: bool) -> Image.Image:
    """A 32-bit integer or float image -> L: 16-bit data / 257, [0, 1] floats × 255, else stretched."""
    arr = np.asarray(img, dtype=np.float64)
    finite = np.isfinite(arr)
    if not finite.any():
        raise ImageError(f"{label}: no finite pixel values (all NaN or infinite)")
    values = arr[finite]
    lo, hi = float(values.min()), float(values.max())
    if sixteen or (img.mode == "I" and lo >= 0 and hi <= 65535 and hi > 255):
        arr = arr / 257.0
    elif img.mode == "F" and lo >= 0 and hi <= 1:
        arr = arr * 255.0
    elif lo < 0 or hi > 255:
        arr = (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
    arr = np.where(finite, arr, 0.0)
    return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8))


def _from_array(arr: np.ndarray, label: str) -> Image.Image:
    if not (arr.dtype == np.bool_ or np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise ImageError(f"{label}: unsupported array dtype {arr.dtype} (expected uint8, another integer type, float or bool)")
    shape = tuple(arr.shape)
    if arr.ndim == 3 and shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
        hint = "; channels first? use arr.transpose(1, 2, 0)" if arr.ndim == 3 and shape[0] in (1, 3, 4) else ""
        raise ImageError(f"{label}: expected an H×W, H×W×3 or H×W×4 array, got shape {shape}{hint}")
    if arr.size == 0:
        raise ImageError(f"{label}: array has no pixels (shape {shape})")
    if shape[0] * shape[1] > MAX_PIXELS:
        raise ImageError(f"{label}: {shape[1]}×{shape[0]} is {shape[0] * shape[1]:,} pixels, over the "
                         f"{MAX_PIXELS:,}-pixel limit")
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8) * 255
    elif np.issubdtype(arr.dtype, np.floating):
        arr = arr.astype(np.float64)
        if not np.isfinite(arr).all():
            raise ImageError(f"{label}: array contains NaN or infinite values")
        if arr.min() >= 0 and arr.max() <= 1.0:
            arr = arr * 255
        arr = np.clip(arr, 0, 255).astype(np.uint8)
    elif arr.dtype != np.uint8:
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0 or hi > 65535:
            raise ImageError(f"{label}: integer array values {lo}…{hi} are outside 0…255 (8-bit) and 0…65535 (16-bit)")
        arr = (arr.astype(np.float64) / 257.0).round() if hi > 255 else arr
        arr = arr.astype(np.uint8)
    return _finish(Image.fromarray(np.ascontiguousarray(arr)), label, 1)


def to_model_input(img: Image.Image, size: int, mean, std) -> np.ndarray:
    """The whole image squashed to size×size (no crop), as a normalised float32 [3, size, size]."""
    arr = np.asarray(img.convert("RGB").resize((size, size), Image.BILINEAR), dtype=np.float32) / 255.0
    arr = (arr - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return arr.transpose(2, 0, 1)


def from_model_input(pixels, mean, std) -> Image.Image:
    """The inverse of the normalisation: pixels [3, H, W] (normalised with `mean`, `std`) back to an RGB
    picture, values outside 0…1 clipped."""
    pixels = np.asarray(pixels, dtype=np.float64)
    rgb = pixels * np.asarray(std)[:, None, None] + np.asarray(mean)[:, None, None]
    return Image.fromarray((rgb.transpose(1, 2, 0).clip(0, 1) * 255).round().astype(np.uint8))


def pixel_statistics(captioner) -> tuple[list[float], list[float]]:
    """(mean, std) the captioner normalises its pixels with (each backend states its own: vizcap/backend.py)."""
    return list(captioner.image_mean), list(captioner.image_std)


def model_view(captioner, image) -> Image.Image:
    """What the model actually sees of `image`: its preprocessing's output turned back into a picture
    (the whole image squashed to the model's square input, or the processor's crop)."""
    return from_model_input(captioner.pixels(image)[0].numpy(), *pixel_statistics(captioner))


MAX_UPLOAD_MB = 20  # the app's upload limit (.streamlit/config.toml's server.maxUploadSize says the same)


def grey_cells(pixels, hidden, grid: tuple[int, int]):
    """Copies of the model input `pixels` [1, 3, H, W] with cells greyed: hidden [K, gh·gw] (bools,
    row by row) says which cells copy k greys; returns [K, 3, H, W]. Grey is 0 after normalisation,
    i.e. the model's mean colour (mid-grey for a processor whose mean is 0.5). Cell (r, c) covers the
    input pixels that nearest-neighbour upsampling of the grid gives it. The one greying of vizcap:
    occlusion maps and the deletion/insertion test both use it."""
    import torch

    gh, gw = grid
    H, W = pixels.shape[-2:]
    keep = torch.from_numpy(~np.asarray(hidden, dtype=bool).reshape(-1, 1, gh, gw)).to(pixels.dtype)
    mask = torch.nn.functional.interpolate(keep, size=(H, W), mode="nearest")  # [K, 1, H, W]
    return pixels[:1] * mask


def read_upload(name: str, data: bytes, size: int | None = None, max_mb: float = MAX_UPLOAD_MB):
    """An uploaded file: (image, image id, None) or (None, None, a one-line message); never raises. The
    id ("upload:" + the first 16 hex digits of the bytes' SHA-1) names the same file the same way."""
    size = len(data) if size is None else size
    if size > max_mb * 1024 * 1024:
        return None, None, f"{name}: {size / 1024 / 1024:.1f} MB is over the {max_mb} MB limit."
    try:
        image = open_image(data, name=name)
    except ImageError as e:
        return None, None, str(e)
    except Exception as e:  # a decoder bug must not reach the student as a traceback
        return None, None, f"{name}: cannot be read as an image ({type(e).__name__})."
    return image, "upload:" + hashlib.sha1(data).hexdigest()[:16], None
