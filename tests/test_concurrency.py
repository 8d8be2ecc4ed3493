"""One Captioner shared by many threads (the app serves every session from one loaded model). The
attention hooks write into the cache of the innermost open `capture()` of the *calling* context, so:

* captures open in several threads at the same moment each hold exactly their own thread's maps
  (barriers make every thread compute while all the others' captures are open);
* a closed capture records nothing more, and leaves no capture behind in its thread;
* explain() calls running side by side, each inside an outer capture of its own thread, give what
  they give alone (gradient relevancy included), and the outer captures stay empty.

(That many plain explain() calls in threads equal sequential ones is test_explain's
test_threads_explaining_at_once_get_their_own_maps.)
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from vizcap import hooks
from vizcap.explain import explain
from vizcap.scenes import render_scene

THREADS = 6


def _forward(cap, image) -> None:
    """One teacher-forced pass (encoder, mapper, decoder) that fires every hook point once."""
    model = cap.model
    with torch.no_grad():
        memory = model.encode(cap.pixels([image]))
        prefix, _ = model.prefix(memory)
        model.decode(memory, prefix, torch.tensor([[cap.cfg.bos_id, 5, 7, 9]]))


def _snapshot(cache) -> dict[str, list[np.ndarray]]:
    return {name: [t.numpy().copy() for t in cache[name]] for name in cache.names()}


def _equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(
        len(a[k]) == len(b[k]) and all(np.array_equal(x, y) for x, y in zip(a[k], b[k])) for k in a)


def test_open_captures_in_every_thread_hold_only_their_own_maps(tiny_model):
    cap = tiny_model("both")
    images = [render_scene(400 + t).image for t in range(THREADS)]
    alone = []
    for image in images:  # what each thread's capture must hold: its own pass, computed with no one else
        with hooks.capture() as cache:
            _forward(cap, image)
        alone.append(_snapshot(cache))
    assert alone[0] and not _equal(alone[0], alone[1])  # different images, different maps

    opened, computed, checked = (threading.Barrier(THREADS, timeout=600) for _ in range(3))

    def worker(t: int) -> dict:
        with hooks.capture() as cache:
            opened.wait()  # every thread's capture is open before anyone computes
            _forward(cap, images[t])
            computed.wait()  # and stays open until everyone has computed
            inside = _snapshot(cache)
            checked.wait()
        active_after = hooks._ACTIVE.get()
        _forward(cap, images[t])  # after the block: nothing more goes into the closed capture
        return {"inside": inside, "after": _snapshot(cache), "active_after": active_after}

    with ThreadPoolExecutor(THREADS) as pool:
        results = list(pool.map(worker, range(THREADS)))
    for t, r in enumerate(results):
        assert _equal(r["inside"], alone[t]), f"thread {t}'s capture does not hold exactly its own maps"
        assert _equal(r["after"], alone[t]), f"thread {t}'s closed capture kept recording"
        assert r["active_after"] is None, f"thread {t} still has a capture open after its block"
    assert hooks._ACTIVE.get() is None


def _fingerprint(exp) -> tuple:
    cross = None if exp.cross is None else exp.cross.tobytes()
    return (exp.caption, tuple(exp.token_ids), exp.probs.tobytes(), cross, exp.self_full.tobytes(),
            exp.maps("rollout").tobytes(), exp.maps("relevancy").tobytes())


def test_explains_side_by_side_inside_open_captures(tiny_model):
    """Each thread opens a capture, waits until every thread has one open, then explains its own image
    (relevancy runs a gradient pass with a capture of its own): results equal the sequential ones, and
    the outer captures get nothing, since explain's inner capture is the innermost in its thread."""
    cap = tiny_model("both")
    images = [render_scene(500 + t).image for t in range(THREADS)]
    kinds = [dict(strategy="greedy"), dict(strategy="beam", beams=3), dict(strategy="sample", seed=4, top_k=8)]
    jobs = [(images[t], dict(kinds[t % 3], max_tokens=8)) for t in range(THREADS)]
    alone = [_fingerprint(explain(cap, image, **kw)) for image, kw in jobs]
    assert len({a[:2] for a in alone}) > 2, "the jobs should differ"

    opened = threading.Barrier(THREADS, timeout=600)

    def worker(t: int):
        image, kw = jobs[t]
        with hooks.capture() as outer:
            opened.wait()
            got = _fingerprint(explain(cap, image, **kw))
            return got, outer.names()

    with ThreadPoolExecutor(THREADS) as pool:
        results = list(pool.map(worker, range(THREADS)))
    for t, (got, outer_names) in enumerate(results):
        assert got == alone[t], f"thread {t}'s explanation differs from its sequential run ({jobs[t][1]})"
        assert outer_names == [], f"thread {t}'s outer capture saw {outer_names[:3]}"
