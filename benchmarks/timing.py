"""The one timing helper of the benchmarks: interleaved repeats, medians and paired ratios, the
machine's load, and Instrument (time spent inside patched methods, per label)."""

from __future__ import annotations

import os
import statistics
import time


def interleaved(variants: dict, repeats: int, warmup: int = 1) -> dict[str, list[float]]:
    """Seconds per call of each variant, `repeats` samples each. Within a repeat every variant runs
    once, in an order that is reversed on every other repeat."""
    names = list(variants)
    for _ in range(warmup):
        for n in names:
            variants[n]()
    samples = {n: [] for n in names}
    for r in range(repeats):
        for n in (names if r % 2 == 0 else names[::-1]):
            t0 = time.perf_counter()
            variants[n]()
            samples[n].append(time.perf_counter() - t0)
    return samples


def med(xs) -> float:
    return float(statistics.median(xs))


def paired_ratio(a: list[float], b: list[float]) -> float:
    """Median over repeats of a[i] / b[i] (the pair was measured in the same repeat)."""
    return med([x / y for x, y in zip(a, b)])


def ms(x: float) -> str:
    return f"{x * 1e3:.1f} ms" if x < 10 else f"{x:.1f} s"


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


class Instrument:
    """Seconds spent inside patched methods, per label: `patch(owner, attr, label)` wraps
    owner.attr, `undo()` puts every original back. calls[label] lists each counted call's seconds.
    With outermost=True only the outermost of nested patched calls counts (nothing is counted
    twice); `active` switches counting on and off (a warm-up runs uncounted)."""

    def __init__(self, outermost: bool = False):
        self.outermost, self.active = outermost, True
        self.calls: dict[str, list[float]] = {}
        self._depth = 0
        self._patched: list[tuple[object, str, object]] = []

    def patch(self, owner, attr: str, label: str) -> None:
        fn = getattr(owner, attr)

        def wrapper(*a, **k):
            self._depth += 1
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                self._depth -= 1
                if self.active and (self._depth == 0 or not self.outermost):
                    self.calls.setdefault(label, []).append(time.perf_counter() - t0)

        self._patched.append((owner, attr, fn))
        setattr(owner, attr, wrapper)

    def total(self, label: str) -> float:
        return sum(self.calls.get(label, []))

    def undo(self) -> None:
        for owner, attr, fn in reversed(self._patched):
            setattr(owner, attr, fn)
        self._patched.clear()
