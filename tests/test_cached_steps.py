"""vizcap.decoding.CachedSteps, the one-token decoder step used by explain() and generate_greedy():
its logits, probabilities and captured attention must be bitwise those of calling the transformers
decoder, for every mode and strategy, and it must stand aside whenever that is not certain."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import vizcap.decoding as decoding
from conftest import make_tiny_captioner
from vizcap.explain import explain
from vizcap.scenes import render_scene

STRATEGIES = [dict(strategy="greedy"), dict(strategy="beam", beams=3, length_penalty=0.7),
              dict(strategy="sample", seed=4, top_k=5)]
FIELDS = ("token_ids", "probs", "top_ids", "top_probs", "self_full", "cross_full", "mapper", "encoder", "score")


@pytest.fixture(scope="module")
def images():
    return [render_scene(seed).image for seed in (200, 201)]


def _same(a, b) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return a is not None and b is not None and a.shape == b.shape and np.array_equal(a, b)
    return a == b


def _without_fast_path(monkeypatch):
    monkeypatch.setattr(decoding.CachedSteps, "supports", staticmethod(lambda decoder: False))


@pytest.mark.parametrize("model", ["both", "prefix", "cross", "vit"])
def test_explanations_are_bitwise_those_of_the_decoder(tiny_model, images, model, monkeypatch):
    cap = tiny_model(model)
    fast = [explain(cap, img, max_tokens=8, **p) for img in images for p in STRATEGIES]
    fast_captions = cap.generate_greedy(cap.pixels(images), 8)
    with monkeypatch.context() as m:
        _without_fast_path(m)
        slow = [explain(cap, img, max_tokens=8, **p) for img in images for p in STRATEGIES]
        slow_captions = cap.generate_greedy(cap.pixels(images), 8)
    assert fast_captions == slow_captions
    for a, b in zip(fast, slow):
        for name in FIELDS:
            assert _same(getattr(a, name), getattr(b, name)), (model, a.params.strategy, name)
        assert a.beam_tree == b.beam_tree and a.candidates == b.candidates
        if len(a):
            assert np.array_equal(a.maps("relevancy"), b.maps("relevancy"))



@pytest.mark.parametrize("model", ["both", "prefix", "cross", "vit"])
def test_the_fast_path_is_taken_for_the_models_vizcap_builds(tiny_model, images, model):
    """After the first pass over the prompt, no step may go through the decoder's forward(): if
    transformers changed what CachedSteps relies on and it stood aside, this fails."""
    cap = tiny_model(model)
    assert decoding.CachedSteps.supports(cap.model.decoder)
    # a pre-hook on the decoder's top module is counted by the spy but must not disable the fast path,
    # so the spy sits on forward itself
    calls = []
    original = cap.model.decoder.forward

    def spy(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    cap.model.decoder.forward = spy
    try:
        for params in STRATEGIES:
            calls.clear()
            e = explain(cap, images[0], max_tokens=6, **params)
            assert len(e.beam_tree) > 1 and calls == [1], (model, params, len(calls))
        calls.clear()
        tokens, _ = cap.generate_greedy(cap.pixels(images), 6)
        assert max(len(t) for t in tokens) > 1 and calls == [1]
    finally:
        del cap.model.decoder.forward


def test_a_normal_cli_run_writes_nothing_to_stderr(tmp_path):
    from conftest import run_module

    path = tmp_path / "scene.png"
    render_scene(5).image.save(path)
    for extra in ([], ["--strategy", "beam", "--beams", "3"], ["--maps", "cross_attention,rollout,relevancy", "--json"]):
        done = run_module("-m", "vizcap", "caption", str(path), *extra)
        assert done.returncode == 0 and done.stdout.strip(), done.stderr
        assert done.stderr == "", done.stderr


def test_it_stands_aside_for_a_foreign_hook(images):
    cap = make_tiny_captioner()  # a private one: the hook must not reach other tests
    seen = []
    handle = cap.model.decoder.transformer.h[0].mlp.register_forward_hook(lambda mod, inp, out: seen.append(1))
    try:
        assert not decoding.CachedSteps.supports(cap.model.decoder)
        seen.clear()
        e = explain(cap, images[0], max_tokens=5)
        assert len(seen) == len(e.beam_tree)  # the hook saw every step: the decoder itself was called
    finally:
        handle.remove()


def test_it_stands_aside_in_training_mode(images):
    cap = make_tiny_captioner()
    cap.model.decoder.train()
    assert not decoding.CachedSteps.supports(cap.model.decoder)


def test_the_fast_path_is_taken_for_a_hugging_face_vit_gpt2(tmp_path, images):
    """A VisionEncoderDecoderModel's GPT-2 goes through the same steps: one decoder call per caption."""
    import vizcap
    from hub_fixtures import vit_gpt2

    cap = vizcap.load(vit_gpt2(tmp_path / "vit-gpt2"))
    assert decoding.CachedSteps.supports(cap.decoder)
    calls = []
    original = cap.decoder.forward

    def spy(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    cap.decoder.forward = spy
    try:
        for params in (dict(strategy="greedy"), dict(strategy="beam", beams=3)):
            calls.clear()
            e = cap.explain(images[0], max_tokens=6, **params)
            assert len(e.beam_tree) > 1 and calls == [1], (params, len(calls))
    finally:
        del cap.decoder.forward


def test_a_normal_cli_run_on_hugging_face_folders_writes_nothing_to_stderr(tmp_path):
    from conftest import run_module
    from hub_fixtures import blip, vit_gpt2

    path = tmp_path / "scene.png"
    render_scene(5).image.save(path)
    for folder in (vit_gpt2(tmp_path / "vit-gpt2"), blip(tmp_path / "blip")):
        done = run_module("-m", "vizcap", "caption", str(path), "--checkpoint", str(folder), "--strategy", "beam",
                          "--maps", "cross_attention,rollout,relevancy", "--json")
        assert done.returncode == 0 and done.stdout.strip(), done.stderr
        assert done.stderr == "", done.stderr  # no "Loading weights" bar off a terminal, no padding warning
