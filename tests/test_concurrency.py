"""One Captioner shared by many threads (the app serves every session from one loaded model): 8
threads × 10 `explain` calls on different images with different strategies give exactly what the
same calls give one after another — captions, token ids, probabilities and every cross-attention map
bit for bit. The attention hooks record into a per-context cache, so no call sees another's maps."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from vizcap.scenes import render_scene

THREADS, CALLS = 8, 10
MAX_TOKENS = 8  # enough steps to interleave; short enough to keep the test quick


def _strategy(k: int) -> dict:
    return [
        dict(strategy="greedy"),
        dict(strategy="beam", beams=3),
        dict(strategy="sample", seed=k, top_k=8, temperature=1.3),
    ][k % 3]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> list:
    """Twenty different images, half as files (through open_image's file path), half as arrays."""
    d = tmp_path_factory.mktemp("concurrency")
    out = []
    for i in range(20):
        image = render_scene(300 + i).image
        if i % 2:
            out.append(np.asarray(image).copy())
        else:
            path = d / f"scene_{i}.png"
            image.save(path)
            out.append(str(path))
    return out


def _job(k: int, inputs) -> tuple:
    return inputs[k % len(inputs)], dict(_strategy(k), max_tokens=MAX_TOKENS)


def _summary(exp) -> dict:
    return {
        "caption": exp.caption,
        "token_ids": list(exp.token_ids),
        "probs": exp.probs.tobytes(),
        "cross": None if exp.cross is None else exp.cross.tobytes(),
        "cross_shape": None if exp.cross is None else exp.cross.shape,
        "self_full": exp.self_full.tobytes(),
        "seed": exp.seed,
        "score": exp.score,
    }


def test_threads_match_sequential(tiny_captioner, inputs):
    captioner = tiny_captioner
    assert captioner.cfg.mode != "prefix"  # cross-attention maps exist to compare
    jobs = [_job(k, inputs) for k in range(THREADS * CALLS)]
    expected = [_summary(captioner.explain(image, **kwargs)) for image, kwargs in jobs]
    assert len({e["caption"] + str(e["token_ids"]) for e in expected}) > 3  # the calls really differ

    barrier = threading.Barrier(THREADS)
    seen_threads = set()

    def worker(t: int) -> list[tuple[int, dict]]:
        barrier.wait()  # start together, so the calls overlap
        seen_threads.add(threading.get_ident())
        results = []
        for j in range(CALLS):
            k = t + THREADS * j  # thread t handles every 8th job: neighbours run side by side
            image, kwargs = jobs[k]
            results.append((k, _summary(captioner.explain(image, **kwargs))))
        return results

    with ThreadPoolExecutor(THREADS) as pool:
        batches = list(pool.map(worker, range(THREADS)))
    assert len(seen_threads) == THREADS
    got = dict(item for batch in batches for item in batch)
    assert sorted(got) == list(range(THREADS * CALLS))
    mismatched = [k for k in got if got[k] != expected[k]]
    assert not mismatched, f"{len(mismatched)} of {len(got)} calls differ, e.g. job {mismatched[0]}: " \
                           f"{jobs[mismatched[0]][1]}"
    for k, summary in got.items():  # and the maps are those of the call's own caption
        if summary["cross_shape"] is not None:
            assert summary["cross_shape"][0] == len(summary["token_ids"])


def test_threads_never_leak_captures(tiny_captioner, inputs):
    """Outside explain() the hooks record nothing, in any thread, even while others are capturing."""
    from vizcap.hooks import _ACTIVE

    stop = threading.Event()
    leaks = []

    def watcher():
        while not stop.is_set():
            if _ACTIVE.get() is not None:
                leaks.append("a capture became visible in an unrelated thread")
            tiny_captioner.caption(inputs[1])

    t = threading.Thread(target=watcher)
    t.start()
    try:
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda k: tiny_captioner.explain(inputs[k], max_tokens=4), range(8)))
    finally:
        stop.set()
        t.join()
    assert not leaks and _ACTIVE.get() is None
