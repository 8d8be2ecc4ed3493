"""Shared fixtures: one tiny trained checkpoint for the whole session, scene images on disk, and a
helper that runs `python -m ...` in a subprocess the way a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]

# A long training job may share this machine: keep every test single-threaded.
torch.set_num_threads(1)

# The tiny checkpoint: 8 optimizer steps of the real `shapes` preset, with one resumable save on the way.
TINY_ARGS = dict(steps=8, batch_size=8, eval_n=16, workers=0, threads=1, save_every=4)


def subprocess_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("OMP_NUM_THREADS", "1")
    env["TQDM_DISABLE"] = "1"
    return env


def run_module(*args: str, timeout: float = 180, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """`python ARGS...` in a fresh interpreter, with the repository importable; text output."""
    return subprocess.run(
        [sys.executable, *args],
        cwd=str(cwd or ROOT),
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A checkpoint directory written by train.shapes.run (8 steps): config.json,
    model.safetensors, tokenizer.json, metrics.json, train_log.jsonl. Treat it as read-only."""
    from train.shapes import ShapesArgs, run

    out = tmp_path_factory.mktemp("tiny_checkpoint")
    run(ShapesArgs(out=str(out), **TINY_ARGS))
    torch.set_num_threads(1)
    return out


@pytest.fixture(scope="session")
def tiny_captioner(tiny_checkpoint):
    from vizcap.captioner import Captioner

    return Captioner.from_pretrained(tiny_checkpoint)


