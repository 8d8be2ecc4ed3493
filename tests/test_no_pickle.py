"""No pickle anywhere: checkpoints are safetensors + JSON, and loading one never unpickles.

With pickle.load/loads/Unpickler and torch.load made to fail, a checkpoint still loads and still
captions and explains (a tiny trained checkpoint, and the shipped model). A static check keeps
`torch.load(`, pickle and joblib out of vizcap/ and train/."""

from __future__ import annotations

import _pickle
import io
import json
import pickle
import re

import numpy as np
import pytest
import torch

import vizcap
from vizcap.captioner import DEFAULT_CHECKPOINT
from vizcap.scenes import render_scene

from conftest import ROOT


class PickleUsed(AssertionError):
    pass


@pytest.fixture
def no_pickle(monkeypatch):
    """Every door into the unpickler raises PickleUsed while the test runs."""

    def refuse(*args, **kwargs):
        raise PickleUsed("pickle was used")

    class RefusingUnpickler:
        def __init__(self, *args, **kwargs):
            raise PickleUsed("pickle.Unpickler was used")

    for module in (pickle, _pickle):
        monkeypatch.setattr(module, "load", refuse)
        monkeypatch.setattr(module, "loads", refuse)
        monkeypatch.setattr(module, "Unpickler", RefusingUnpickler)
    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(torch.serialization, "load", refuse)
    # the patches bite: each of these would have unpickled
    data = pickle.dumps({"a": 1})
    for attempt in (lambda: pickle.loads(data), lambda: pickle.load(io.BytesIO(data)),
                    lambda: pickle.Unpickler(io.BytesIO(data)), lambda: torch.load(io.BytesIO(data))):
        with pytest.raises(PickleUsed):
            attempt()


def _exercise(captioner) -> None:
    image = render_scene(5).image
    caption = captioner.caption(image)
    assert isinstance(caption, str)
    greedy = captioner.explain(image)
    assert greedy.caption == caption
    T = len(greedy.tokens)
    assert greedy.maps("rollout").shape == (T, *captioner.grid)
    beam = captioner.explain(image, strategy="beam", beams=3)
    sample = captioner.explain(image, strategy="sample", seed=3, top_k=5)
    for exp in (greedy, beam, sample):
        method = "cross_attention" if exp.cross is not None else "prefix"
        maps = exp.maps(method)
        assert maps.shape == (len(exp.tokens), *captioner.grid) and np.isfinite(maps).all()


def test_tiny_checkpoint_loads_without_pickle(no_pickle, tiny_checkpoint):
    captioner = vizcap.load(tiny_checkpoint)
    _exercise(captioner)
    captioner.explain(render_scene(6).image).maps("relevancy")  # gradients too


def test_shipped_checkpoint_loads_without_pickle(no_pickle):
    """The shipped model (vizcap/checkpoints/shapes). It is written by `python -m train shapes`;
    a missing model.safetensors here is a failure, not a skip."""
    assert (DEFAULT_CHECKPOINT / "model.safetensors").is_file(), \
        f"{DEFAULT_CHECKPOINT / 'model.safetensors'} is missing: train it with `python -m train shapes`"
    _exercise(vizcap.load())


def test_saved_checkpoint_round_trips_without_pickle(no_pickle, tiny_captioner, tmp_path):
    out = tiny_captioner.save_pretrained(tmp_path / "again")
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors", "tokenizer.json"]
    again = vizcap.load(out)
    image = render_scene(8).image
    assert again.caption(image) == tiny_captioner.caption(image)


FORBIDDEN = [
    (re.compile(r"torch\.load\s*\("), "torch.load("),
    (re.compile(r"weights_only"), "weights_only"),
    (re.compile(r"pickle", re.I), "pickle"),
    (re.compile(r"joblib", re.I), "joblib"),
    (re.compile(r"\bdill\b"), "dill"),
    (re.compile(r"pytorch_model\.bin"), "pytorch_model.bin"),
    (re.compile(r"torch\.hub\.load\s*\("), "torch.hub.load("),
]


def test_no_pickle_in_the_sources():
    sources = sorted([*ROOT.joinpath("vizcap").rglob("*.py"), *ROOT.joinpath("train").rglob("*.py")])
    assert len(sources) > 10
    found = []
    for path in sources:
        text = path.read_text(encoding="utf-8")
        for n, line in enumerate(text.splitlines(), 1):
            for pattern, what in FORBIDDEN:
                if pattern.search(line):
                    found.append(f"{path.relative_to(ROOT)}:{n}: {what}: {line.strip()}")
    assert not found, "\n".join(found)


def test_checkpoint_directories_hold_no_pickles(tiny_checkpoint):
    """Every file in a checkpoint directory (trained, and shipped if present) is JSON or safetensors."""
    from safetensors import safe_open

    directories = [tiny_checkpoint] + ([DEFAULT_CHECKPOINT] if DEFAULT_CHECKPOINT.is_dir() else [])
    for directory in directories:
        for path in sorted(directory.rglob("*")):
            if not path.is_file() or path.name.startswith("."):  # .NAME.tmp: an atomic write in progress
                continue
            assert path.suffix in {".json", ".jsonl", ".safetensors"}, path
            try:
                if path.suffix == ".safetensors":
                    with safe_open(str(path), framework="pt") as f:
                        assert list(f.keys()), path
                elif path.suffix == ".json":
                    json.loads(path.read_text())
                else:
                    text = path.read_text()
                    complete = text[: text.rfind("\n") + 1]  # a log being appended to may end mid-line
                    [json.loads(line) for line in complete.splitlines() if line.strip()]
            except FileNotFoundError:  # replaced by a running training job while we looked
                continue
