"""`vizcap.open_image`, the one front door for images: a corpus of awkward-but-valid and invalid
inputs, all generated here (nothing binary is committed), through the Python API and through the CLI
in one batch.

Valid inputs must come back as upright 8-bit RGB pictures of sensible size and colour; invalid ones
must raise ImageError (a ValueError) with a one-line message naming the input, quickly, without ever
decoding the pixels of a decompression bomb."""

from __future__ import annotations

import io
import json
import os
import re
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile, features

import vizcap
from vizcap import images as vimages
from vizcap.images import MAX_PIXELS, MAX_SIDE_KEPT, ImageError, open_image

from conftest import ROOT, run_module

# Pillow warns about the damage it meets in broken files ("Corrupt EXIF data", "Truncated File
# Read"): expected here, and not what these tests check.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)


# -- hand-made files -------------------------------------------------------------------------------


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bytes(width: int, height: int, bit_depth: int, color_type: int, row: bytes | None = None) -> bytes:
    """A PNG whose every row is `row` (default zeros), compressed as a stream: a 20000×20000 bilevel
    PNG takes a fraction of a second and a few tens of kB, which is what a decompression bomb is."""
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[color_type]
    row_bytes = (width * channels * bit_depth + 7) // 8
    row = b"\x00" + (row if row is not None else bytes(row_bytes))
    assert len(row) == row_bytes + 1
    comp = zlib.compressobj(1)
    parts, chunk_rows = [], max(1, 4_000_000 // len(row))
    for start in range(0, height, chunk_rows):
        parts.append(comp.compress(row * min(chunk_rows, height - start)))
    parts.append(comp.flush())
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", b"".join(parts)) + png_chunk(b"IEND", b"")


def encoded(img: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kwargs)
    return buf.getvalue()


def quadrants(w: int = 64, h: int = 48) -> Image.Image:
    """Red top-left, green top-right, blue bottom-left, white bottom-right: orientation is visible."""
    arr = np.zeros((h, w, 3), np.uint8)
    arr[: h // 2, : w // 2] = RED
    arr[: h // 2, w // 2 :] = GREEN
    arr[h // 2 :, : w // 2] = BLUE
    arr[h // 2 :, w // 2 :] = WHITE
    return Image.fromarray(arr)


def photo_like(w: int, h: int) -> Image.Image:
    y, x = np.mgrid[0:h, 0:w]
    arr = np.stack([(x * 255 // max(w - 1, 1)), (y * 255 // max(h - 1, 1)), ((x + y) % 256)], -1).astype(np.uint8)
    return Image.fromarray(arr)


def exif_with_orientation(value: int) -> Image.Exif:
    exif = Image.Exif()
    exif[0x0112] = value
    return exif


def jpeg_with_broken_exif() -> bytes:
    data = encoded(quadrants(), "JPEG", quality=95)
    app1 = b"Exif\x00\x00" + b"MM\x00\x2a\x00\x00\x00\x08" + b"\xff\xee" * 40  # IFD that points nowhere
    segment = b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1
    return data[:2] + segment + data[2:]


def animated(fmt: str, **kwargs) -> bytes:
    frames = [Image.new("RGB", (40, 30), c) for c in (RED, BLUE, GREEN)]
    return encoded(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, loop=0, **kwargs)


def multipage_tiff() -> bytes:
    pages = [Image.new("RGB", (40, 30), RED), Image.new("RGB", (80, 20), BLUE)]
    return encoded(pages[0], "TIFF", save_all=True, append_images=pages[1:])


def palette(transparent: bool) -> bytes:
    img = Image.new("P", (32, 32), 0)
    img.putpalette([*RED, *BLUE] + [0] * 762)
    img.paste(1, (0, 0, 16, 32))
    return encoded(img, "PNG", **({"transparency": 1} if transparent else {}))


def float_tiff(nan: bool) -> bytes:
    arr = np.tile(np.linspace(0, 1, 64, dtype=np.float32), (32, 1))
    if nan:
        arr[:4, :4] = np.nan
    return encoded(Image.fromarray(arr), "TIFF")


def sixteen_bit_png() -> bytes:
    arr = np.tile(np.linspace(0, 65535, 64).astype(np.uint16), (16, 1))
    return encoded(Image.fromarray(arr), "PNG")


def rgb48_png() -> bytes:  # 16 bits per channel RGB: Pillow cannot write it, so it is made by hand
    w, h = 8, 4
    row = b"".join(struct.pack(">HHH", 65535, 0, 0) for _ in range(w))  # pure red
    return png_bytes(w, h, 16, 2, row)


def rgba(alpha: int) -> bytes:
    img = Image.new("RGBA", (40, 30), (*BLUE, alpha))
    return encoded(img, "PNG")


def la_png() -> bytes:
    return encoded(Image.merge("LA", [Image.new("L", (20, 20), 0), Image.new("L", (20, 20), 255)]), "PNG")


def cmyk_jpeg() -> bytes:
    return encoded(Image.new("RGB", (48, 32), RED).convert("CMYK"), "JPEG", quality=95)


def big_png() -> bytes:
    img = Image.new("RGB", (5200, 3000), (90, 140, 200))
    img.paste(RED, (0, 0, 2600, 1500))
    return encoded(img, "PNG", compress_level=1)


def huge_jpeg() -> bytes:  # 24 megapixels, as a phone takes them (flat areas: quick to make)
    img = Image.new("RGB", (6000, 4000), (90, 140, 200))
    img.paste(RED, (0, 0, 3000, 2000))
    img.paste(WHITE, (3000, 2000, 6000, 4000))
    return encoded(img, "JPEG", quality=70)


def half(data: bytes) -> bytes:
    return data[: len(data) // 2]


def corrupt_idat() -> bytes:
    data = bytearray(encoded(photo_like(64, 64), "PNG"))
    start = data.index(b"IDAT") + 4
    for i in range(start + 10, start + 60):
        data[i] ^= 0x5A
    return bytes(data)  # the CRC no longer matches


def tga() -> bytes:
    return encoded(quadrants(), "TGA")


# Each case: (name, file name, how to make it, expectation). Valid expectations name a check on the
# returned image; invalid ones a regular expression the one-line message must match.
Valid = dict
Invalid = str

CASES: list[tuple[str, str, object, object]] = [
    # -- valid, awkward ------------------------------------------------------------------------
    ("1x1_png", "one.png", lambda: encoded(Image.new("RGB", (1, 1), RED), "PNG"), Valid(size=(1, 1), colour=RED)),
    ("2x3_jpeg", "tiny.jpg", lambda: encoded(Image.new("RGB", (2, 3), BLUE), "JPEG", quality=100), Valid(size=(2, 3))),
    ("1x4000_png", "needle.png", lambda: encoded(Image.new("RGB", (1, 4000), GREEN), "PNG"), Valid(size=(1, MAX_SIDE_KEPT), colour=GREEN)),
    ("4000x1_png", "thread.png", lambda: encoded(Image.new("L", (4000, 1), 128), "PNG"), Valid(size=(MAX_SIDE_KEPT, 1), colour=(128, 128, 128))),
    ("3x9000_gif", "ribbon.gif", lambda: encoded(Image.new("RGB", (3, 9000), RED), "GIF"), Valid(max_side=MAX_SIDE_KEPT)),
    ("grayscale_png", "gray.png", lambda: encoded(Image.new("L", (30, 20), 77), "PNG"), Valid(colour=(77, 77, 77))),
    ("grayscale_jpeg", "gray.jpg", lambda: encoded(Image.new("L", (30, 20), 200), "JPEG", quality=100), Valid(colour=(200, 200, 200), tol=2)),
    ("bilevel_png", "ink.png", lambda: encoded(Image.new("1", (33, 17), 1), "PNG"), Valid(colour=WHITE)),
    ("bilevel_bmp", "ink.bmp", lambda: encoded(Image.new("1", (33, 17), 0), "BMP"), Valid(colour=(0, 0, 0))),
    ("16bit_gray_png", "depth16.png", sixteen_bit_png, Valid(size=(64, 16), check="gradient")),
    ("16bit_rgb_png", "rgb48.png", rgb48_png, Valid(size=(8, 4), colour=RED)),
    ("float32_tiff", "float.tif", lambda: float_tiff(False), Valid(size=(64, 32), check="gradient")),
    ("float32_tiff_some_nan", "float_nan.tiff", lambda: float_tiff(True), Valid(size=(64, 32))),
    ("int32_tiff", "int32.tif", lambda: encoded(Image.fromarray(np.full((8, 8), 40000, np.int32)), "TIFF"), Valid(colour=(156, 156, 156))),
    ("cmyk_jpeg", "print.jpg", cmyk_jpeg, Valid(colour=RED, tol=40)),
    ("palette_png", "palette.png", lambda: palette(False), Valid(left=BLUE, right=RED)),
    ("palette_transparent_png", "palette_trns.png", lambda: palette(True), Valid(left=WHITE, right=RED)),
    ("la_png", "la.png", la_png, Valid(colour=(0, 0, 0))),
    ("rgba_half_png", "glass.png", lambda: rgba(128), Valid(colour=(127, 127, 255), tol=2)),
    ("fully_transparent_png", "invisible.png", lambda: rgba(0), Valid(colour=WHITE)),
    ("animated_gif", "anim.gif", lambda: animated("GIF"), Valid(size=(40, 30), colour=RED, tol=8)),
    ("animated_webp", "anim.webp", lambda: animated("WEBP", lossless=True), Valid(size=(40, 30), colour=RED, tol=8)),
    ("multipage_tiff", "pages.tif", multipage_tiff, Valid(size=(40, 30), colour=RED)),
    ("exif_rotate_jpeg", "portrait.jpg", lambda: encoded(quadrants(), "JPEG", quality=95, exif=exif_with_orientation(6)),
     Valid(size=(48, 64), corners=(BLUE, RED, WHITE, GREEN))),
    ("exif_rotate_png", "turned.png", lambda: encoded(quadrants(), "PNG", exif=exif_with_orientation(3)),
     Valid(size=(64, 48), corners=(WHITE, BLUE, GREEN, RED))),
    ("exif_mirror_webp", "mirror.webp", lambda: encoded(quadrants(), "WEBP", lossless=True, exif=exif_with_orientation(2)),
     Valid(size=(64, 48), corners=(GREEN, RED, WHITE, BLUE))),
    ("broken_exif_jpeg", "badexif.jpg", jpeg_with_broken_exif, Valid(size=(64, 48))),
    ("webp_lossy", "photo.webp", lambda: encoded(photo_like(120, 80), "WEBP", quality=80), Valid(size=(120, 80))),
    ("webp_alpha", "alpha.webp", lambda: encoded(Image.new("RGBA", (20, 20), (*RED, 0)), "WEBP", lossless=True), Valid(colour=WHITE)),
    ("bmp_24bit", "plain.bmp", lambda: encoded(quadrants(), "BMP"), Valid(corners=(RED, GREEN, BLUE, WHITE))),
    ("ppm", "netpbm.ppm", lambda: encoded(quadrants(), "PPM"), Valid(corners=(RED, GREEN, BLUE, WHITE))),
    ("ico", "favicon.ico", lambda: encoded(Image.new("RGBA", (32, 32), (*GREEN, 255)), "ICO", sizes=[(32, 32)]), Valid(colour=GREEN)),
    ("progressive_jpeg", "prog.jpg", lambda: encoded(photo_like(90, 60), "JPEG", progressive=True), Valid(size=(90, 60))),
    ("lzw_tiff", "lzw.tiff", lambda: encoded(quadrants(), "TIFF", compression="tiff_lzw"), Valid(corners=(RED, GREEN, BLUE, WHITE))),
    ("png_named_jpg", "actually_png.jpg", lambda: encoded(quadrants(), "PNG"), Valid(corners=(RED, GREEN, BLUE, WHITE))),
    ("png_trailing_junk", "junk_tail.png", lambda: encoded(quadrants(), "PNG") + bytes(range(256)) * 2, Valid(size=(64, 48))),
    ("odd_file_name", "ünï cödé #1 (copy).png", lambda: encoded(quadrants(), "PNG"), Valid(size=(64, 48))),
    ("huge_jpeg_6000x4000", "huge.jpg", huge_jpeg, Valid(size=(2048, 1365), corners=(RED, (90, 140, 200), (90, 140, 200), WHITE), fast=True)),
    ("big_png_5200x3000", "big.png", big_png, Valid(size=(2048, 1182), corners=(RED, (90, 140, 200), (90, 140, 200), (90, 140, 200)), fast=True)),
    # -- invalid -------------------------------------------------------------------------------
    ("empty_file", "empty.png", lambda: b"", Invalid("empty file")),
    ("truncated_png", "cut.png", lambda: half(encoded(photo_like(200, 200), "PNG")), Invalid("damaged image.*(truncated|incomplete|broken)")),
    ("truncated_jpeg", "cut.jpg", lambda: half(encoded(photo_like(200, 200), "JPEG")), Invalid("damaged image.*truncated")),
    ("truncated_gif", "cut.gif", lambda: half(encoded(photo_like(100, 100), "GIF")), Invalid("damaged image")),
    ("truncated_webp", "cut.webp", lambda: half(encoded(photo_like(100, 100), "WEBP")), Invalid("damaged image")),
    ("truncated_tiff", "cut.tif", lambda: half(encoded(photo_like(100, 100), "TIFF")), Invalid("damaged image")),
    ("png_signature_only", "sig.png", lambda: b"\x89PNG\r\n\x1a\n", Invalid("damaged image \\(invalid or cut-off PNG header\\)")),
    ("jpeg_marker_only", "soi.jpg", lambda: b"\xff\xd8\xff", Invalid("damaged image \\(invalid or cut-off JPEG header\\)")),
    ("corrupt_png_data", "scrambled.png", corrupt_idat, Invalid("damaged image")),
    ("png_zero_width", "zero.png", lambda: png_bytes(0, 10, 8, 0), Invalid("damaged image")),
    ("text_as_png", "notes.png", lambda: b"shopping list:\n- eggs\n- milk\n", Invalid("text file")),
    ("html_as_jpg", "download.jpg", lambda: b"<!DOCTYPE html>\n<html><body>404 Not Found</body></html>\n", Invalid("HTML page")),
    ("pdf_as_png", "scan.png", lambda: b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj << /Type /Catalog >> endobj\n", Invalid("PDF document")),
    ("svg_as_png", "logo.png", lambda: b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>\n', Invalid("SVG")),
    ("eps_as_png", "figure.png", lambda: b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n", Invalid("PostScript")),
    ("zip_as_jpg", "archive.jpg", lambda: b"PK\x03\x04" + bytes(100), Invalid("ZIP archive")),
    ("random_bytes", "noise.jpg", lambda: np.random.default_rng(7).bytes(4096), Invalid("not an image file")),
    ("tga_not_accepted", "old.png", tga, Invalid("not an image file")),
    ("bomb_72M_png", "bomb72.png", lambda: png_bytes(9000, 8000, 1, 0), Invalid("72,000,000 pixels.*64,000,000-pixel limit")),
    ("bomb_120M_png", "bomb120.png", lambda: png_bytes(12000, 10000, 1, 0), Invalid("120,000,000 pixels.*limit")),
    ("bomb_196M_png", "bomb196.png", lambda: png_bytes(14000, 14000, 1, 0), Invalid("196,000,000 pixels.*decompression bomb")),
    ("directory", "folder.png/", None, Invalid("is a directory")),
    ("missing", "does_not_exist.png", None, Invalid("no such file")),
    ("broken_symlink", "dangling.png", None, Invalid("no such file \\(broken symlink\\)")),
    ("symlink_loop", "loop.png", None, Invalid("cannot open")),
    ("file_as_folder", "plain.png/inner.png", None, Invalid("cannot open|no such file")),
    ("named_pipe", "pipe.png", None, Invalid("not a regular file")),
]
VALID = [c[0] for c in CASES if isinstance(c[3], dict)]
INVALID = [c[0] for c in CASES if isinstance(c[3], str)]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("image_corpus")
    paths = {}
    for name, filename, make, _ in CASES:
        path = d / filename
        if make is not None:
            path.write_bytes(make())
        elif name == "directory":
            path.mkdir()
        elif name == "broken_symlink":
            path.symlink_to(d / "gone.png")
        elif name == "symlink_loop":
            path.symlink_to(path)
        elif name == "file_as_folder":
            path.parent.write_bytes(encoded(quadrants(), "PNG"))
        elif name == "named_pipe":
            os.mkfifo(path)
        paths[name] = path
    return paths


def test_corpus_is_large_enough():
    assert len(CASES) >= 35 and len(VALID) >= 15 and len(INVALID) >= 15
    assert len({c[0] for c in CASES}) == len(CASES) and len({c[1] for c in CASES}) == len(CASES)


def _close(a, b, tol) -> bool:
    return all(abs(int(x) - int(y)) <= tol for x, y in zip(a, b))


def check_valid(img: Image.Image, spec: dict) -> None:
    assert isinstance(img, Image.Image) and img.mode == "RGB"
    assert 1 <= min(img.size) and max(img.size) <= MAX_SIDE_KEPT
    assert not img.info  # no EXIF left over: opening the result again changes nothing
    tol = spec.get("tol", 3)
    if "size" in spec:
        assert img.size == spec["size"]
    if "max_side" in spec:
        assert max(img.size) == spec["max_side"]
    arr = np.asarray(img)
    if "colour" in spec:
        centre = arr[img.height // 2, img.width // 2]
        assert _close(centre, spec["colour"], tol), (centre, spec["colour"])
    if "left" in spec:
        assert _close(arr[img.height // 2, 1], spec["left"], tol) and _close(arr[img.height // 2, -2], spec["right"], tol)
    if "corners" in spec:  # top-left, top-right, bottom-left, bottom-right
        found = [arr[2, 2], arr[2, -3], arr[-3, 2], arr[-3, -3]]
        assert all(_close(f, c, 12) for f, c in zip(found, spec["corners"])), (found, spec["corners"])
    if spec.get("check") == "gradient":
        row = arr[img.height // 2, :, 0].astype(int)
        assert row[0] <= 2 and row[-1] >= 253 and (np.diff(row) >= 0).all()
    assert open_image(img).tobytes() == img.tobytes()  # idempotent


@pytest.mark.parametrize("case", VALID)
def test_valid_image_opens(corpus, case):
    spec = next(c[3] for c in CASES if c[0] == case)
    started = time.perf_counter()
    img = open_image(corpus[case])
    elapsed = time.perf_counter() - started
    check_valid(img, spec)
    if spec.get("fast"):
        assert elapsed < 20, f"{elapsed:.1f} s"  # generous: the machine is shared with a training job
    # bytes and a binary file object are read the same way as the path
    data = corpus[case].read_bytes()
    assert open_image(data).tobytes() == img.tobytes()
    with open(corpus[case], "rb") as f:
        assert open_image(f).tobytes() == img.tobytes()


@pytest.mark.parametrize("case", INVALID)
def test_invalid_input_is_refused(corpus, case):
    pattern = next(c[3] for c in CASES if c[0] == case)
    path = corpus[case]
    started = time.perf_counter()
    with pytest.raises(ImageError) as info:
        open_image(path)
    assert time.perf_counter() - started < 10
    message = str(info.value)
    assert isinstance(info.value, ValueError)
    assert "\n" not in message and message.startswith(str(path)), message
    assert re.search(pattern, message), message
    if path.is_file() and path.stat().st_size:  # the same bytes in memory: the same reason
        with pytest.raises(ImageError) as again:
            open_image(path.read_bytes(), name="upload.png")
        assert again.value.args[0].replace("upload.png", str(path)) == message


def test_bombs_are_refused_from_the_header(corpus, monkeypatch):
    """No pixel of a bomb is decoded: loading is forbidden, and the refusal still comes."""

    def no_decoding(self, *a, **k):
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    for case in ("bomb_72M_png", "bomb_120M_png", "bomb_196M_png"):
        with pytest.raises(ImageError, match="pixel|bomb"):
            open_image(corpus[case])


def test_pillow_globals_are_left_alone(corpus):
    before = Image.MAX_IMAGE_PIXELS
    for case in ("bomb_72M_png", "bomb_120M_png", "bomb_196M_png", "1x1_png"):
        try:
            open_image(corpus[case])
        except ImageError:
            pass
    assert Image.MAX_IMAGE_PIXELS == before
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    # and no source file switches them
    for path in [*ROOT.joinpath("vizcap").rglob("*.py"), *ROOT.joinpath("train").rglob("*.py")]:
        text = path.read_text()
        assert not re.search(r"LOAD_TRUNCATED_IMAGES\s*=", text), path
        assert not re.search(r"MAX_IMAGE_PIXELS\s*=", text), path
    assert MAX_PIXELS == 64_000_000 and "MAX_PIXELS" in (vimages.__doc__ or "")


def test_limit_holds_whatever_pillow_is_told(corpus, monkeypatch):
    """Other code may switch Pillow's own bomb check off; MAX_PIXELS still applies, from the header."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    for case, pixels in (("bomb_72M_png", "72,000,000"), ("bomb_196M_png", "196,000,000")):
        with pytest.raises(ImageError, match=f"{pixels} pixels, over the 64,000,000-pixel limit"):
            open_image(corpus[case])
    assert open_image(corpus["huge_jpeg_6000x4000"]).size == (2048, 1365)


def test_unreadable_file_simulated(corpus, monkeypatch):
    """As root, chmod 000 does not stop reading; the permission error is simulated instead."""
    import builtins

    target = str(corpus["1x1_png"])
    real_open = builtins.open

    def guarded(file, *args, **kwargs):
        if str(file) == target:
            raise PermissionError(13, "Permission denied", target)
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", guarded)
    with pytest.raises(ImageError, match=re.escape(target) + ": permission denied"):
        open_image(target)


def test_control_characters_in_a_name_stay_on_one_line(tmp_path):
    path = tmp_path / "two\nlines.png"
    path.write_bytes(b"not an image")
    with pytest.raises(ImageError) as info:
        open_image(path)
    assert "\n" not in str(info.value) and "two\\nlines.png" in str(info.value)


def test_pil_images_and_odd_sources(corpus):
    lazy = Image.open(corpus["truncated_png"])  # opened, never loaded: the damage shows on load
    with pytest.raises(ImageError, match="truncated|damaged"):
        open_image(lazy)
    pil = Image.open(corpus["exif_rotate_jpeg"])
    assert open_image(pil).size == (48, 64)
    for bad in (None, 3.5, object(), ["a.png"]):
        with pytest.raises(ImageError, match="expected a path"):
            open_image(bad)
    with pytest.raises(ImageError, match="no file name"):
        open_image("")
    with pytest.raises(ImageError, match="empty file"):
        open_image(b"")
    with pytest.raises(ImageError, match="text mode"):
        open_image(io.StringIO("hello"))
    with pytest.raises(ImageError, match="cannot open"):
        open_image("nul\x00byte.png")
    with pytest.raises(ImageError, match="cannot open|no such file"):
        open_image("x" * 5000 + ".png")
    with pytest.raises(ImageError, match="not a regular file"):
        open_image("/dev/zero")


# -- arrays ----------------------------------------------------------------------------------------

GOOD_ARRAYS = {
    "uint8_rgb": (np.full((4, 5, 3), 200, np.uint8), (200, 200, 200)),
    "uint8_gray": (np.full((4, 5), 9, np.uint8), (9, 9, 9)),
    "hw1": (np.full((4, 5, 1), 30, np.uint8), (30, 30, 30)),
    "rgba": (np.dstack([np.full((4, 5, 3), 0, np.uint8), np.zeros((4, 5), np.uint8)]), WHITE),
    "bool": (np.ones((3, 3), bool), WHITE),
    "float01": (np.full((3, 3, 3), 0.5), (127, 127, 127)),
    "float255": (np.full((3, 3, 3), 100.0, np.float32), (100, 100, 100)),
    "int64_small": (np.full((3, 3, 3), 17, np.int64), (17, 17, 17)),
    "uint16": (np.full((3, 3), 65535, np.uint16), WHITE),
    "strided": (np.full((8, 10, 3), 60, np.uint8)[::2, ::-2], (60, 60, 60)),
    "1x4000": (np.zeros((1, 4000, 3), np.uint8), (0, 0, 0)),
}


@pytest.mark.parametrize("name", sorted(GOOD_ARRAYS))
def test_good_arrays(name):
    arr, colour = GOOD_ARRAYS[name]
    img = open_image(arr)
    assert img.mode == "RGB" and max(img.size) <= MAX_SIDE_KEPT
    assert _close(np.asarray(img)[0, 0], colour, 1), (np.asarray(img)[0, 0], colour)


BAD_ARRAYS = {
    "nan_filled": (np.full((8, 8, 3), np.nan), "NaN"),
    "some_nan": (np.where(np.eye(8)[..., None] > 0, np.nan, 0.5) * np.ones((1, 1, 3)), "NaN"),
    "inf": (np.full((4, 4), np.inf, np.float32), "NaN or infinite"),
    "channels_first": (np.zeros((3, 32, 32), np.uint8), "channels first"),
    "two_channels": (np.zeros((8, 8, 2), np.uint8), "got shape \\(8, 8, 2\\)"),
    "one_d": (np.zeros(100, np.uint8), "got shape \\(100,\\)"),
    "four_d": (np.zeros((1, 8, 8, 3), np.uint8), "got shape"),
    "scalar": (np.array(5, np.uint8), "got shape \\(\\)"),
    "empty": (np.zeros((0, 10, 3), np.uint8), "no pixels"),
    "object": (np.array([[object()]]), "dtype"),
    "complex": (np.zeros((4, 4), np.complex64), "dtype"),
    "strings": (np.array([["a", "b"]]), "dtype"),
    "negative_ints": (np.full((4, 4), -3, np.int32), "outside"),
    "too_many_pixels": (np.broadcast_to(np.uint8(0), (MAX_PIXELS // 1000 + 1, 1000)), "pixel limit"),
}


@pytest.mark.parametrize("name", sorted(BAD_ARRAYS))
def test_bad_arrays(name):
    arr, pattern = BAD_ARRAYS[name]
    with pytest.raises(ImageError) as info:
        open_image(arr)
    message = str(info.value)
    assert message.startswith("<array>: ") and "\n" not in message and re.search(pattern, message), message


def test_captioner_sees_the_same_pixels(tiny_captioner, corpus):
    """A path, its bytes and its decoded picture give the same caption (one front door)."""
    path = corpus["exif_rotate_jpeg"]
    assert tiny_captioner.caption(str(path)) == tiny_captioner.caption(path.read_bytes()) == \
        tiny_captioner.caption(open_image(path))
    with pytest.raises(ImageError, match=re.escape(str(corpus["pdf_as_png"]))):
        tiny_captioner.caption(str(corpus["pdf_as_png"]))
    with pytest.raises(ImageError):
        tiny_captioner.explain(np.full((8, 8, 3), np.nan))


# -- the same corpus through the CLI, in one batch ------------------------------------------------


def test_cli_batch(tiny_checkpoint, corpus):
    names = [c[0] for c in CASES]
    paths = [str(corpus[n]) for n in names]
    started = time.perf_counter()
    proc = run_module("-m", "vizcap", "caption", *paths, "--json", "--checkpoint", str(tiny_checkpoint), timeout=300)
    elapsed = time.perf_counter() - started
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert len(lines) == len(paths), proc.stdout[-2000:]
    records = [json.loads(line) for line in lines]
    assert [r["image"] for r in records] == paths  # in input order, one line each
    for name, record in zip(names, records):
        expectation = next(c[3] for c in CASES if c[0] == name)
        if isinstance(expectation, dict):
            assert "error" not in record, record
            assert isinstance(record["caption"], str) and len(record["tokens"]) == len(record["token_probs"])
        else:
            assert set(record) == {"image", "error"}, record
            assert record["error"].startswith(record["image"]) and "\n" not in record["error"], record
            assert re.search(expectation, record["error"]), record
    print(f"CLI batch of {len(paths)} inputs: {elapsed:.1f} s")
