"""Seeded fuzzing of the two places where untrusted values enter: image bytes (`open_image`) and
decoding parameters (`DecodingParams` / `validate`).

Images: random bytes and mutated valid PNG/JPEG/GIF/BMP/TIFF/WebP files must either decode to an RGB
picture or raise ImageError (never another exception), each within a bounded CPU time.
Parameters: every combination either constructs (and validates clean) or raises ValueError with one
short line — exactly when an independent statement of the rules says it is invalid."""

from __future__ import annotations

import io
import math
import random
import struct
import time
import zlib
from fractions import Fraction

import numpy as np
import pytest
from PIL import Image

from vizcap.decoding import MAX_BEAMS, STRATEGIES, DecodingParams, validate
from vizcap.images import MAX_SIDE_KEPT, ImageError, open_image

# Pillow warns about the damage it meets in broken files ("Corrupt EXIF data", "Truncated File
# Read"): expected here, and not what these tests check.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

SEED = 20240607
N_IMAGE_CASES = 600
N_PARAM_CASES = 1500
CPU_SECONDS_PER_CASE = 3.0  # CPU time, not wall time: the machine may be shared with training


def _save(img: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kwargs)
    return buf.getvalue()


@pytest.fixture(scope="module")
def seeds() -> dict[str, bytes]:
    rng = np.random.default_rng(SEED)
    photo = Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8))
    return {
        "png": _save(photo, "PNG"),
        "png_palette": _save(photo.convert("P"), "PNG"),
        "png_rgba": _save(photo.convert("RGBA"), "PNG"),
        "png16": _save(Image.fromarray(rng.integers(0, 65535, (12, 16), dtype=np.uint16)), "PNG"),
        "jpeg": _save(photo, "JPEG", quality=90),
        "jpeg_progressive": _save(photo, "JPEG", progressive=True),
        "jpeg_cmyk": _save(photo.convert("CMYK"), "JPEG"),
        "gif": _save(photo, "GIF"),
        "bmp": _save(photo, "BMP"),
        "tiff": _save(photo, "TIFF"),
        "webp": _save(photo, "WEBP", quality=70),
    }


def _set_png_size(data: bytearray, rng: random.Random) -> None:
    w, h = rng.choice([0, 1, 2, 255, 65535, 2**31 - 1, rng.randrange(2**32)]), rng.choice([0, 1, 3, 9000, rng.randrange(2**32)])
    data[16:24] = struct.pack(">II", w, h)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])) & 0xFFFFFFFF)  # a valid CRC: the lie gets in


def _set_jpeg_size(data: bytearray, rng: random.Random) -> None:
    for marker in (b"\xff\xc0", b"\xff\xc2"):
        i = data.find(marker)
        if i >= 0:
            data[i + 5 : i + 9] = struct.pack(">HH", rng.randrange(65536), rng.randrange(65536))
            return


def mutate(data: bytes, fmt: str, rng: random.Random) -> bytes:
    out = bytearray(data)
    kind = rng.choice(["flip", "flip_header", "truncate", "insert", "splice", "size", "zero_run"])
    if kind == "flip":
        for _ in range(rng.randint(1, 30)):
            out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
    elif kind == "flip_header":
        for _ in range(rng.randint(1, 6)):
            out[rng.randrange(min(64, len(out)))] = rng.randrange(256)
    elif kind == "truncate":
        out = out[: rng.randrange(len(out))]
    elif kind == "insert":
        at = rng.randrange(len(out))
        out[at:at] = rng.randbytes(rng.randint(1, 200))
    elif kind == "splice":
        a, b = sorted(rng.randrange(len(out)) for _ in range(2))
        out = out[:a] + out[b:] + out[a:b]
    elif kind == "zero_run":
        at = rng.randrange(len(out))
        out[at : at + rng.randint(1, 100)] = bytes(min(100, len(out) - at))
    elif fmt.startswith("png"):
        _set_png_size(out, rng)
    elif fmt.startswith("jpeg"):
        _set_jpeg_size(out, rng)
    else:  # gif, bmp, tiff, webp: overwrite the bytes where their sizes live
        for _ in range(4):
            out[rng.randrange(6, min(30, len(out)))] = rng.randrange(256)
    return bytes(out)


