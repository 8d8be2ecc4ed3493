"""One entry point for images: `open_image(source)` -> an RGB PIL image, or `ImageError`.

Used by the Python API, the CLI and the app, so that every front door accepts and refuses the same
things. Preprocessing for the model (`to_model_input`) never crops: the whole image is resized to
the model's square input, so map cell (r, c) of a gh×gw map covers rows r·H/gh … (r+1)·H/gh and
columns c·W/gw … (c+1)·W/gw of the original H×W image.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

MAX_PIXELS = 64_000_000  # larger images are refused as possible decompression bombs
MAX_SIDE_KEPT = 2048  # larger images are downscaled on load (the model sees at most a few hundred px)


class ImageError(ValueError):
    """An input that is not a usable image; the message is one line naming the input."""


def _name(source) -> str:
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    if isinstance(source, Image.Image):
        return "<PIL image>"
    if isinstance(source, np.ndarray):
        return "<array>"
    return f"<{type(source).__name__}>"


def open_image(source, name: str | None = None) -> Image.Image:
    """A path, bytes, a file object, a PIL image or an H×W×3 / H×W uint8 array -> RGB PIL image."""
    label = name or _name(source)
    if isinstance(source, np.ndarray):
        return _from_array(source, label)
    if isinstance(source, Image.Image):
        return _to_rgb(source, label)
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.exists():
            raise ImageError(f"{label}: no such file" + (" (broken symlink)" if path.is_symlink() else ""))
        if path.is_dir():
            raise ImageError(f"{label}: is a directory, not an image")
        try:
            data = path.read_bytes()
        except OSError as e:
            raise ImageError(f"{label}: cannot read ({e.strerror or e})") from None
    elif isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    elif hasattr(source, "read"):
        data = source.read()
    else:
        raise ImageError(f"{label}: expected a path, bytes, a PIL image or an array")
    if not data:
        raise ImageError(f"{label}: empty file")
    return _decode(data, label)


def _decode(data: bytes, label: str) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            Image.MAX_IMAGE_PIXELS = MAX_PIXELS
            img = Image.open(io.BytesIO(data))
            if img.width * img.height > MAX_PIXELS:
                raise ImageError(f"{label}: {img.width}×{img.height} exceeds the {MAX_PIXELS:,}-pixel limit")
            img.seek(0)  # first frame of animations and multi-page files
            if max(img.size) > MAX_SIDE_KEPT and img.format == "JPEG":
                img.draft("RGB", (MAX_SIDE_KEPT, MAX_SIDE_KEPT))  # fast DCT downscale while decoding
            img.load()
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(f"{label}: too many pixels (limit {MAX_PIXELS:,}); possible decompression bomb") from None
    except UnidentifiedImageError:
        raise ImageError(f"{label}: not an image file (unrecognised format)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise ImageError(f"{label}: damaged image ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    return _to_rgb(img, label)


def _to_rgb(img: Image.Image, label: str) -> Image.Image:
    try:
        img = ImageOps.exif_transpose(img) or img
    except Exception:  # a broken EXIF block should not cost the picture
        pass
    if img.width < 1 or img.height < 1:
        raise ImageError(f"{label}: image has no pixels")
    if max(img.size) > MAX_SIDE_KEPT:
        img = img.copy()
        img.thumbnail((MAX_SIDE_KEPT, MAX_SIDE_KEPT), Image.BILINEAR)
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = np.nanmin(arr), np.nanmax(arr)
        arr = np.zeros_like(arr) if hi <= lo else (arr - lo) / (hi - lo) * 255
        img = Image.fromarray(np.nan_to_num(arr).astype(np.uint8))
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))  # transparent -> white
        img = Image.alpha_composite(background, rgba)
    return img.convert("RGB")


def _from_array(arr: np.ndarray, label: str) -> Image.Image:
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)) or arr.size == 0:
        raise ImageError(f"{label}: expected an H×W×3 array, got shape {arr.shape}")
    if arr.dtype != np.uint8:
        if np.issubdtype(arr.dtype, np.floating) and np.nanmax(arr) <= 1.0:
            arr = np.nan_to_num(arr) * 255
        arr = np.clip(np.nan_to_num(arr), 0, 255).astype(np.uint8)
    return _to_rgb(Image.fromarray(np.ascontiguousarray(arr)), label)


def to_model_input(img: Image.Image, size: int, mean, std) -> np.ndarray:
    """The whole image squashed to size×size (no crop), as a normalised float32 [3, size, size]."""
    arr = np.asarray(img.convert("RGB").resize((size, size), Image.BILINEAR), dtype=np.float32) / 255.0
    arr = (arr - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return arr.transpose(2, 0, 1)