def make_random_captioner(mode: str = "both"):
    """An untrained, small captioner whose weights are jolted so that greedy decoding says many
    words (a trained-looking checkpoint without the training): 64 px, d_model 32."""
    from vizcap.captioner import Captioner
    from vizcap.model import CaptionerConfig, CaptionModel
    from vizcap.scenes import VOCABULARY
    from vizcap.tokenizer import CaptionTokenizer

    tok = CaptionTokenizer.word_level(VOCABULARY)
    cfg = CaptionerConfig(image_size=64, d_model=32, n_prefix=2, decoder_layers=1, vocab_size=tok.vocab_size,
                          bos_id=tok.bos_id, eos_id=tok.eos_id, pad_id=tok.pad_id, mode=mode,
                          aux_heads={"shape": 6})
    torch.manual_seed(3)
    model = CaptionModel(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return Captioner(model, tok)


@pytest.fixture(scope="session")
def chatty_checkpoint(tmp_path_factory) -> Path:
    """A saved random captioner (mode "both") that writes 20-word captions."""
    out = tmp_path_factory.mktemp("chatty_checkpoint")
    make_random_captioner("both").save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def scene_files(tmp_path_factory) -> list[Path]:
    """Three ShapeScenes images saved as PNG (ordinary files a user would pass to the CLI)."""
    from vizcap.scenes import render_scene

    d = tmp_path_factory.mktemp("scene_images")
    paths = []
    for seed in (11, 12, 13):
        p = d / f"scene_{seed}.png"
        render_scene(seed).image.save(p)
        paths.append(p)
    return paths


# -- small random captioners for the explanation tests (decoding, maps, trust, CLI) ---------------

# name -> make_tiny_captioner keyword arguments
TINY_MODELS = {
    "both": {},
    "prefix": {"mode": "prefix"},
    "cross": {"mode": "cross"},
    "vit": {"vit": True},
    "ending": {"eos_bias": 1.0},
    "mapper1": {"mapper_layers": 1},
    "mapper2": {"mapper_layers": 2},
}


def make_tiny_captioner(mode: str = "both", vit: bool = False, eos_bias: float = 0.0, seed: int = 5,
                        mapper_layers: int = 0):
    """An untrained captioner small enough to explain in milliseconds: 64 px, d_model 32, 3 prefix
    tokens, 2 mapper heads, 2 GPT-2 layers × 4 heads, weights jolted so that captions are long.

    vit: timm's "test_vit" encoder (6 blocks × 2 heads, 16-px patches -> a 4×4 grid plus a class
    token) read with forward_features, so that the encoder.blocks.{i}.attn hook points exist.
    eos_bias > 0 pushes <eos> up (through ln_f's bias along the <eos> embedding) so that captions
    end: with 1.0 greedy and beam search stop after 19 words and samples stop early."""
    from vizcap.captioner import Captioner
    from vizcap.model import CaptionerConfig, CaptionModel
    from vizcap.scenes import VOCABULARY
    from vizcap.tokenizer import CaptionTokenizer

    tok = CaptionTokenizer.word_level(VOCABULARY)
    encoder = dict(encoder="test_vit", encoder_kwargs={"img_size": 64}, feature_index=None) if vit else {}
    cfg = CaptionerConfig(image_size=64, d_model=32, n_prefix=3, mapper_heads=2, decoder_layers=2, decoder_heads=4,
                          vocab_size=tok.vocab_size, bos_id=tok.bos_id, eos_id=tok.eos_id, pad_id=tok.pad_id,
                          mode=mode, mapper_layers=mapper_layers, **encoder)
    torch.manual_seed(seed)
    model = CaptionModel(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
        if eos_bias:
            w = model.decoder.transformer.wte.weight[tok.eos_id]
            model.decoder.transformer.ln_f.bias.add_(eos_bias * w / w.norm() ** 2)
    return Captioner(model, tok)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """tiny_model_dir(name) -> a saved checkpoint of make_tiny_captioner(**TINY_MODELS[name]),
    written on first use (names: both, prefix, cross, vit, ending, mapper1, mapper2). Treat them as read-only."""
    dirs: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in dirs:
            out = tmp_path_factory.mktemp(f"{name}_checkpoint")
            make_tiny_captioner(**TINY_MODELS[name]).save_pretrained(out)
            dirs[name] = out
        return dirs[name]

    return get


@pytest.fixture(scope="session")
def tiny_model(tiny_model_dir):
    """tiny_model(name) -> the Captioner loaded from tiny_model_dir(name) (one per session; do not modify)."""
    from vizcap.captioner import Captioner

    loaded: dict[str, object] = {}

    def get(name: str):
        if name not in loaded:
            loaded[name] = Captioner.from_pretrained(tiny_model_dir(name))
        return loaded[name]

    return get


@pytest.fixture(scope="session")
def prefix_checkpoint(tiny_model_dir) -> Path:
    """Mode "prefix": the decoder sees the image only through the prefix (no cross-attention)."""
    return tiny_model_dir("prefix")


@pytest.fixture(scope="session")
def cross_checkpoint(tiny_model_dir) -> Path:
    """Mode "cross": no prefix tokens, the image only through cross-attention."""
    return tiny_model_dir("cross")


@pytest.fixture(scope="session")
def vit_checkpoint(tiny_model_dir) -> Path:
    """A timm ViT encoder ("test_vit"), so that the encoder's attention is captured too."""
    return tiny_model_dir("vit")


@pytest.fixture
def ckpt_copy(tiny_checkpoint, tmp_path):
    """A private copy of the tiny checkpoint's three files, free to damage."""
    import shutil

    d = tmp_path / "ckpt"
    d.mkdir()
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        shutil.copy(tiny_checkpoint / name, d / name)
    return d


@pytest.fixture
def throwaway():
    """my_rollout: rollout under another name; my_sample: sampling under another name (issue 23's
    registries); removed after the test."""
    import dataclasses

    from vizcap import maps, strategies

    method = maps.register(dataclasses.replace(maps.METHODS["rollout"], name="my_rollout", help="a copy of rollout"))
    strategy = strategies.register(dataclasses.replace(strategies.STRATEGIES["sample"], name="my_sample", label="my sampling"))
    yield method, strategy
    maps.unregister("my_rollout")
    strategies.unregister("my_sample")