def image_cases(seeds: dict[str, bytes]):
    rng = random.Random(SEED)
    names = sorted(seeds)
    for i in range(N_IMAGE_CASES):
        r = rng.random()
        if r < 0.2:  # pure noise, sometimes behind a real signature
            data = rng.randbytes(rng.choice([0, 1, 7, 64, 1000, 5000]))
            if r < 0.1:
                data = rng.choice([b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0", b"GIF89a", b"BM", b"II*\x00", b"RIFF\x00\x00\x00\x00WEBPVP8 "]) + data
            yield i, "noise", data
        else:
            fmt = names[i % len(names)]
            data = seeds[fmt]
            for _ in range(rng.choice([1, 1, 1, 2, 3])):
                data = mutate(data, fmt, rng)
            yield i, fmt, data


def test_image_fuzz(seeds):
    outcomes = {"decoded": 0, "refused": 0}
    failures, slowest = [], (0.0, None)
    started = time.process_time()
    for i, fmt, data in image_cases(seeds):
        t0 = time.process_time()
        try:
            img = open_image(data, name=f"case{i}")
        except ImageError as e:
            message = str(e)
            if not message.startswith(f"case{i}: ") or "\n" in message:
                failures.append((i, fmt, f"bad message {message!r}"))
            outcomes["refused"] += 1
        except Exception as e:  # the bug this test exists to find
            failures.append((i, fmt, f"{type(e).__name__}: {e}"))
        else:
            if img.mode != "RGB" or max(img.size) > MAX_SIDE_KEPT or min(img.size) < 1:
                failures.append((i, fmt, f"decoded to {img.mode} {img.size}"))
            outcomes["decoded"] += 1
        spent = time.process_time() - t0
        slowest = max(slowest, (spent, (i, fmt)))
        if spent > CPU_SECONDS_PER_CASE:
            failures.append((i, fmt, f"took {spent:.1f} s of CPU"))
    assert not failures, failures[:10]
    assert sum(outcomes.values()) == N_IMAGE_CASES >= 500
    assert outcomes["refused"] > 100 and outcomes["decoded"] > 20, outcomes  # both paths were exercised
    assert time.process_time() - started < 45
    print(f"{outcomes}, slowest case {slowest[1]} {slowest[0] * 1000:.0f} ms CPU")


def test_image_fuzz_is_deterministic(seeds):
    a = [d for _, _, d in image_cases(seeds)]
    b = [d for _, _, d in image_cases(seeds)]
    assert a == b


# -- decoding parameters ---------------------------------------------------------------------------

HUGE = 10**5000  # beyond the digits Python will turn into a string by default
INTS = [-(2**70), -1, 0, 1, 2, 3, 16, 17, 20, 255, 256, 257, 2**31, 2**63 - 1, 2**63, HUGE, -HUGE]
FLOATS = [0.0, -0.0, 1e-12, 0.5, 1.0, 1.0000001, 2.5, 99.9, 100.0, 100.5, -0.5, -10.0, 10.0, -10.0001, 1e308,
          float("nan"), float("inf"), float("-inf"), np.float64(0.7)]
ODD = [True, False, None, "1", "", "greedy", "nan", b"1", [1], {"a": 1}, (1,), complex(1, 0), Fraction(1, 2),
       np.int64(3), np.float32(0.5), "x" * 10_000, "beam\nsample", object()]
POOL = INTS + FLOATS + ODD
FIELDS = ("strategy", "beams", "top_k", "top_p", "temperature", "length_penalty", "seed", "max_tokens")


def _int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _real(v) -> bool:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    return isinstance(v, int) or not (math.isnan(v) or math.isinf(v))


RULES = {  # the documented rules, written independently of vizcap.decoding.validate
    "strategy": lambda v: isinstance(v, str) and v in STRATEGIES,
    "beams": lambda v: _int(v) and 1 <= v <= MAX_BEAMS,
    "top_k": lambda v: _int(v) and v >= 0,
    "top_p": lambda v: _real(v) and 0 < v <= 1,
    "temperature": lambda v: _real(v) and 0 < v <= 100,
    "length_penalty": lambda v: _real(v) and -10 <= v <= 10,
    "seed": lambda v: v is None or (_int(v) and 0 <= v < 2**63),
    "max_tokens": lambda v: _int(v) and 1 <= v <= 256,
}
GOOD = {"strategy": list(STRATEGIES), "beams": [1, 3, 16], "top_k": [0, 5, 2**63], "top_p": [0.9, 1, 1.0],
        "temperature": [0.7, 1, 100], "length_penalty": [-10, 0.0, 1.0, 10], "seed": [None, 0, 7, 2**63 - 1],
        "max_tokens": [1, 20, 256]}


def param_cases():
    rng = random.Random(SEED)
    for i in range(N_PARAM_CASES):
        kwargs = {}
        for name in FIELDS:
            r = rng.random()
            if r < 0.8:
                kwargs[name] = rng.choice(GOOD[name])
            elif r < 0.88:
                continue  # the default
            else:
                kwargs[name] = rng.choice(POOL)
        yield i, kwargs


def test_decoding_params_fuzz():
    valid = invalid = 0
    failures = []
    for i, kwargs in param_cases():
        expected = all(RULES[k](v) for k, v in kwargs.items())
        try:
            params = DecodingParams(**kwargs)
        except ValueError as e:
            message = str(e)
            invalid += 1
            if expected:
                failures.append((i, kwargs, f"refused a valid set: {message}"))
            elif "\n" in message or len(message) > 200 or not any(message.startswith(k) for k in FIELDS):
                failures.append((i, kwargs, f"bad message {message[:300]!r}"))
        except Exception as e:
            failures.append((i, kwargs, f"{type(e).__name__}: {str(e)[:200]}"))
        else:
            valid += 1
            if not expected:
                failures.append((i, kwargs, "accepted an invalid set"))
            elif validate(params) != []:
                failures.append((i, kwargs, f"constructed but validate says {validate(params)}"))
    assert not failures, [(i, {k: str(v)[:40] for k, v in kw.items()}, m) for i, kw, m in failures[:8]]
    assert valid + invalid == N_PARAM_CASES and valid > 200 and invalid > 500, (valid, invalid)


@pytest.mark.parametrize("name", FIELDS)
def test_every_field_reports_its_own_name(name):
    for value in POOL:
        if RULES[name](value):
            assert validate(DecodingParams(**{name: value})) == []
            continue
        with pytest.raises(ValueError) as info:
            DecodingParams(**{name: value})
        message = str(info.value)
        assert message.startswith(name) and "\n" not in message and len(message) <= 200, message


def test_validate_lists_every_problem():
    """validate() of an object that bypassed __post_init__ names every bad field, one line each."""
    p = object.__new__(DecodingParams)
    for name, value in zip(FIELDS, ["nope", 0, -1, float("nan"), 0, HUGE, -1, 0]):
        object.__setattr__(p, name, value)
    problems = validate(p)
    assert [m.split()[0] for m in problems] == list(FIELDS)
    assert all("\n" not in m and len(m) <= 200 for m in problems)
